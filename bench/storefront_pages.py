"""Page weight and server time of the storefront's pages: `/`, `/pricing`, `/docs` and a
signed-in `/dashboard` (200 requests on it, two keys, two models), against `tokenrelay serve`
run as a process of its own on this machine (SQLite, the built-in emulator).

    .venv/bin/python -m bench.storefront_pages

Weight: the HTML plus every stylesheet, script and image it links (uncompressed bytes, what a
first visit downloads). Server time: the median and 95th percentile of 50 sequential GETs over
one keep-alive connection on localhost (so network time is ~0), and the gateway process's CPU
time per GET (from /proc: what the page costs the server, whatever else the machine runs; the
wall times also hold every wait for a shared CPU). Targets: < 300 KB, < 50 ms.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "portal"))

from portal_support import Browser

from gateway_support import free_port, spawn_gateway
from tokenrelay.store.db import migrate

ASSET = re.compile(r'<(?:link[^>]+href|script[^>]+src|img[^>]+src)="(/[^"]+)"')
RUNS = 50
PAGES = ("/", "/pricing", "/docs", "/dashboard")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    port = free_port()
    env = {
        **os.environ,
        "TOKENRELAY_DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
        "TOKENRELAY_EMULATE": "all",
        "TOKENRELAY_SESSION_SECRET": "bench-storefront-secret-01",
        "TOKENRELAY_SIGNUP_CREDIT_USD": "5.00",
        "TOKENRELAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    # Migrated first: a start on a busy machine then stays within spawn_gateway's patience.
    migrate(env["TOKENRELAY_DATABASE_URL"])
    log = tmp / "gateway.log"
    proc = spawn_gateway(env, port, log)
    try:
        url = f"http://127.0.0.1:{port}"
        b = Browser(url)
        b.sign_up("bench@example.com", verify=False)
        # Another process: its verification mail is a line of its log (no SMTP configured).
        mailed = re.findall(
            r"email verification for bench@example.com \(.*?\): (\S+)", log.read_text()
        )
        assert b.http.get(mailed[-1]).status_code == 200
        # Two keys and two models: the dashboard's charts and tables have a line of each.
        clients = [
            openai.OpenAI(api_key=b.create_key(name), base_url=url + "/api/proxy/v1", max_retries=0)
            for name in ("bench", "ci")
        ]
        for i in range(200):
            clients[i % 2].chat.completions.create(
                model=("gpt-4o-mini", "claude-haiku-4-5")[i // 2 % 2],
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=5,
            )
        print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        header = f"{'page':<12}{'weight KB':>10}{'html KB':>9}{'median ms':>11}{'p95 ms':>8}"
        print(header + f"{'server CPU ms':>15}")
        for path in PAGES:
            http: httpx.Client = b.http if path == "/dashboard" else httpx.Client(base_url=url)
            html = http.get(path).content
            assets = set(ASSET.findall(html.decode()))
            weight = len(html) + sum(len(http.get(a).content) for a in assets)
            times = []
            cpu_before = cpu_seconds(proc.pid)
            for _ in range(RUNS):
                start = time.perf_counter()
                assert http.get(path).status_code == 200
                times.append((time.perf_counter() - start) * 1000)
            cpu_ms = (cpu_seconds(proc.pid) - cpu_before) * 1000 / RUNS
            p95 = sorted(times)[int(RUNS * 0.95) - 1]
            print(
                f"{path:<12}{weight / 1024:>10.1f}{len(html) / 1024:>9.1f}"
                f"{statistics.median(times):>11.1f}{p95:>8.1f}{cpu_ms:>15.1f}"
            )
    finally:
        proc.terminate()
        proc.wait(timeout=20)


if __name__ == "__main__":
    main()
