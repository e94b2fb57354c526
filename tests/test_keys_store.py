"""KeyStore on SQLite and PostgreSQL: create, authenticate, revoke, cache; keys stored hashed."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tokenrelay.customers.keys import KeyStore, generate_key
from tokenrelay.money import parse_nano
from tokenrelay.store.db import async_url, create_engine, migrate, migrate_async

PG_URL = os.environ.get("TOKENRELAY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _pg_reachable() -> bool:
    import asyncpg

    url = async_url(PG_URL)
    try:
        conn = await asyncpg.connect(
            host=url.host, port=url.port, user=url.username, database=url.database, timeout=3
        )
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        eng = create_engine(f"sqlite:///{tmp_path / 'keys.db'}")
        await migrate_async(eng)
        yield eng
        await eng.dispose()
        return
    if not await _pg_reachable():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {PG_URL} is unreachable (required in CI)")
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable")
    # A schema of our own: parallel runs and other tests' tables never collide.
    schema = f"tr_keys_{secrets.token_hex(4)}"
    admin = create_engine(PG_URL)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    eng = create_engine(PG_URL, schema=schema)
    try:
        await migrate_async(eng)
        await migrate_async(eng)  # idempotent
        yield eng
    finally:
        await eng.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


def test_generate_key_shape() -> None:
    plaintext, key_hash, hint = generate_key("sk-aic-")
    assert plaintext.startswith("sk-aic-") and len(plaintext) == len("sk-aic-") + 43
    assert key_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert hint == f"sk-aic-...{plaintext[-4:]}"
    assert generate_key("x-")[0] != generate_key("x-")[0]


def test_parse_nano() -> None:
    assert parse_nano(Decimal("5.00")) == 5_000_000_000
    assert parse_nano("0.000000001") == 1
    for bad in ("-1", "NaN", "Infinity", "0.0000000001", "abc", "1e999999", 1e308, "1000000001"):
        with pytest.raises(ValueError):
            parse_nano(bad)


async def test_create_authenticate_revoke(engine: AsyncEngine) -> None:
    store = KeyStore(engine, "sk-test-")
    info, plaintext = await store.create("alice", Decimal("5.25"), rpm=60, tpm=1000)
    assert info.id.startswith("key_") and len(info.id) == 16
    assert info.balance_nano == 5_250_000_000 and info.balance_usd == "5.25"
    assert (info.rpm, info.tpm) == (60, 1000)
    assert plaintext.startswith("sk-test-")

    authed = await store.authenticate(plaintext)
    assert authed is not None and authed.id == info.id and not authed.revoked
    assert await store.authenticate(plaintext + "x") is None
    assert await store.authenticate("") is None
    assert await store.authenticate("x" * 10_000) is None

    got = await store.get(info.id)
    assert got is not None and got.name == "alice" and got.created_at.tzinfo is not None
    assert [k.id for k in await store.list()] == [info.id]
    assert await store.get("key_missing") is None

    revoked = await store.revoke(info.id)
    assert revoked is not None and revoked.revoked_at is not None
    assert await store.authenticate(plaintext) is None  # at once, despite the cache
    again = await store.revoke(info.id)
    assert again is not None and again.revoked_at == revoked.revoked_at
    assert await store.revoke("key_missing") is None


async def test_key_is_stored_only_hashed(engine: AsyncEngine) -> None:
    store = KeyStore(engine)
    info, plaintext = await store.create("bob")
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM api_keys"))).mappings().all()
    dumped = repr([dict(r) for r in rows])
    assert plaintext not in dumped
    assert plaintext[len("sk-aic-") :] not in dumped  # not even the random body
    row = next(r for r in rows if r["id"] == info.id)
    assert row["key_hash"] == hashlib.sha256(plaintext.encode()).hexdigest()
    assert row["key_hint"] == f"sk-aic-...{plaintext[-4:]}"
    assert row["account_id"] == info.account_id  # the balance lives on the account
    assert plaintext not in repr(info) and info.key_hash not in repr(info)
    assert "key_hash" not in info.public()


async def test_authenticate_is_cached(engine: AsyncEngine) -> None:
    clock = FakeClock()
    store = KeyStore(engine, cache_ttl=60, negative_ttl=5, clock=clock)
    info, plaintext = await store.create("carol")
    assert await store.authenticate(plaintext) is not None

    # Revoked behind the store's back (another replica): the cache serves until the TTL ends.
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE api_keys SET revoked_at = created_at WHERE id = :id"), {"id": info.id}
        )
    assert await store.authenticate(plaintext) is not None
    clock.now += 61
    assert await store.authenticate(plaintext) is None

    # Negative results are cached briefly, then looked up again.
    other, other_plain = await store.create("dave")
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM api_keys WHERE id = :id"), {"id": other.id})
    assert await store.authenticate(other_plain) is None
    async with engine.begin() as conn:  # put it back, as if created by another replica
        await conn.execute(
            text(
                "INSERT INTO api_keys (id, name, key_hash, key_hint, created_at, account_id) "
                "VALUES (:id, 'dave', :h, 'x', :t, :a)"
            ),
            {"id": other.id, "h": other.key_hash, "t": other.created_at, "a": other.account_id},
        )
    assert await store.authenticate(other_plain) is None  # still the cached miss
    clock.now += 6
    assert await store.authenticate(other_plain) is not None


async def test_revoke_invalidates_the_cache(engine: AsyncEngine) -> None:
    store = KeyStore(engine, cache_ttl=3600)
    info, plaintext = await store.create("erin")
    assert await store.authenticate(plaintext) is not None
    await store.revoke(info.id)
    assert await store.authenticate(plaintext) is None


async def test_cache_is_bounded(engine: AsyncEngine) -> None:
    store = KeyStore(engine, max_cache_entries=10)
    await asyncio.gather(*(store.authenticate(f"sk-aic-junk{i}") for i in range(50)))
    assert len(store._cache) <= 10


async def test_concurrent_authenticate(engine: AsyncEngine) -> None:
    store = KeyStore(engine)
    _, plaintext = await store.create("frank")
    store.clear_cache()
    results = await asyncio.gather(*(store.authenticate(plaintext) for _ in range(20)))
    assert all(r is not None for r in results)


def test_sync_migrate_and_url_forms(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate(url)
    migrate(url)  # already at head: no-op
    memory = async_url("sqlite:///:memory:")
    assert (memory.drivername, memory.database) == ("sqlite+aiosqlite", ":memory:")
    assert async_url("postgres://u@h/db").drivername == "postgresql+asyncpg"
    assert async_url("postgresql://u@h:5433/db").port == 5433
    assert async_url("postgresql+asyncpg://u@h/db").drivername == "postgresql+asyncpg"
    with pytest.raises(ValueError, match="unsupported database URL scheme 'mysql'"):
        async_url("mysql://u@h/db")


async def test_memory_sqlite_keeps_one_database() -> None:
    eng = create_engine("sqlite:///:memory:")
    await migrate_async(eng)
    store = KeyStore(eng)
    _, plaintext = await store.create("gina", Decimal("1"))
    store.clear_cache()
    assert await store.authenticate(plaintext) is not None
    await eng.dispose()


async def test_a_burst_on_a_cold_key_makes_one_query(engine: AsyncEngine) -> None:
    from sqlalchemy import event

    store = KeyStore(engine, "sk-test-")
    _, plaintext = await store.create("burst")
    store.clear_cache()
    queries: list[str] = []
    listener = lambda *args: queries.append(args[2])  # noqa: E731 (conn, cursor, statement, ...)
    event.listen(engine.sync_engine, "before_cursor_execute", listener)
    try:
        found = await asyncio.gather(*(store.authenticate(plaintext) for _ in range(50)))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", listener)
    assert all(f is not None and f.name == "burst" for f in found)
    assert len([q for q in queries if "api_keys" in q]) == 1, queries
