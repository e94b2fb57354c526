"""A price group's cost is rounded once, up, from the exact list amount: never a nano above
ceil(exact list × multiplier), whichever usage (issue 21, item 6)."""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from price_support import key_in_group
from tokenrelay import ir
from tokenrelay.billing.engine import BillingEngine
from tokenrelay.billing.pricing import priced_nano
from tokenrelay.billing.writer import UsageRecord
from tokenrelay.catalog import Catalog, Price
from tokenrelay.settings import Settings
from tokenrelay.store.db import create_engine, migrate_async
from tokenrelay.store.tables import usage_records

CATALOG = Catalog.load()
MODEL = "deepseek-v4-pro"  # $0.435 / $0.87 / $0.003625 per 1M: sub-nano amounts per token


def exact_list_nano(u: ir.UsageTotals, price: Price) -> Fraction:
    r = price.for_prompt(u.prompt_total)
    written_5m = max(u.cache_write - u.cache_write_1h, 0)
    per_million = (
        u.input * Fraction(r.input)
        + u.output * Fraction(r.output)
        + u.cache_read * Fraction(r.cache_read)
        + written_5m * Fraction(r.cache_write)
        + u.cache_write_1h * Fraction(r.cache_write_1h)
    )
    return per_million * 1000  # USD per 1M tokens -> nano-USD per token


usages = st.builds(
    ir.UsageTotals,
    input=st.integers(0, 400_000),
    output=st.integers(0, 100_000),
    cache_read=st.integers(0, 400_000),
)
multipliers = st.integers(1, 5_000_000).filter(lambda m: m != 1_000_000)


@settings(max_examples=500, deadline=None)
@given(usage=usages, ppm=multipliers, model=st.sampled_from([MODEL, "deepseek-v4-flash"]))
def test_customer_price_is_the_exact_amount_rounded_up_once(
    usage: ir.UsageTotals, ppm: int, model: str
) -> None:
    price = CATALOG.get(model).price  # type: ignore[union-attr]
    exact = exact_list_nano(usage, price)
    upstream, cost = priced_nano(usage, price, ppm)
    assert cost == math.ceil(exact * Fraction(ppm, 1_000_000))
    assert upstream == math.floor(exact + Fraction(1, 2))


def test_settled_records_carry_the_once_rounded_cost(tmp_path: Path) -> None:
    """Through the engine and into the usage records: 60 random usages of a marked-up account
    (1.15x) on sub-nano prices, each record's cost is ceil(exact list × 1.15)."""
    ppm = 1_150_000
    rng = random.Random(21)
    batch = [
        ir.UsageTotals(
            input=rng.randrange(400_000),
            output=rng.randrange(100_000),
            cache_read=rng.randrange(400_000),
        )
        for _ in range(60)
    ]
    asyncio.run(_settle_all(tmp_path, ppm, batch))


async def _settle_all(tmp_path: Path, ppm: int, batch: list[ir.UsageTotals]) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/rounding.db")
    await migrate_async(engine)
    key = await key_in_group(engine, "marked-up", Decimal(1000), "plus15", ppm)
    settings_ = Settings(TOKENRELAY_DATABASE_URL=str(engine.url))  # type: ignore[call-arg]
    billing = BillingEngine(settings_, engine, CATALOG)
    await billing.start(serving=False)
    price = CATALOG.get(MODEL).price  # type: ignore[union-attr]
    expected: dict[str, int] = {}
    try:
        for usage in batch:
            rid = "req-" + uuid.uuid4().hex
            admission = await billing.admit(key, rid, MODEL, 900_000, 100_000)
            record = UsageRecord(request_id=rid, key_id=key.id, model=MODEL)
            record.input_tokens, record.output_tokens = usage.input, usage.output
            record.cache_read_tokens = usage.cache_read
            await billing.settle(admission, record)
            expected[rid] = math.ceil(exact_list_nano(usage, price) * Fraction(ppm, 1_000_000))
        async with engine.connect() as conn:
            rows = await conn.execute(select(usage_records.c.request_id, usage_records.c.cost_nano))
            recorded = {rid: int(cost) for rid, cost in rows}
        assert recorded == expected
    finally:
        await billing.close()
        await engine.dispose()
