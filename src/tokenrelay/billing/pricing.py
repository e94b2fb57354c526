"""Token usage × catalog price → integer nano-USD (1e-9 USD), exact and deterministic.

Prices are USD per 1M tokens (Decimal); one token at $p/1M costs p × 1000 nano-USD, which may
have a fraction (e.g. $0.0375/1M), so the sum is taken in Decimal and rounded once per request
(half-up) — the same usage always gives the same integer, whichever path produced it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache

from tokenrelay import ir
from tokenrelay.catalog import Price
from tokenrelay.money import NANO_PER_USD, div_half_up, usd

__all__ = [
    "NANO_PER_USD",
    "cost_nano",
    "customer_nano",
    "priced_nano",
    "usd",
    "worst_case_nano",
]
PPM = 1_000_000
_PER_TOKEN = Decimal(NANO_PER_USD) / Decimal(1_000_000)


def cost_nano(usage: ir.UsageTotals, price: Price) -> int:
    """The list price of `usage`, rounded half-up once to the nano-USD."""
    return _half_up(_exact_nano(usage, price))


def priced_nano(
    usage: ir.UsageTotals, price: Price, multiplier_ppm: int, upstream_ppm: int = PPM
) -> tuple[int, int]:
    """(upstream price, customer price) of `usage`. The customer's is rounded once, up, from
    the exact list amount × the price group's multiplier: rounding the list price first and
    then the multiplied amount could put a nano above ceil(exact × multiplier). The upstream
    price is the list price × `upstream_ppm` (what the vendor bills over its list: its batch
    API's discount), rounded half-up once."""
    femto = _femto_total(usage, price)
    if femto is not None:  # integers all the way (Fraction arithmetic cost ~8 µs a request)
        listed = _femto_to_nano(femto)
        upstream = (
            listed
            if upstream_ppm == PPM
            else div_half_up(femto * upstream_ppm, _FEMTO_PER_NANO * PPM)
        )
        if multiplier_ppm == PPM:
            return upstream, listed
        return upstream, -((-femto * multiplier_ppm) // (_FEMTO_PER_NANO * PPM))
    exact = _exact_nano(usage, price)
    listed = _half_up(exact)
    upstream = listed if upstream_ppm == PPM else _half_up(exact * upstream_ppm / PPM)
    if multiplier_ppm == PPM:
        return upstream, listed
    return upstream, math.ceil(exact * multiplier_ppm / PPM)


def _half_up(exact: Fraction) -> int:
    return math.floor(exact + _HALF)


_HALF = Fraction(1, 2)


def _exact_nano(usage: ir.UsageTotals, price: Price) -> Fraction:
    """The exact nano-USD list amount of `usage` (a femto-USD integer / 10^6 in the common
    case, a Decimal sum otherwise)."""
    femto = _femto_total(usage, price)
    if femto is not None:  # integer arithmetic, same result as the Decimal sum below
        return Fraction(femto, _FEMTO_PER_NANO)
    rates = price.for_prompt(usage.prompt_total)
    cache_write_5m = max(usage.cache_write - usage.cache_write_1h, 0)
    exact = (
        usage.input * rates.input
        + usage.output * rates.output
        + usage.cache_read * rates.cache_read
        + cache_write_5m * rates.cache_write
        + usage.cache_write_1h * rates.cache_write_1h
    ) * _PER_TOKEN
    return Fraction(exact)


def _femto_total(usage: ir.UsageTotals, price: Price) -> int | None:
    """The exact list amount of `usage` in femto-USD, when every rate fits (else None)."""
    femto = _femto_rates(price.for_prompt(usage.prompt_total))
    if femto is None:
        return None
    return (
        usage.input * femto[0]
        + usage.output * femto[1]
        + usage.cache_read * femto[2]
        + max(usage.cache_write - usage.cache_write_1h, 0) * femto[3]
        + usage.cache_write_1h * femto[4]
    )


# A rate in USD per 1M tokens × 10^9 = femto-USD (1e-15) per token: an exact integer for any
# rate with at most 9 decimals, which turns pricing into integer arithmetic (~10x faster than
# Decimal, and it runs twice per request).
_FEMTO_PER_RATE = Decimal(10**9)
_FEMTO_PER_NANO = 10**6


def _femto_to_nano(total: int) -> int:
    """Femto-USD to nano-USD, rounded half-up as the Decimal path of cost_nano rounds."""
    return div_half_up(total, _FEMTO_PER_NANO)


@lru_cache(maxsize=4096)
def _femto_rates(p: Price) -> tuple[int, int, int, int, int] | None:
    femto = []
    for rate in (p.input, p.output, p.cache_read, p.cache_write, p.cache_write_1h):
        scaled = rate * _FEMTO_PER_RATE
        if scaled != scaled.to_integral_value() or scaled < 0:
            return None
        femto.append(int(scaled))
    return femto[0], femto[1], femto[2], femto[3], femto[4]


def worst_case_nano(prompt_tokens: int, max_output: int, price: Price) -> int:
    """The most a request can cost: its whole prompt at the dearest prompt rate (uncached, or
    all written to a 5-minute or 1-hour cache, which costs more than input on some vendors)
    plus every allowed output token."""
    rates = price.for_prompt(prompt_tokens)
    femto = _femto_rates(rates)
    if femto is not None:  # what the Decimal form below gives, without building a Price
        dearest_femto = max(femto[0], femto[3], femto[4])
        return _femto_to_nano(prompt_tokens * dearest_femto + max_output * femto[1])
    dearest = max(rates.input, rates.cache_write, rates.cache_write_1h)
    usage = ir.UsageTotals(input=prompt_tokens, output=max_output)
    return cost_nano(usage, replace(rates, input=dearest))


def customer_nano(list_nano: int, multiplier_ppm: int) -> int:
    """The customer's price of usage whose list price (what the vendor bills) is `list_nano`:
    × the price group's multiplier (parts per million), rounded up so that a fraction of a
    nano-USD never comes out of the operator's margin. Exact integers; 1x is the identity."""
    if multiplier_ppm == PPM:
        return list_nano
    return -((-list_nano * multiplier_ppm) // PPM)
