"""Token usage × catalog price → integer nano-USD (1e-9 USD), exact and deterministic.

Prices are USD per 1M tokens (Decimal); one token at $p/1M costs p × 1000 nano-USD, which may
have a fraction (e.g. $0.0375/1M), so the sum is taken in Decimal and rounded once per request
(half-up) — the same usage always gives the same integer, whichever path produced it.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from tokenrelay import ir
from tokenrelay.catalog import Price

NANO_PER_USD = 1_000_000_000
_PER_TOKEN = Decimal(NANO_PER_USD) / Decimal(1_000_000)


def cost_nano(usage: ir.UsageTotals, price: Price) -> int:
    rates = price.for_prompt(usage.prompt_total)
    cache_write_5m = max(usage.cache_write - usage.cache_write_1h, 0)
    total = (
        usage.input * rates.input
        + usage.output * rates.output
        + usage.cache_read * rates.cache_read
        + cache_write_5m * rates.cache_write
        + usage.cache_write_1h * rates.cache_write_1h
    ) * _PER_TOKEN
    return int(total.to_integral_value(rounding=ROUND_HALF_UP))


def worst_case_nano(input_tokens: int, max_output: int, price: Price) -> int:
    """The most a request can cost: its whole prompt uncached plus every allowed output token."""
    usage = ir.UsageTotals(input=input_tokens, output=max_output)
    return cost_nano(usage, price)


def usd(nano: int) -> str:
    """Exact decimal string, at least two places, no trailing zeros beyond them:
    5_250_000_000 → "5.25", 1234 → "0.000001234"."""
    sign = "-" if nano < 0 else ""
    whole, frac = divmod(abs(nano), NANO_PER_USD)
    digits = f"{frac:09d}".rstrip("0")
    return f"{sign}{whole}.{digits.ljust(2, '0')}"
