"""Pricing is exact: the integer fast path gives the same nano-USD as Decimal arithmetic for
every catalog price and any usage, and a rate with more than 9 decimals still prices exactly."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from tokenrelay import ir
from tokenrelay.billing.pricing import cost_nano, worst_case_nano
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


@settings(max_examples=300, deadline=None)
@given(
    price=st.sampled_from(PRICES),
    parts=st.lists(st.integers(min_value=0, max_value=300_000), min_size=4, max_size=4),
    out=st.integers(min_value=0, max_value=128_000),
)
def test_the_hold_covers_any_way_the_prompt_is_billed(
    price: Price, parts: list[int], out: int
) -> None:
    """However the vendor splits the prompt (uncached, cache read, 5-minute or 1-hour cache
    write) and however many of the allowed output tokens it writes, the bill fits the hold."""
    inp, read, written_5m, written_1h = parts
    prompt = inp + read + written_5m + written_1h
    usage = ir.UsageTotals(
        input=inp,
        output=out,
        cache_read=read,
        cache_write=written_5m + written_1h,
        cache_write_1h=written_1h,
    )
    assert cost_nano(usage, price) <= worst_case_nano(prompt, out, price)
