"""tokenrelay.money: exact USD text → nano-USD, bounded before any arithmetic, and back."""

from __future__ import annotations

import ast
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenrelay import money
from tokenrelay.money import MAX_AMOUNT_NANO, MoneyError, parse_nano, parse_rate, usd


@pytest.mark.parametrize(
    ("value", "nano"),
    [
        ("5.00", 5_000_000_000),
        ("0.000000001", 1),
        (0.1, 100_000_000),
        (" 2.5 ", 2_500_000_000),
        ("1E+2", 100_000_000_000),
        ("0e999999999", 0),
        ("1000000000", MAX_AMOUNT_NANO),
    ],
)
def test_parse_nano_is_exact(value: Any, nano: int) -> None:
    assert parse_nano(value) == nano


@pytest.mark.parametrize(
    "value",
    [
        *("1e999999", "1e9999999", "1e99999999999999999999", 1e308, "1e308", "-1", "NaN"),
        *("-Infinity", "0.0000000001", "1e-999999", "1000000000.000000001", "1" * 5000, ""),
        *("abc", True, None),
    ],
)
def test_parse_nano_refuses_with_a_money_error(value: Any) -> None:
    with pytest.raises(MoneyError):
        parse_nano(value)


def test_signed_and_zero() -> None:
    assert parse_nano("-2.5", signed=True) == -2_500_000_000
    with pytest.raises(MoneyError):
        parse_nano("-1e999999", signed=True)
    with pytest.raises(MoneyError, match="zero"):
        parse_nano("0.000", signed=True, allow_zero=False)


def test_parse_rate_bounds_and_form() -> None:
    assert str(parse_rate("2.50")) == "2.50" and str(parse_rate("1E+2")) == "100"
    assert parse_rate("100000") == 100_000 and parse_rate("0E-30") == 0
    for bad in ("100000.000000001", "0.0000000001", "-0.1", "1e999999", 1e308, "inf"):
        with pytest.raises(MoneyError):
            parse_rate(bad)


@given(st.integers(min_value=-MAX_AMOUNT_NANO, max_value=MAX_AMOUNT_NANO))
def test_usd_round_trips(nano: int) -> None:
    assert parse_nano(usd(nano), signed=True) == nano
    assert Decimal(usd(nano)) == Decimal(nano).scaleb(-9)


def test_money_is_the_bottom_layer() -> None:
    tree = ast.parse(Path(money.__file__).read_text())
    imported = {
        n.module if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in (n.names if isinstance(n, ast.Import) else [n.names[0]])
    }
    assert not any(str(m).startswith("tokenrelay") for m in imported), imported
