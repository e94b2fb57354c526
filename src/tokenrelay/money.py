"""Money: integer nano-USD (1e-9 USD) parsed from, and formatted to, exact decimal strings.

The bottom layer: imports nothing from tokenrelay. Every amount an operator types (credits,
balances, prices) goes through `parse_nano` / `parse_rate`, which bound the value *before* any
Decimal arithmetic (so "1e999999" is a clear error, never an Overflow or a quantize failure)
and refuse anything that is not exact at nano-USD (or femto-USD per token) precision.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, DecimalException, localcontext
from typing import Any

NANO_PER_USD = 1_000_000_000
# Balances are BIGINT nano-USD: at most 2^63 - 1 (~$9.2 billion) either way.
MAX_BALANCE_NANO = 2**63 - 1
# One key creation or credit: $1,000,000,000.
MAX_AMOUNT_NANO = 10**18
# A price: at most $100,000 per 1M tokens, at most 9 decimals (an integer femto-USD per token).
MAX_RATE_USD = Decimal(100_000)
RATE_DECIMALS = 9
# Longer inputs are junk, not money; refusing them bounds the parsing work.
_MAX_TEXT = 100


class MoneyError(ValueError):
    """An amount that is not a valid USD value here; the message says what is allowed."""


def to_decimal(value: Any) -> Decimal:
    """An exact Decimal from a number or a decimal string (a float is taken as written: str()
    first, so 0.1 is 0.1, not its binary approximation). Refuses bools, NaN and infinities."""
    # bool is an int in Python; `true` dollars is a client bug, not $1.
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise MoneyError("must be a number or a decimal string")
    text = value if isinstance(value, str) else str(value)
    text = text.strip()
    if len(text) > _MAX_TEXT:
        raise MoneyError("not a decimal number")
    try:
        amount = Decimal(text)
    except DecimalException as exc:
        raise MoneyError("not a decimal number") from exc
    if not amount.is_finite():
        raise MoneyError("must be a finite number")
    return amount


def _exact(amount: Decimal, decimals: int) -> Decimal | None:
    """`amount` at exactly `decimals` places, or None if that would round it. Call only with a
    bounded amount (|amount| < 10^20): the precision below covers every such value."""
    with localcontext() as ctx:
        ctx.prec = 60
        quantum = Decimal(1).scaleb(-decimals)
        rounded = amount.quantize(quantum)
    return rounded if rounded == amount else None


def parse_nano(
    value: Any,
    *,
    signed: bool = False,
    allow_zero: bool = True,
    max_nano: int = MAX_AMOUNT_NANO,
) -> int:
    """USD (number or decimal string) → nano-USD, exactly. Refuses more than 9 decimals, a
    magnitude above `max_nano`, negatives unless `signed`, and 0 unless `allow_zero`."""
    amount = to_decimal(value)
    if amount < 0 and not signed:
        raise MoneyError("must not be negative")
    # Compared before any arithmetic: a Decimal comparison is exact at any exponent.
    if amount.copy_abs() > Decimal(max_nano).scaleb(-9):  # abs() would round: Overflow
        raise MoneyError(f"must be at most {usd(max_nano)} in magnitude")
    exact = _exact(amount, 9)
    if exact is None:
        raise MoneyError("at most 9 decimal places (1 nano-USD)")
    nano = int(exact.scaleb(9))
    if nano == 0 and not allow_zero:
        raise MoneyError("must not be zero")
    return nano


def parse_rate(value: Any) -> Decimal:
    """A price in USD per 1M tokens: finite, 0 ≤ rate ≤ MAX_RATE_USD, at most 9 decimals (so
    rate × 10^9 is an integer femto-USD per token, what the integer cost path needs)."""
    rate = to_decimal(value)
    if rate < 0:
        raise MoneyError("must be a finite, non-negative number")
    if rate > MAX_RATE_USD:
        raise MoneyError(f"at most {MAX_RATE_USD} USD per 1M tokens")
    exact = _exact(rate, RATE_DECIMALS)
    if exact is None:
        raise MoneyError(f"at most {RATE_DECIMALS} decimal places")
    # As typed ("2.50" stays), but never in exponent form: "1E+2" is stored as "100" and
    # "0E-30" as "0E-9".
    exponent = rate.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    if exponent > 0:
        return rate.quantize(Decimal(1))
    return exact if exponent < -RATE_DECIMALS else rate


def round_half_up(amount: Decimal) -> int:
    """A Decimal amount of nano-USD to the nearest integer, halves up (the billing rounding)."""
    return int(amount.to_integral_value(rounding=ROUND_HALF_UP))


def div_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half-up, in integers (femto → nano: denominator 10^6)."""
    whole, rest = divmod(numerator, denominator)
    return whole + (1 if 2 * rest >= denominator else 0)


def usd(nano: int) -> str:
    """Exact decimal string, at least two places, no trailing zeros beyond them:
    5_250_000_000 → "5.25", 1234 → "0.000001234"."""
    sign = "-" if nano < 0 else ""
    whole, frac = divmod(abs(nano), NANO_PER_USD)
    digits = f"{frac:09d}".rstrip("0")
    return f"{sign}{whole}.{digits.ljust(2, '0')}"


def fits_balance(balance_nano: int) -> bool:
    """Whether a balance fits the BIGINT column."""
    return -MAX_BALANCE_NANO <= balance_nano <= MAX_BALANCE_NANO
