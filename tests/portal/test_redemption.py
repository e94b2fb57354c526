"""Redemption codes: one code, 50 concurrent attempts (one account, and 50 accounts), one
credit — on SQLite and on PostgreSQL with Redis holds; expired and unknown codes move nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from backends import BACKENDS, backend
from tokenrelay.billing import ledger
from tokenrelay.billing.engine import BillingEngine
from tokenrelay.catalog import Catalog
from tokenrelay.customers.accounts import AccountStore
from tokenrelay.portal.topups import RedeemError, create_batch, redeem
from tokenrelay.settings import Settings
from tokenrelay.store.db import create_engine, migrate_async
from tokenrelay.store.tables import ledger as ledger_table

DOLLAR = 1_000_000_000


@pytest.fixture(params=BACKENDS)
async def billing(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BillingEngine]:
    with backend(request.param, tmp_path) as store:
        engine = create_engine(store.database_url)
        await migrate_async(engine)
        settings = Settings(  # type: ignore[call-arg]
            TOKENRELAY_DATABASE_URL=store.database_url, TOKENRELAY_REDIS_URL=store.redis_url
        )
        engine_ = BillingEngine(settings, engine, Catalog.load())
        await engine_.start(serving=False)
        try:
            yield engine_
        finally:
            await engine_.close()
            await engine.dispose()


async def _outcomes(attempts: list[asyncio.Future[int] | object]) -> tuple[int, list[str]]:
    results = await asyncio.gather(*attempts, return_exceptions=True)  # type: ignore[arg-type]
    ok = sum(1 for r in results if isinstance(r, int))
    errors = [str(r) for r in results if isinstance(r, RedeemError)]
    assert ok + len(errors) == len(results), [r for r in results if not isinstance(r, int)]
    return ok, errors


async def test_fifty_concurrent_redemptions_of_one_code_credit_once(
    billing: BillingEngine,
) -> None:
    accounts = AccountStore(billing.engine)
    mine = await accounts.sign_up("one@example.com", "correct horse battery")
    _, (code,) = await create_batch(billing.engine, 1, 5 * DOLLAR, None)

    ok, errors = await _outcomes([redeem(billing, mine.id, code) for _ in range(50)])
    assert ok == 1 and len(errors) == 49
    assert set(errors) == {"you redeemed this code already"}
    assert await ledger.load_balance(billing.engine, mine.id) == 5 * DOLLAR
    assert await billing.available(mine.id) == 5 * DOLLAR

    # 50 accounts racing for a second code: one wins, the others get nothing.
    others = [
        await accounts.sign_up(f"racer{i}@example.com", "correct horse battery") for i in range(50)
    ]
    _, (second,) = await create_batch(billing.engine, 1, 2 * DOLLAR, None)
    ok, errors = await _outcomes([redeem(billing, a.id, second) for a in others])
    assert ok == 1 and len(errors) == 49
    balances = [await ledger.load_balance(billing.engine, a.id) for a in others]
    assert sorted(balances) == [0] * 49 + [2 * DOLLAR]
    async with billing.engine.connect() as conn:
        credits = await conn.scalar(
            select(func.count()).where(ledger_table.c.note.like("redemption code %"))
        )
    assert credits == 2
    assert await billing.verify() == []


async def test_expired_unknown_and_malformed_codes_move_nothing(billing: BillingEngine) -> None:
    accounts = AccountStore(billing.engine)
    mine = await accounts.sign_up("two@example.com", "correct horse battery")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    _, (expired,) = await create_batch(billing.engine, 1, DOLLAR, past)
    for code, message in [
        (expired, "redeemed already, or it has expired"),
        ("TR-" + "A" * 20, "unknown code"),
        ("free money", "not a redemption code"),
        ("", "not a redemption code"),
    ]:
        with pytest.raises(RedeemError, match=message):
            await redeem(billing, mine.id, code)
    assert await ledger.load_balance(billing.engine, mine.id) == 0
    with pytest.raises(ValueError):
        await create_batch(billing.engine, 0, DOLLAR, None)
    with pytest.raises(ValueError):
        await create_batch(billing.engine, 1, 0, None)
