"""The settlement writer's PostgreSQL batch (billing/pg_batch.py: one asyncpg statement over
arrays) writes what the SQLAlchemy path writes on SQLite for the same records — every column
of usage_records, the debits, the usage_daily roll-up and the balances — so a wrong cast or
column order fails here. Also: a record PostgreSQL refuses fails alone, and a batch whose
connection was terminated is retried on a new one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from backends import backend
from tokenrelay.billing import ledger
from tokenrelay.billing.writer import SettlementWriter, UsageRecord
from tokenrelay.customers.keys import ApiKeyInfo, KeyStore
from tokenrelay.store.db import create_engine, migrate_async
from tokenrelay.store.tables import accounts, usage_daily, usage_records
from tokenrelay.store.tables import ledger as ledger_table

T0 = dt.datetime(2026, 12, 6, 23, 59, 59, 999_999, tzinfo=dt.UTC)  # a day's last µs
T1 = dt.datetime(2026, 12, 7, 0, 0, 0, 1, tzinfo=dt.UTC)
FUNDS = 5_000_000_000


@asynccontextmanager
async def _store(name: str, tmp: Path) -> AsyncIterator[tuple[AsyncEngine, list[ApiKeyInfo]]]:
    """A migrated database of backend `name` with three funded keys (three accounts)."""
    with backend(name, tmp) as store:
        engine = create_engine(store.database_url)
        try:
            await migrate_async(engine)
            keys = [(await KeyStore(engine).create(f"k{i}", Decimal("5")))[0] for i in range(3)]
            yield engine, keys
        finally:
            await engine.dispose()


def _full(rid: str, key_id: str, account_id: str) -> UsageRecord:
    """Every column set, none to its default."""
    return UsageRecord(
        request_id=rid,
        key_id=key_id,
        model="gpt-4o",
        model_asked="gpt-4o-latest",
        vendor="openai",
        stream=True,
        fast_path=True,
        input_tokens=11,
        output_tokens=22,
        cache_read_tokens=33,
        cache_write_tokens=44,
        cache_write_1h_tokens=5,
        reasoning_tokens=6,
        usage_source="estimated",
        status="error",
        error="upstream 502: bad gateway ünïcode",
        attempts=3,
        started_at=T0,
        duration_ms=1_234,
        ttft_ms=56,
        session_id="sess-1",
        upstream_request_id="chatcmpl-xyz",
        cost_nano=7_000_000_001,  # above 2^32: a bigint
        price_version_id="pv_1",
        account_id=account_id,
        upstream_cost_nano=6_000_000_000,
        reason="upstream_error",
        loss_nano=42,
        deployment="openai/main",
        multiplier_ppm=1_100_000,
    )


def _bare(rid: str, key: ApiKeyInfo, model: str, cost: int) -> UsageRecord:
    """The nullable columns NULL, the rest mostly defaults (model_asked from model, account
    from the key)."""
    return UsageRecord(
        request_id=rid,
        key_id=key.id,
        model=model,
        vendor="anthropic",
        input_tokens=100,
        output_tokens=7,
        started_at=T1,
        cost_nano=cost,
        price_version_id="catalog",
    )


async def _settle(engine: AsyncEngine, keys: list[ApiKeyInfo]) -> list[bool]:
    """An earlier batch, then one batch with a replay of it, duplicates, NULLs and three
    accounts; the submitters' answers, in order."""
    a, b, c = keys
    writer = SettlementWriter(engine, batch_ms=50)  # long enough for all to share one batch
    writer.start()
    try:
        answers = [await writer.submit(_bare("req-old", a, "claude-sonnet-4-5", 10))]
        batches = writer.batches
        answers += await asyncio.gather(
            writer.submit(_full("req-full", a.id, a.account_id)),
            writer.submit(_bare("req-old", a, "claude-sonnet-4-5", 999)),  # replayed
            writer.submit(_bare("req-b1", b, "claude-sonnet-4-5", 300)),
            writer.submit(
                dataclasses.replace(_full("req-full", a.id, a.account_id), cost_nano=1)
            ),  # twice
            writer.submit(_bare("req-b2", b, "claude-sonnet-4-5", 400)),  # same roll-up row
            writer.submit(_bare("req-b3", b, "claude-haiku-4-5", 500)),
            writer.submit(_bare("req-c1", c, "claude-sonnet-4-5", 600)),
            writer.submit(_bare("req-b1", b, "claude-sonnet-4-5", 300)),  # twice, fresh id
        )
        assert writer.batches == batches + 1
    finally:
        await writer.close()
    return answers


async def _written(engine: AsyncEngine, keys: list[ApiKeyInfo]) -> dict[str, Any]:
    """What the settlement wrote, key and account ids replaced by their key's index and
    instants as naive UTC (SQLite hands them back naive)."""
    names = {k.id: f"key{i}" for i, k in enumerate(keys)}
    names |= {k.account_id: f"acct{i}" for i, k in enumerate(keys)}

    def plain(row: Any) -> dict[str, Any]:
        out = {}
        for column, value in row._mapping.items():
            if isinstance(value, dt.datetime) and value.tzinfo is not None:
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
            out[column] = names.get(value, value) if isinstance(value, str) else value
        return out

    debits = select(ledger_table).where(ledger_table.c.kind == "debit")
    async with engine.connect() as conn:
        return {
            "usage": [plain(r) for r in await conn.execute(select(usage_records))],
            "debits": [
                {k: v for k, v in plain(r).items() if k not in ("id", "created_at")}
                for r in await conn.execute(debits)
            ],
            "daily": [plain(r) for r in await conn.execute(select(usage_daily))],
            "balances": [
                plain(r) for r in await conn.execute(select(accounts.c.id, accounts.c.balance_nano))
            ],
        }


