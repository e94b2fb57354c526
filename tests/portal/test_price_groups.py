"""Price groups: the catalog's prices are list prices (what the vendor bills the operator); an
account's price group multiplies them into the customer's price. Each usage record keeps both,
and holds reserve the customer's worst case."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from price_support import key_in_group
from tokenrelay.billing import ledger
from tokenrelay.billing.engine import BillingEngine
from tokenrelay.billing.pricing import customer_nano
from tokenrelay.billing.writer import UsageRecord
from tokenrelay.catalog import Catalog
from tokenrelay.errors import GatewayError
from tokenrelay.settings import Settings
from tokenrelay.store.db import create_engine, migrate_async
from tokenrelay.store.tables import price_overrides, usage_records


def test_customer_price_rounds_up_and_one_is_the_identity() -> None:
    assert customer_nano(1_000, 1_000_000) == 1_000
    assert customer_nano(1_000, 1_250_000) == 1_250
    assert customer_nano(3, 1_500_000) == 5  # 4.5 -> 5: a fraction never comes off the margin
    assert customer_nano(0, 2_000_000) == 0
    assert customer_nano(10**17, 3_000_000) == 3 * 10**17  # exact beyond a double's 2^53


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(f"sqlite:///{tmp_path}/groups.db")
    await migrate_async(eng)
    yield eng
    await eng.dispose()


async def test_a_marked_up_account_pays_more_and_the_record_keeps_the_list_cost(
    engine: AsyncEngine,
) -> None:
    key = await key_in_group(engine, "retail", Decimal("1.00"), "retail", 1_500_000)
    assert key.multiplier_ppm == 1_500_000

    settings = Settings(TOKENRELAY_DATABASE_URL=str(engine.url))  # type: ignore[call-arg]
    billing = BillingEngine(settings, engine, Catalog.load())
    await billing.start(serving=False)
    try:
        rid = "req-" + uuid.uuid4().hex[:8]
        admission = await billing.admit(key, rid, "gpt-4o", 100, 1_000)
        list_worst = 100 * 2_500 + 1_000 * 10_000  # gpt-4o: $2.50 in, $10 out per 1M
        assert admission.hold_nano == list_worst * 3 // 2
        record = UsageRecord(request_id=rid, key_id=key.id, model="gpt-4o")
        record.input_tokens, record.output_tokens = 10, 21
        cost = await billing.settle(admission, record)
        upstream = 10 * 2_500 + 21 * 10_000
        assert cost == customer_nano(upstream, 1_500_000) == 352_500
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    select(usage_records.c.cost_nano, usage_records.c.upstream_cost_nano).where(
                        usage_records.c.request_id == rid
                    )
                )
            ).one()
        assert tuple(row) == (cost, upstream)
        assert await ledger.load_balance(engine, key.account_id) == 1_000_000_000 - cost
        assert await billing.verify() == []
    finally:
        await billing.close()


@pytest.mark.parametrize("serving", [False, True], ids=["async path", "in-process lane"])
async def test_a_models_override_is_held_as_it_is_billed(
    engine: AsyncEngine, serving: bool
) -> None:
    """An operator's multiplier for one model in a group (3x here, the group's 1.5x) is what
    the hold reserves: held at the group's multiplier, a request could cost twice its hold,
    and a balance that covers the smaller worst case only must get a 402."""
    key = await key_in_group(engine, "retail", Decimal("1.00"), "retail", 1_500_000)
    async with engine.begin() as conn:
        await conn.execute(
            insert(price_overrides).values(
                group_name="retail", model_id="gpt-4o", multiplier_ppm=3_000_000
            )
        )

    settings = Settings(TOKENRELAY_DATABASE_URL=str(engine.url))  # type: ignore[call-arg]
    billing = BillingEngine(settings, engine, Catalog.load())
    await billing.start(serving=serving)
    try:
        list_worst = 100 * 2_500 + 1_000 * 10_000  # gpt-4o: $2.50 in, $10 out per 1M
        admission = await billing.admit(key, "req-a", "gpt-4o", 100, 1_000)
        assert admission.hold_nano == list_worst * 3
        record = UsageRecord(request_id="req-a", key_id=key.id, model="gpt-4o")
        record.input_tokens, record.output_tokens = 100, 1_000  # the most it could be
        assert await billing.settle(admission, record) == admission.hold_nano
        # $0.02: the 1.5x worst case ($0.015375) fits it, the 3x one ($0.03075) does not
        key2 = await key_in_group(engine, "retail 2", Decimal("0.02"), "retail")
        with pytest.raises(GatewayError) as refused:
            await billing.admit(key2, "req-b", "gpt-4o", 100, 1_000)
        assert refused.value.status == 402
    finally:
        await billing.close()
