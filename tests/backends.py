"""The two storage set-ups the billing tests run on, as real servers: SQLite + in-process
holds (the embedded default) and PostgreSQL + Redis (multi-replica). Shared by tests/billing
and tests/billing_e2e (tests/ is on the import path, like conftest and paths)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from gateway_support import free_port

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
# Parallel runs (several checkouts on one machine) each set their own db; CI uses 13. Each
# pytest-xdist worker (gw0, gw1, ...) takes the next db along, since backend() flushes its db.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_REDIS_DB = (int(os.environ.get("TOKENRELAY_TEST_REDIS_DB", "13")) + _WORKER) % 16
REDIS_URL = f"redis://127.0.0.1:6379/{_REDIS_DB}"
BACKENDS = ["sqlite", "postgres+redis"]


@dataclass(frozen=True)
class Backend:
    name: str
    database_url: str
    redis_url: str | None


def _unavailable(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} must be running for the billing suite in CI")
    pytest.skip(f"{what} not reachable")


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _run(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, also when called inside a running loop
    (async fixtures of the session loop): on a helper thread then."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[Any] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            error.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


@contextmanager
def backend(name: str, tmp_dir: str | Path) -> Iterator[Backend]:
    """A fresh database (and, for postgres+redis, a flushed Redis db 13) for one test scope."""
    if name == "sqlite":
        yield Backend("sqlite", f"sqlite:///{tmp_dir}/billing.db", None)
        return
    db = "tokenrelay_test_" + uuid.uuid4().hex[:10]
    try:
        _run(_pg(f'CREATE DATABASE "{db}"'))
    except OSError:
        _unavailable("PostgreSQL at 127.0.0.1:5432")

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    except redis.ConnectionError:
        _unavailable("Redis at 127.0.0.1:6379")
    try:
        yield Backend("postgres+redis", f"postgresql://postgres@127.0.0.1:5432/{db}", REDIS_URL)
    finally:
        client.flushdb()
        client.close()
        _run(_pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))


@asynccontextmanager
async def redis_namespace(label: str) -> AsyncIterator[tuple[Any, str]]:
    """An async Redis client and a key prefix of its own, deleted afterwards."""
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except OSError:
        await client.aclose()
        _unavailable("Redis at 127.0.0.1:6379")
    prefix = f"test-{label}-{uuid.uuid4().hex[:8]}:"
    try:
        yield client, prefix
    finally:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


class PrivateRedis:
    """A Redis server of one test's own, on a free port: one it may pause, kill and restart
    (the shared one is never stopped)."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis did not start")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
