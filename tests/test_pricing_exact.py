"""Pricing is exact: the integer fast path gives the same nano-USD as Decimal arithmetic for
every catalog price and any usage, and a rate with more than 9 decimals still prices exactly."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from tokenrelay import ir
from tokenrelay.billing.pricing import cost_nano
from tokenrelay.catalog import Catalog, Price

PRICES = [e.price for e in Catalog.load().entries()]
ODD = Price(Decimal("0.1234567891"), Decimal("3"), Decimal("0"), Decimal("1"), Decimal("2"))


def decimal_cost(u: ir.UsageTotals, price: Price) -> int:
    r = price.for_prompt(u.prompt_total)
    written_5m = max(u.cache_write - u.cache_write_1h, 0)
    usd = (
        u.input * r.input
        + u.output * r.output
        + u.cache_read * r.cache_read
        + written_5m * r.cache_write
        + u.cache_write_1h * r.cache_write_1h
    ) / Decimal(1_000_000)
    return int((usd * 10**9).to_integral_value(rounding=ROUND_HALF_UP))


tokens = st.integers(min_value=0, max_value=2_000_000)


@settings(max_examples=400, deadline=None)
@given(
    price=st.sampled_from([*PRICES, ODD]),
    inp=tokens,
    out=tokens,
    read=tokens,
    written=tokens,
    written_1h_share=st.floats(min_value=0, max_value=1),
)
def test_cost_equals_decimal_arithmetic(
    price: Price, inp: int, out: int, read: int, written: int, written_1h_share: float
) -> None:
    usage = ir.UsageTotals(
        input=inp,
        output=out,
        cache_read=read,
        cache_write=written,
        cache_write_1h=int(written * written_1h_share),
    )
    assert cost_nano(usage, price) == decimal_cost(usage, price)
