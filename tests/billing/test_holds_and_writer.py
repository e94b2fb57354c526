"""Balance holds and the settlement writer: the two halves of "no overspend, billed once".

Holds: MemoryHolds (one process) and RedisHolds (every replica) behind one interface — a hold
that does not fit is refused, settling twice debits once, releasing after a settle changes
nothing, and the holds of a crashed replica stop counting once they expire.
Writer: the same request id submitted twice is recorded and debited once, on SQLite and on
PostgreSQL, whether the duplicate comes later, in the same batch, or from a new writer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from backends import BACKENDS, Backend, backend, redis_namespace
from tokenrelay.billing import ledger
from tokenrelay.billing.engine import BillingEngine
from tokenrelay.billing.holds import Holds, MemoryHolds, RedisHolds
from tokenrelay.billing.metering import RequestContext
from tokenrelay.billing.writer import SettlementWriter, UsageRecord
from tokenrelay.catalog import Catalog
from tokenrelay.customers.keys import ApiKeyInfo, KeyStore
from tokenrelay.ir import UsageTotals
from tokenrelay.settings import Settings
from tokenrelay.store.db import create_engine, migrate_async
from tokenrelay.store.tables import ledger as ledger_table
from tokenrelay.store.tables import usage_records

BALANCE = 1_000

# --------------------------------------------------------------------------------------------
# holds

HoldsFactory = Callable[..., Holds]


@pytest.fixture(params=["memory", "redis"])
async def make_holds(request: pytest.FixtureRequest) -> AsyncIterator[HoldsFactory]:
    """Builds holds over one store; every key starts with BALANCE nano-USD in the 'database'.
    For Redis, several instances built here share state like replicas do."""

    async def loader(key_id: str) -> int:
        return BALANCE

    if request.param == "memory":
        yield lambda **_: MemoryHolds(loader)
        return
    async with redis_namespace("holds") as (client, prefix):
        yield lambda **kw: RedisHolds(client, loader, prefix=prefix, **kw)


def _key() -> str:
    return "key_" + uuid.uuid4().hex[:8]


async def test_reserve_fails_when_the_hold_does_not_fit(make_holds: HoldsFactory) -> None:
    holds, key = make_holds(), _key()
    assert await holds.reserve(key, "r1", 600)
    assert not await holds.reserve(key, "r2", 401)
    assert await holds.available(key) == 400
    assert await holds.reserve(key, "r3", 400)  # exactly what is left fits
    assert not await holds.reserve(key, "r4", 1)
    assert await holds.available(key) == 0
    # Another key's balance is its own.
    assert await holds.reserve(_key(), "r5", BALANCE)


async def test_a_retried_reserve_is_not_a_second_hold(make_holds: HoldsFactory) -> None:
    holds, key = make_holds(), _key()
    assert await holds.reserve(key, "r1", 300)
    assert await holds.reserve(key, "r1", 300)
    assert await holds.available(key) == 700


async def test_concurrent_reserves_never_hold_more_than_the_balance(
    make_holds: HoldsFactory,
) -> None:
    holds, key = make_holds(), _key()
    results = await asyncio.gather(*(holds.reserve(key, f"r{i}", 100) for i in range(40)))
    assert results.count(True) == 10
    assert await holds.available(key) == 0


async def test_settle_twice_debits_once(make_holds: HoldsFactory) -> None:
    holds, key = make_holds(), _key()
    assert await holds.reserve(key, "r1", 600)
    assert await holds.settle(key, "r1", 250)  # hold released, real cost debited
    assert await holds.available(key) == BALANCE - 250
    assert not await holds.settle(key, "r1", 250)
    assert await holds.available(key) == BALANCE - 250
    # A settle retried after the first one with a different amount changes nothing either.
    assert not await holds.settle(key, "r1", 999)
    assert await holds.available(key) == BALANCE - 250


async def test_a_settled_request_is_told_apart_from_a_short_balance(
    make_holds: HoldsFactory,
) -> None:
    """A batch line settled before a crash lost its answer runs again: its reserve is refused,
    and `settled` says why (not a short balance), so the line is not failed with a 402."""
    holds, key = make_holds(), _key()
    assert not await holds.settled(key, "r1")
    assert await holds.reserve(key, "r1", 600)
    assert not await holds.settled(key, "r1")  # held, not settled
    assert await holds.settle(key, "r1", 250)
    assert not await holds.reserve(key, "r1", 600) and await holds.settled(key, "r1")
    assert not await holds.reserve(key, "r2", BALANCE) and not await holds.settled(key, "r2")
    assert await holds.available(key) == BALANCE - 250


async def test_release_after_settle_is_a_no_op(make_holds: HoldsFactory) -> None:
    holds, key = make_holds(), _key()
    assert await holds.reserve(key, "r1", 600)
    assert await holds.settle(key, "r1", 100)
    assert not await holds.release(key, "r1")
    assert await holds.available(key) == BALANCE - 100


async def test_release_gives_the_hold_back_once(make_holds: HoldsFactory) -> None:
    holds, key = make_holds(), _key()
    assert await holds.reserve(key, "r1", 600)
    assert await holds.release(key, "r1")
    assert not await holds.release(key, "r1")
    assert await holds.available(key) == BALANCE
    assert await holds.reserve(key, "r2", BALANCE)


async def test_zero_cost_requests_settle_and_release(make_holds: HoldsFactory) -> None:
    """A request the vendor refused costs 0, and a free model holds 0: both must settle."""
    holds, key = make_holds(), _key()
    assert await holds.reserve(key, "refused", 600)
    assert await holds.settle(key, "refused", 0)
    assert await holds.reserve(key, "free", 0)
    assert await holds.settle(key, "free", 0)
    assert await holds.reserve(key, "free-released", 0)
    assert await holds.release(key, "free-released")
    assert await holds.available(key) == BALANCE


async def test_credit_raises_the_loaded_balance(make_holds: HoldsFactory) -> None:
    holds, key = make_holds(), _key()
    assert await holds.reserve(key, "r1", BALANCE)
    assert not await holds.reserve(key, "r2", 500)
    await holds.credit(key, 500)
    assert await holds.reserve(key, "r2", 500)
    assert await holds.available(key) == 0


# In-process holds die with their process; only Redis holds outlive a crashed replica.
@pytest.mark.parametrize("make_holds", ["redis"], indirect=True)
async def test_expired_redis_holds_stop_counting(make_holds: HoldsFactory) -> None:
    live, crashed = make_holds(), make_holds(hold_ttl_s=1)
    assert isinstance(live, RedisHolds)
    key = _key()
    assert await crashed.reserve(key, "lost", 700)  # this replica then dies mid-request
    assert await live.reserve(key, "alive", 200)
    assert await live.available(key) == 100
    assert not await live.reserve(key, "blocked", 500)
    await asyncio.sleep(1.1)
    # The dead replica's hold expired; the live one's (default TTL) still counts.
    assert await live.available(key) == BALANCE - 200
    assert await live.reserve(key, "next", 500)
    assert await live.available(key) == BALANCE - 700


# --------------------------------------------------------------------------------------------
# settlement writer


@pytest.fixture(params=BACKENDS)
async def db(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Backend, AsyncEngine]]:
    with backend(request.param, tmp_path) as store:
        engine = create_engine(store.database_url)
        try:
            await migrate_async(engine)
            yield store, engine
        finally:
            await engine.dispose()


async def _funded_key(engine: AsyncEngine, credits: str = "5.00") -> ApiKeyInfo:
    info, _ = await KeyStore(engine).create("writer", Decimal(credits))
    return info


def _record(key_id: str, request_id: str, cost: int = 1_234) -> UsageRecord:
    return UsageRecord(
        request_id=request_id,
        key_id=key_id,
        model="gpt-4o",
        vendor="openai",
        input_tokens=10,
        output_tokens=20,
        cost_nano=cost,
        price_version_id="catalog",
    )


async def _debits(engine: AsyncEngine, request_id: str) -> list[int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(ledger_table.c.amount_nano).where(
                (ledger_table.c.request_id == request_id) & (ledger_table.c.kind == "debit")
            )
        )
        return [int(r[0]) for r in rows]


async def _count_usage(engine: AsyncEngine, request_id: str) -> int:
    async with engine.connect() as conn:
        n = await conn.scalar(select(func.count()).where(usage_records.c.request_id == request_id))
    return int(n or 0)


async def _writer(engine: AsyncEngine) -> SettlementWriter:
    writer = SettlementWriter(engine, batch_ms=2)
    writer.start()
    return writer


async def test_same_request_id_submitted_twice_is_debited_once(
    db: tuple[Backend, AsyncEngine],
) -> None:
    _, engine = db
    key = await _funded_key(engine)
    writer = await _writer(engine)
    try:
        assert await writer.submit(_record(key.id, "req-dup")) is True
        # The same request settled again (a retry), even with another amount: nothing written.
        assert await writer.submit(_record(key.id, "req-dup", cost=9_999)) is False
    finally:
        await writer.close()
    # ...also by a new writer, as after a restart.
    writer = await _writer(engine)
    try:
        assert await writer.submit(_record(key.id, "req-dup")) is False
    finally:
        await writer.close()
    assert await ledger.load_balance(engine, key.account_id) == 5_000_000_000 - 1_234
    assert await _debits(engine, "req-dup") == [-1_234]
    assert await _count_usage(engine, "req-dup") == 1
    assert await ledger.verify(engine) == []


async def test_duplicates_in_one_batch_are_debited_once(db: tuple[Backend, AsyncEngine]) -> None:
    _, engine = db
    key = await _funded_key(engine)
    writer = SettlementWriter(engine, batch_ms=50)  # long enough for all to share one batch
    writer.start()
    try:
        first, second, other = await asyncio.gather(
            writer.submit(_record(key.id, "req-a", cost=1_000)),
            writer.submit(_record(key.id, "req-a", cost=1_000)),
            writer.submit(_record(key.id, "req-b", cost=500)),
        )
    finally:
        await writer.close()
    assert sorted([first, second]) == [False, True]
    assert other is True
    assert writer.batches == 1
    assert await ledger.load_balance(engine, key.account_id) == 5_000_000_000 - 1_500
    assert await _debits(engine, "req-a") == [-1_000]
    assert await ledger.verify(engine) == []


async def test_engine_settles_a_request_once_across_two_settle_paths(
    db: tuple[Backend, AsyncEngine],
) -> None:
    """The full settle path (writer, then holds) for a request settled twice — as when two
    code paths (or two replicas) both try to bill it: one debit in the DB and in the holds."""
    store, engine = db
    settings = Settings(  # type: ignore[call-arg]
        TOKENRELAY_DATABASE_URL=store.database_url, TOKENRELAY_REDIS_URL=store.redis_url
    )
    billing = BillingEngine(settings, engine, Catalog.load())
    await billing.start(serving=False)
    try:
        key = await _funded_key(engine, "1.00")
        rid = "req-" + uuid.uuid4().hex[:8]
        admission = await billing.admit(key, rid, "gpt-4o", 100, 1_000)
        assert admission.hold_nano > 0
        held = await billing.holds.available(key.account_id)
        assert held == 1_000_000_000 - admission.hold_nano

        # A second admission object for the same request (another replica's view).
        twin = dataclasses.replace(admission)
        record = _record(key.id, rid)
        cost = await billing.settle(admission, record)
        again = await billing.settle(twin, dataclasses.replace(record))
        assert cost == again == 10 * 2_500 + 20 * 10_000  # gpt-4o: $2.50 in, $10 out per 1M
        assert await billing.holds.available(key.account_id) == 1_000_000_000 - cost
        assert await ledger.load_balance(engine, key.account_id) == 1_000_000_000 - cost
        assert await _debits(engine, rid) == [-cost]
        assert await billing.verify() == []
    finally:
        await billing.close()


def test_record_from_context_takes_each_field_from_its_own_source() -> None:
    """UsageRecord.from_context builds the record positionally (for speed): every field must
    come from its own source, which distinct values show."""
    ctx = RequestContext(
        request_id="rid",
        client_format="openai",
        key_id="kid",
        model_asked="asked",
        model_id="served",
        vendor="ven",
        stream=True,
        fast_path=True,
        started_at=1_700_000_000.25,
        first_byte_ms=12.4,
        duration_ms=56.6,
        usage=UsageTotals(1, 2, 3, 4, 5, 6),
        usage_source="estimated",
        status="error",
        error="boom",
        session_id="sess",
        upstream_request_id="up",
        deployment="ven/dep",
    )
    record = UsageRecord.from_context(ctx, attempts=7)
    assert record == UsageRecord(
        request_id="rid",
        key_id="kid",
        model="served",
        model_asked="asked",
        vendor="ven",
        stream=True,
        fast_path=True,
        input_tokens=1,
        output_tokens=2,
        cache_read_tokens=3,
        cache_write_tokens=4,
        cache_write_1h_tokens=5,
        reasoning_tokens=6,
        usage_source="estimated",
        status="error",
        error="boom",
        attempts=7,
        started_at=dt.datetime(2023, 11, 14, 22, 13, 20, 250_000, tzinfo=dt.UTC),
        duration_ms=57,
        ttft_ms=12,
        session_id="sess",
        upstream_request_id="up",
        deployment="ven/dep",
    )
