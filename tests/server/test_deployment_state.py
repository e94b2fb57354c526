"""Taking a deployment out is one decision for every process: an operator's drain or restore
made through one gateway, and a key the vendor refused seen by one, reach another gateway on
the same database within a second (deployment_state.py), as they reach every worker of
`serve --workers N` and every replica."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from backends import backend
from gateway_support import ADMIN_TOKEN, RunningGateway, free_port, start_gateway, within

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
MODEL = "claude-haiku-4-5"
Gateways = tuple[RunningGateway, RunningGateway, Callable[..., RunningGateway]]


@pytest.fixture
def two_gateways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateways]:
    """Two gateways, one database, one catalog: deployments `a` and `b` of Anthropic on one
    emulator, and `bad`, whose key that emulator refuses; and a function that starts more."""
    port = free_port()
    emulator = f"http://127.0.0.1:{port}"
    paths = {"a": "/_d/a/anthropic", "b": "/_d/b/anthropic", "bad": "/_d/bad~401/anthropic"}
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        "\n".join(
            f'[[deployments.anthropic]]\nname = "{n}"\nbase_url = "{emulator}{p}"\n'
            f'api_key_env = "STATE_KEY_{n.upper()}"\n'
            for n, p in paths.items()
        )
    )
    for n in paths:
        monkeypatch.setenv(f"STATE_KEY_{n.upper()}", f"sk-state-{n}")
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    common: dict[str, Any] = {"database_url": db, "catalog_path": str(catalog)}
    started: list[tuple[RunningGateway, Any]] = []

    def start(name: str, **where: Any) -> RunningGateway:
        (tmp_path / name).mkdir()
        gw, thread = start_gateway(tmp_path / name, emulate="auto", **where, **common)
        started.append((gw, thread))
        return gw

    yield start("one", emulator_port=port), start("two", emulator_url=emulator), start
    for gw, thread in started:
        gw.server.should_exit = True
        thread.join(timeout=10)


def _states(gw: RunningGateway) -> dict[str, str]:
    r = httpx.get(gw.url + "/admin/v1/deployments", headers=ADMIN)
    assert r.status_code == 200, r.text
    return {d["id"]: d["state"] for d in r.json()["data"] if d["vendor"] == "anthropic"}


def _served(emulator: str) -> list[str | None]:
    """The deployments of the emulator's latest requests (its log keeps the last 64, shared by
    every emulator of the process), oldest first."""
    data = httpx.get(emulator + "/_requests").json()["data"]
    return [q.get("deployment") for q in data if q["method"] == "POST"]


def test_drain_and_restore_reach_the_other_gateway(two_gateways: Gateways, tmp_path: Path) -> None:
    one, two, start = two_gateways
    r = httpx.post(one.url + "/admin/v1/deployments/anthropic/a/drain", headers=ADMIN)
    assert r.status_code == 200 and r.json()["state"] == "drained"
    took = within(1.5, lambda: _states(two)["anthropic/a"] == "drained")
    print(f"\ndrain seen by the other gateway after {took:.2f} s")

    # The other gateway sends nothing to the drained deployment.
    client = anthropic.Anthropic(api_key=two.create_key(), base_url=two.proxy, max_retries=0)
    for i in range(6):
        msg = client.messages.create(
            model=MODEL, max_tokens=16, messages=[{"role": "user", "content": f"[[words:3]] {i}"}]
        )
        assert msg.content
    served = _served(one.emulator_url)[-6:]  # each request made one attempt or more
    assert "a" not in served and "b" in served
    # A process started later (a new worker, a restarted replica) starts with it drained.
    three = start("three", emulator_url=one.emulator_url)
    assert _states(three)["anthropic/a"] == "drained"

    # Restored through the other one: back in on both.
    r = httpx.post(two.url + "/admin/v1/deployments/anthropic/a/restore", headers=ADMIN)
    assert r.json()["state"] == "healthy"
    within(1.5, lambda: _states(one)["anthropic/a"] == "healthy")
    within(1.5, lambda: _states(three)["anthropic/a"] == "healthy")
    assert _states(two)["anthropic/a"] == "healthy"
    # Both are in the audit trail, as from the console: who did what to which deployment.
    with sqlite3.connect(tmp_path / "shared.db") as conn:
        trail = conn.execute(
            "SELECT actor, action, reason FROM audit_log WHERE action LIKE 'deployment_%' "
            "ORDER BY id"
        ).fetchall()
    assert trail == [
        ("admin-api", "deployment_drained", "anthropic/a"),
        ("admin-api", "deployment_restored", "anthropic/a"),
    ]


def test_a_refused_key_is_taken_out_everywhere(two_gateways: Gateways) -> None:
    one, two, _ = two_gateways
    client = anthropic.Anthropic(api_key=one.create_key(), base_url=one.proxy, max_retries=0)
    for i in range(8):  # least in-flight reaches `bad` soon; its 401 takes it out
        client.messages.create(
            model=MODEL, max_tokens=16, messages=[{"role": "user", "content": f"[[words:3]] {i}"}]
        )
    assert _states(one)["anthropic/bad"] == "removed"
    within(1.5, lambda: _states(two)["anthropic/bad"] == "removed")
    # The other gateway never tries it.
    client2 = anthropic.Anthropic(api_key=two.create_key(), base_url=two.proxy, max_retries=0)
    for i in range(6):
        client2.messages.create(
            model=MODEL, max_tokens=16, messages=[{"role": "user", "content": f"[[words:3]] {i}"}]
        )
    assert "bad" not in _served(one.emulator_url)[-6:]
    r = httpx.post(two.url + "/admin/v1/deployments/anthropic/bad/restore", headers=ADMIN)
    assert r.json()["state"] == "healthy"
    within(1.5, lambda: _states(one)["anthropic/bad"] == "healthy")


def test_a_drain_reaches_every_worker_of_serve(tmp_path: Path) -> None:
    """`tokenrelay serve --workers 2` (PostgreSQL + Redis): a drain through whichever worker
    took the admin request is what both workers report and apply. Each worker has its own
    emulator, so the deployment's base URL in the listing tells the workers apart."""
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        "\n".join(
            f'[[deployments.openai]]\nname = "{n}"\nbase_url = "https://unused.example/v1"\n'
            f'api_key_env = "WORKERS_KEY_{n.upper()}"\n'
            for n in ("a", "b")
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENRELAY_", "WORKERS_"))}
    env.pop("WEB_CONCURRENCY", None)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with backend("postgres+redis", tmp_path) as store:
        env |= {
            "TOKENRELAY_DATABASE_URL": store.database_url,
            "TOKENRELAY_REDIS_URL": store.redis_url or "",
            "TOKENRELAY_ADMIN_TOKEN": ADMIN_TOKEN,
            "TOKENRELAY_SESSION_SECRET": "s" * 32,
            "TOKENRELAY_EMULATE": "all",
            "TOKENRELAY_CATALOG": str(catalog),
            "TOKENRELAY_LOG_LEVEL": "warning",
        }
        log = tmp_path / "gw.log"
        exe = str(Path(sys.executable).with_name("tokenrelay"))
        proc = subprocess.Popen(
            [exe, "serve", "--port", str(port), "--workers", "2"],
            env=env,
            cwd=tmp_path,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            within(60, lambda: _ready(url) or proc.poll() is not None)
            assert proc.poll() is None, log.read_text()
            r = httpx.post(url + "/admin/v1/deployments/openai/a/drain", headers=ADMIN)
            assert r.status_code == 200 and r.json()["state"] == "drained"
            seen: dict[str, str] = {}  # worker (its emulator) -> the state it last reported
            # Each worker applies the table within a poll or two (0.5 s each) of being up; on a
            # loaded CI machine the second worker may still be starting, or its loop late, so
            # the test waits for both to agree rather than for a fixed time. A worker that never
            # applies the drain keeps reporting "healthy" and fails it.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                # A new connection each time: the kernel hands it to either worker.
                r = httpx.get(url + "/admin/v1/deployments", headers=ADMIN)
                [a] = [d for d in r.json()["data"] if d["id"] == "openai/a"]
                seen[a["base_url"]] = a["state"]
                if len(seen) == 2 and set(seen.values()) == {"drained"}:
                    break
                time.sleep(0.05)
            assert len(seen) == 2, seen
            assert set(seen.values()) == {"drained"}, (seen, log.read_text()[-3000:])
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, log.read_text()


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
