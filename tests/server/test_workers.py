"""`tokenrelay serve --workers N`: refused in one line when state cannot be shared; otherwise
N worker processes on one port, stopped together by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from backends import PrivateRedis, backend
from gateway_support import ADMIN_TOKEN, free_port

EXE = str(Path(sys.executable).with_name("tokenrelay"))


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENRELAY_")}
    env.pop("WEB_CONCURRENCY", None)
    return {**env, "TOKENRELAY_LOG_LEVEL": "warning", **values}


def _refused(env: dict[str, str], tmp: Path, *args: str) -> str:
    r = subprocess.run(
        [EXE, "serve", "--port", str(free_port()), *args],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    return lines[0]


def test_workers_are_refused_when_state_cannot_be_shared(tmp_path: Path) -> None:
    pg = "postgresql://postgres@127.0.0.1:5432/unused"
    line = _refused(_env(), tmp_path, "--workers", "2")
    assert "TOKENRELAY_REDIS_URL" in line
    # WEB_CONCURRENCY asks for workers the same way (it is what uvicorn and gunicorn read).
    assert "TOKENRELAY_REDIS_URL" in _refused(_env(WEB_CONCURRENCY="3"), tmp_path)
    sqlite = _refused(
        _env(TOKENRELAY_REDIS_URL="redis://127.0.0.1:1/0"), tmp_path, "--workers", "2"
    )
    assert "PostgreSQL" in sqlite
    shared = _env(TOKENRELAY_REDIS_URL="redis://127.0.0.1:1/0", TOKENRELAY_DATABASE_URL=pg)
    assert "TOKENRELAY_SESSION_SECRET" in _refused(shared, tmp_path, "--workers", "2")
    fixed_port = _env(
        TOKENRELAY_REDIS_URL="redis://127.0.0.1:1/0",
        TOKENRELAY_DATABASE_URL=pg,
        TOKENRELAY_SESSION_SECRET="s" * 32,
        TOKENRELAY_EMULATOR_PORT="9999",
        TOKENRELAY_EMULATE="keyless",  # with PostgreSQL only an explicit opt-in emulates
    )
    line = _refused(fixed_port, tmp_path, "--workers", "2")
    assert "python -m tokenrelay.emulator --port 9999" in line
    assert "TOKENRELAY_EMULATOR_URL" in line


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


def test_two_workers_serve_one_port_and_stop_on_sigterm(tmp_path: Path) -> None:
    redis = PrivateRedis(tmp_path)
    redis.start()
    port = free_port()
    try:
        with backend("postgres+redis", tmp_path) as store:
            env = _env(
                TOKENRELAY_DATABASE_URL=store.database_url,
                TOKENRELAY_REDIS_URL=redis.url,
                TOKENRELAY_ADMIN_TOKEN=ADMIN_TOKEN,
                TOKENRELAY_SESSION_SECRET="s" * 32,
                TOKENRELAY_EMULATE="all",
            )
            log = tmp_path / "gw.log"
            proc = subprocess.Popen(
                [EXE, "serve", "--port", str(port), "--workers", "2"],
                env=env,
                cwd=tmp_path,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
            )
            try:
                url = f"http://127.0.0.1:{port}"
                deadline = time.monotonic() + 120  # two workers starting on a loaded CI machine
                while True:
                    try:
                        if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
                    time.sleep(0.2)
                # Two workers (forked: multiprocessing's resource tracker aside, if any).
                workers = [c for c in _children(proc.pid) if "resource_tracker" not in _cmdline(c)]
                assert len(workers) == 2, log.read_text()
                # Forked from a supervisor that imported the gateway and built the tokenizer
                # (~23 MB, never written after): those pages are the workers' in common.
                for pid in workers:
                    assert _memory_kb(pid)["Shared_Dirty"] > 15_000, _memory_kb(pid)
                r = httpx.post(
                    url + "/admin/v1/keys",
                    json={"name": "w", "credits_usd": "5.00"},
                    headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
                )
                key = r.json()["key"]
                for _ in range(6):  # new connections each: the kernel spreads them
                    r = httpx.post(
                        url + "/api/proxy/v1/chat/completions",
                        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
                        headers={"authorization": f"Bearer {key}"},
                        timeout=30,
                    )
                    assert r.status_code == 200, r.text
            finally:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=60) == 0, log.read_text()
            for pid in workers:
                assert not Path(f"/proc/{pid}").exists() or _zombie(pid)
    finally:
        redis.kill()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def _zombie(pid: int) -> bool:
    try:
        return " Z " in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True


@pytest.mark.parametrize("flag", ["--workers=0", "--workers=x"])
def test_a_worker_count_below_one_is_a_usage_error(tmp_path: Path, flag: str) -> None:
    r = subprocess.run(
        [EXE, "serve", flag], env=_env(), cwd=tmp_path, capture_output=True, text=True
    )
    assert r.returncode == 2 and "--workers" in r.stderr and "Traceback" not in r.stderr


def _memory_kb(pid: int) -> dict[str, int]:
    """A process's /proc smaps_rollup figures (kB): Rss, Pss, Shared_*, Private_*."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split()[:2]
        out[name.rstrip(":")] = int(value)
    return out
