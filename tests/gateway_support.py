"""A real gateway server for tests (uvicorn on a free port, SQLite, emulated vendors).

Its own module, not conftest: `from conftest import` finds whichever conftest pytest imported
last (tests/emulator has one too).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from tokenrelay.server.app import Gateway, create_app
from tokenrelay.server.serve import uvicorn_config
from tokenrelay.settings import Settings

ADMIN_TOKEN = "test-admin-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A port that refuses connections while the block lasts: bound, never listening, so that
    no server takes it meanwhile. A 'dead' port from free_port() once answered 200 for a
    deployment meant to be down: free_port() finds a port free at that moment only, and a
    server started later (another test worker's emulator, or this test's own) may take it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


@dataclass
class RunningGateway:
    url: str
    settings: Settings
    server: uvicorn.Server

    @property
    def proxy(self) -> str:
        return self.url + "/api/proxy"

    @property
    def emulator_url(self) -> str:
        """The vendor emulator the gateway's upstreams use (never on the gateway's port)."""
        app = self.server.config.app
        assert isinstance(app, Gateway) and app.emulator_url is not None
        return app.emulator_url

    def create_key(self, name: str = "test", **fields: object) -> str:
        r = httpx.post(
            self.url + "/admin/v1/keys",
            # Funded: billing is on, and a key without credit gets 402 (billing_e2e tests that).
            json={"name": name, "credits_usd": "1000.00", **fields},
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["key"])


def start_gateway(tmp: Path, **overrides: object) -> tuple[RunningGateway, threading.Thread]:
    # A port from free_port() can be taken by another test process (pytest-xdist workers)
    # before the gateway binds it: then the server thread ends at once and we try a new port.
    for _ in range(3):
        values: dict[str, object] = {
            "host": "127.0.0.1",
            "port": free_port(),
            "database_url": f"sqlite:///{tmp / 'gateway.db'}",
            "admin_token": ADMIN_TOKEN,
            "emulate": "all",
            **overrides,
        }
        settings = Settings(**values)  # type: ignore[arg-type]
        # The production server setup (connection limits, timeouts), on the plain asyncio loop.
        config = uvicorn_config(create_app(settings), settings, loop="asyncio", log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=asyncio.run, args=(server.serve(),), daemon=True)
        thread.start()
        deadline = time.monotonic() + 60  # a loaded CI machine starts slowly
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if server.started:
            return RunningGateway(f"http://127.0.0.1:{settings.port}", settings, server), thread
        if thread.is_alive():
            break
    raise RuntimeError("gateway did not start")


def served(tmp: Path, **overrides: object) -> Iterator[RunningGateway]:
    """A gateway (start_gateway's) for a fixture to `yield from`: stopped when it is done."""
    gw, thread = start_gateway(tmp, **overrides)
    try:
        yield gw
    finally:
        gw.server.should_exit = True
        thread.join(timeout=10)


def within(seconds: float, check: Callable[[], bool]) -> float:
    """How long `check` took to come true (fails past `seconds`): a change made through one
    process, seen by another."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, "not applied in time"
        time.sleep(0.05)
    return time.monotonic() - start


def spawn_gateway(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """`tokenrelay serve` as a process of its own (one a test may SIGKILL), once healthy."""
    exe = Path(sys.executable).with_name("tokenrelay")
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", str(port)],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90  # a loaded CI machine starts slowly
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(log.read_text()[-2000:])


def metric_samples(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The gateway's /metrics as {(sample name, sorted labels): value}."""
    r = httpx.get(base_url + "/metrics", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 200, r.text
    text = r.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
