"""The periodic Redis reconciliation (BillingEngine.reconcile) on PostgreSQL + Redis replays
each committed ledger entry whose Redis step never ran exactly once, including an entry whose
id was handed out before a newer one's but that committed after the round that read past it
(PostgreSQL hands out ids at insert, not at commit). Entries replayed once are not sent to
Redis again in later rounds."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text

from backends import Backend, backend
from tokenrelay.billing.engine import BillingEngine
from tokenrelay.billing.holds import RedisHolds
from tokenrelay.catalog import Catalog
from tokenrelay.customers.keys import KeyStore
from tokenrelay.settings import Settings
from tokenrelay.store.db import create_engine, migrate_async
from tokenrelay.store.tables import accounts, ledger


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Backend]:
    with backend("postgres+redis", tmp_path) as b:
        yield b


def test_each_missing_step_is_replayed_once_late_commits_included(store: Backend) -> None:
    asyncio.run(_rounds(store))


async def _rounds(store: Backend) -> None:
    engine = create_engine(store.database_url)
    await migrate_async(engine)
    keys = KeyStore(engine)
    created, _ = await keys.create("reconcile", Decimal(100))
    account = created.account_id
    assert account is not None
    settings = Settings(  # type: ignore[call-arg]
        TOKENRELAY_DATABASE_URL=store.database_url, TOKENRELAY_REDIS_URL=store.redis_url
    )
    billing = BillingEngine(settings, engine, Catalog.load())
    await billing.start(serving=False)
    holds = billing.holds
    assert isinstance(holds, RedisHolds)
    sent: list[int] = []
    replay = holds.replay

    async def counting(entries: list[tuple[int, str, str, int, str | None]]) -> int:
        sent.extend(e[0] for e in entries)
        return await replay(entries)

    holds.replay = counting  # type: ignore[method-assign]

    async def debit(request_id: str, amount: int, entry_id: int | None = None) -> int:
        """A debit committed without its Redis step (a process killed in between)."""
        values = {
            "key_id": created.id,
            "account_id": account,
            "kind": "debit",
            "amount_nano": -amount,
            "request_id": request_id,
            "created_at": dt.datetime.now(dt.UTC),
        }
        if entry_id is not None:
            values["id"] = entry_id
        async with engine.begin() as conn:
            row = await conn.execute(insert(ledger).values(values).returning(ledger.c.id))
            await conn.execute(
                accounts.update()
                .where(accounts.c.id == account)
                .values(balance_nano=accounts.c.balance_nano - amount)
            )
            return int(row.scalar_one())

    async def redis_and_db() -> tuple[int, int]:
        async with engine.connect() as conn:
            db = await conn.scalar(select(accounts.c.balance_nano).where(accounts.c.id == account))
        return await holds.available(account), int(db or 0)

    try:
        start = await redis_and_db()  # loads the balance into Redis (its mark: the newest id)
        assert start[0] == start[1] == 100 * 10**9
        first = await debit("req-a", 1_000)
        await billing.reconcile()  # the first round: the newest entries
        assert await redis_and_db() == (start[0] - 1_000, start[1] - 1_000)

        async with engine.connect() as conn:  # an id handed out, its commit still to come
            late_id = int(await conn.scalar(text("SELECT nextval('ledger_id_seq')")) or 0)
        second = await debit("req-b", 2_000)
        assert first < late_id < second
        sent.clear()
        await billing.reconcile()
        assert sent == [second]  # req-a was replayed in the first round: not sent again
        assert await redis_and_db() == (start[0] - 3_000, start[1] - 3_000)

        await debit("req-late", 4_000, entry_id=late_id)
        sent.clear()
        await billing.reconcile()
        assert sent == [late_id]
        assert await redis_and_db() == (start[0] - 7_000, start[1] - 7_000)

        sent.clear()
        assert await billing.reconcile() == 0
        assert sent == []
    finally:
        await billing.close()
        await engine.dispose()
