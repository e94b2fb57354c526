"""Helpers for tests/billing: the two storage set-ups (SQLite + in-process state, PostgreSQL +
Redis), a real gateway on either, and the admin calls the tests share.

No conftest.py here on purpose: the suite imports `from conftest import ...` (tests/conftest.py)
in prepend import mode, and a second top-level `conftest` module would shadow it. Each test
module declares its fixtures with the context managers below.

The storage set-up mirrors tests/billing_e2e/backends.py (not importable from this directory).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ADMIN_TOKEN, RunningGateway, start_gateway

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/13"
BACKENDS = ["sqlite", "postgres+redis"]
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
# One pooled client for the admin calls: a new httpx client per call costs tens of ms.
http = httpx.Client(timeout=30)


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
    import redis

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


@contextmanager
def running_gateway(
    name: str, tmp_path_factory: pytest.TempPathFactory, **overrides: Any
) -> Iterator[tuple[RunningGateway, Backend]]:
    """A real gateway (uvicorn, emulated vendors) on a fresh `name` backend."""
    with backend(name, tmp_path_factory.mktemp("store")) as store:
        gw, thread = start_gateway(
            tmp_path_factory.mktemp("gw"),
            database_url=store.database_url,
            redis_url=store.redis_url,
            **overrides,
        )
        try:
            yield gw, store
        finally:
            gw.server.should_exit = True
            thread.join(timeout=10)


def cli_env(tmp_path_factory: pytest.TempPathFactory, **extra: str) -> dict[str, str]:
    """Environment for a `tokenrelay` subprocess: no TOKENRELAY_* from the caller, plus `extra`.

    Where PYTHONDONTWRITEBYTECODE is set, every CLI process would recompile the whole import
    tree (~2 s each); compiled bytecode goes to a per-session temp dir instead (never into the
    venv or the checkout), so only the first process pays for it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENRELAY_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.getbasetemp() / "pycache")
    return {**env, **extra}


def create_key(url: str, credits: str = "10.00", **extra: Any) -> tuple[str, str]:
    """(key id, plaintext key) of a new funded key."""
    body = {"name": "billing", "credits_usd": credits, **extra}
    r = http.post(f"{url}/admin/v1/keys", headers=ADMIN, json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["key"]


def usage_records(url: str, key_id: str) -> list[dict[str, Any]]:
    r = http.get(f"{url}/admin/v1/usage", headers=ADMIN, params={"key_id": key_id, "limit": 1000})
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def record_of(url: str, key_id: str, request_id: str) -> dict[str, Any]:
    records = {r["request_id"]: r for r in usage_records(url, key_id)}
    assert request_id in records, (request_id, sorted(records))
    return records[request_id]


def wait_for_record(url: str, key_id: str, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """The record of a request that ended in an error: the error response goes out before its
    (zero-cost) settlement commits, so the record may land a moment after the client saw it."""
    deadline = time.monotonic() + timeout
    while True:
        records = {r["request_id"]: r for r in usage_records(url, key_id)}
        if request_id in records or time.monotonic() > deadline:
            assert request_id in records, (request_id, sorted(records))
            return records[request_id]
        time.sleep(0.05)


def key_summary(url: str, key_id: str) -> dict[str, Any]:
    r = http.get(f"{url}/admin/v1/keys/{key_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return dict(r.json())


def expected_cost(record: dict[str, Any], input_rate: str, output_rate: str) -> Decimal:
    """USD cost of a record without cache tokens at the given per-1M rates, rounded half-up to
    nano-USD exactly as the gateway does."""
    assert record["cache_read_tokens"] == 0 and record["cache_write_tokens"] == 0, record
    nano = (
        Decimal(record["input_tokens"]) * Decimal(input_rate)
        + Decimal(record["output_tokens"]) * Decimal(output_rate)
    ) * 1000
    return nano.to_integral_value(rounding=ROUND_HALF_UP) / Decimal(10**9)
