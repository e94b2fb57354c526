"""The two storage set-ups the billing guarantees are proven on, as real servers:
SQLite + in-process holds (the embedded default) and PostgreSQL + Redis (multi-replica)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/13"


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


@contextmanager
def backend(name: str, tmp_dir: str) -> Iterator[Backend]:
    if name == "sqlite":
        yield Backend("sqlite", f"sqlite:///{tmp_dir}/billing.db", None)
        return
    db = "tokenrelay_test_" + uuid.uuid4().hex[:10]
    try:
        asyncio.run(_pg(f'CREATE DATABASE "{db}"'))
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
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