def _sorted(written: dict[str, Any]) -> dict[str, Any]:
    return {name: sorted(rows, key=repr) for name, rows in written.items()}


async def test_postgres_batch_writes_what_sqlite_writes(tmp_path: Path) -> None:
    written = {}
    for name in ("sqlite", "postgres+redis"):
        async with _store(name, tmp_path) as (engine, keys):
            answers = await _settle(engine, keys)
            assert answers == [True, True, False, True, False, True, True, True, False], name
            written[name] = await _written(engine, keys)
            assert await ledger.verify(engine) == [], name
            if name == "sqlite":
                continue
            async with engine.connect() as conn:
                started = dict(
                    (
                        await conn.execute(
                            select(usage_records.c.request_id, usage_records.c.started_at)
                        )
                    )
                    .tuples()
                    .all()
                )
            # timestamptz keeps the instant to the µs, time zone and all.
            assert started["req-full"] == T0
            assert started["req-full"].utcoffset() == dt.timedelta(0)
            assert started["req-b1"] == T1
    sqlite, postgres = (_sorted(written[n]) for n in ("sqlite", "postgres+redis"))
    assert postgres == sqlite
    # ...and what both wrote is what the records say.
    full = next(r for r in postgres["usage"] if r["request_id"] == "req-full")
    assert full == {
        **dataclasses.asdict(_full("req-full", "key0", "acct0")),
        "started_at": T0.replace(tzinfo=None),
    }
    bare = next(r for r in postgres["usage"] if r["request_id"] == "req-c1")
    nulls = ("error", "duration_ms", "ttft_ms", "session_id", "upstream_request_id")
    assert all(bare[c] is None for c in (*nulls, "deployment", "multiplier_ppm"))
    assert (bare["model_asked"], bare["stream"], bare["account_id"]) == (
        "claude-sonnet-4-5",
        False,
        "acct2",
    )
    assert {(d["request_id"], d["amount_nano"]) for d in postgres["debits"]} == {
        ("req-old", -10),
        ("req-full", -7_000_000_001),
        ("req-b1", -300),
        ("req-b2", -400),
        ("req-b3", -500),
        ("req-c1", -600),
    }
    assert all(d["kind"] == "debit" and d["note"] is None for d in postgres["debits"])
    b_sonnet = next(
        d
        for d in postgres["daily"]
        if d["account_id"] == "acct1" and d["model"] == "claude-sonnet-4-5"
    )
    assert b_sonnet == {
        "account_id": "acct1",
        "day": "2026-12-07",
        "model": "claude-sonnet-4-5",
        "vendor": "anthropic",
        "requests": 2,
        "errors": 0,
        "input_tokens": 200,
        "output_tokens": 14,
        "cost_nano": 700,
        "upstream_cost_nano": 0,
        "loss_nano": 0,
    }
    assert {b["id"]: b["balance_nano"] for b in postgres["balances"]} == {
        "acct0": FUNDS - 10 - 7_000_000_001,
        "acct1": FUNDS - 1_200,
        "acct2": FUNDS - 600,
    }


async def test_a_record_postgres_refuses_fails_alone(tmp_path: Path) -> None:
    """A value too long for its column fails the batch; the writer commits the records one by
    one, so only the bad one's caller gets the error (as SQLAlchemy's errors did)."""
    async with _store("postgres+redis", tmp_path) as (engine, keys):
        key = keys[0]
        writer = SettlementWriter(engine, batch_ms=50)
        writer.start()
        try:
            bad = dataclasses.replace(_bare("req-bad", key, "gpt-4o", 5), session_id="s" * 101)
            answers = await asyncio.gather(
                writer.submit(_bare("req-1", key, "gpt-4o", 100)),
                writer.submit(bad),
                writer.submit(_bare("req-2", key, "gpt-4o", 200)),
                return_exceptions=True,
            )
            assert answers[0] is True and answers[2] is True
            assert isinstance(answers[1], DBAPIError)
            assert not answers[1].connection_invalidated
            assert await writer.submit(_bare("req-3", key, "gpt-4o", 400)) is True
        finally:
            await writer.close()
        assert await ledger.load_balance(engine, key.account_id) == FUNDS - 700
        assert await ledger.verify(engine) == []


async def test_a_batch_retries_on_a_new_connection_when_its_own_was_terminated(
    tmp_path: Path,
) -> None:
    async with _store("postgres+redis", tmp_path) as (engine, keys):
        key = keys[0]
        writer = SettlementWriter(engine, batch_ms=0)
        writer.start()
        try:
            assert await writer.submit(_bare("req-1", key, "gpt-4o", 100)) is True
            async with engine.connect() as conn:
                # Every other session of this database: the writer's kept connection.
                ended = await conn.scalar(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
            assert ended == 1
            assert await writer.submit(_bare("req-2", key, "gpt-4o", 200)) is True
            assert await writer.submit(_bare("req-1", key, "gpt-4o", 100)) is False
        finally:
            await writer.close()
        assert await ledger.load_balance(engine, key.account_id) == FUNDS - 300
        assert await ledger.verify(engine) == []
