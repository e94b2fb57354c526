"""Admin billing API input errors, on a real gateway over both storage set-ups: a bad amount is
a 400 naming the field, an unknown key a 404, a missing or wrong admin token a 401 — and none
of them moves money (the balance and `ledger verify` are unchanged afterwards)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from billing_support import ADMIN, create_key, http, key_summary, module_gateway

from gateway_support import RunningGateway

gw = module_gateway()


def _credits(gw: RunningGateway, key_id: str, body: Any, **kw: Any) -> httpx.Response:
    headers = kw.pop("headers", ADMIN)
    return http.post(f"{gw.url}/admin/v1/keys/{key_id}/credits", headers=headers, json=body)


def _assert_unchanged(gw: RunningGateway, key_id: str, balance: str) -> None:
    assert Decimal(key_summary(gw.url, key_id)["balance_usd"]) == Decimal(balance)
    verify = http.get(f"{gw.url}/admin/v1/ledger/verify", headers=ADMIN)
    assert verify.status_code == 200 and verify.json() == {"ok": True, "problems": []}


BAD_AMOUNTS: list[Any] = [
    "ten",
    "",
    0,
    "0.00",
    True,
    None,
    [],
    "1.0000000001",
    "NaN",
    "Infinity",
    "1e999",  # used to overflow the BIGINT balance: a 500 instead of a 400
    "-1e12",
]


def test_credits_with_a_bad_amount_is_400_naming_the_field(gw: RunningGateway) -> None:
    key_id, _ = create_key(gw.url, "1.00")
    for amount in BAD_AMOUNTS:
        r = _credits(gw, key_id, {"amount_usd": amount})
        assert r.status_code == 400, (amount, r.text)
        error = r.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["param"] == "amount_usd" and "amount_usd" in error["message"], amount
    r = _credits(gw, key_id, {"note": "no amount"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "amount_usd"
    _assert_unchanged(gw, key_id, "1.00")


def test_key_with_bad_credits_is_400_naming_the_field(gw: RunningGateway) -> None:
    for credits in ["-1", "lots", "1e999", "0.0000000001"]:
        r = http.post(
            f"{gw.url}/admin/v1/keys", headers=ADMIN, json={"name": "x", "credits_usd": credits}
        )
        assert r.status_code == 400, (credits, r.text)
        assert r.json()["error"]["param"] == "credits_usd"


def test_credits_with_a_misspelled_field_is_400_naming_it(gw: RunningGateway) -> None:
    key_id, _ = create_key(gw.url, "1.00")
    r = _credits(gw, key_id, {"amount": "5.00"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "amount"
    r = _credits(gw, key_id, ["amount_usd", "5.00"])
    assert r.status_code == 400 and "JSON object" in r.json()["error"]["message"]
    _assert_unchanged(gw, key_id, "1.00")
    # The well-formed request does what the bad ones did not.
    ok = _credits(gw, key_id, {"amount_usd": "2.50", "note": "top-up"})
    assert ok.status_code == 200, ok.text
    assert Decimal(ok.json()["balance_usd"]) == Decimal("3.50")
    _assert_unchanged(gw, key_id, "3.50")


def test_unknown_key_is_404(gw: RunningGateway) -> None:
    r = _credits(gw, "key_doesnotexist", {"amount_usd": "5.00"})
    assert r.status_code == 404, r.text
    assert r.json()["error"]["type"] == "not_found_error"
    assert "key_doesnotexist" in r.json()["error"]["message"]
    shown = http.get(f"{gw.url}/admin/v1/keys/key_doesnotexist", headers=ADMIN)
    assert shown.status_code == 404
    # Nothing was written for the unknown key.
    verify = http.get(f"{gw.url}/admin/v1/ledger/verify", headers=ADMIN)
    assert verify.json()["ok"] is True


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer wrong-token"}, {"authorization": "test-admin-token"}],
    ids=["missing", "wrong", "not-bearer"],
)
def test_no_admin_token_is_401_and_moves_no_money(
    gw: RunningGateway, headers: dict[str, str]
) -> None:
    key_id, _ = create_key(gw.url, "1.00")
    calls = [
        ("POST", f"/admin/v1/keys/{key_id}/credits", {"amount_usd": "100.00"}),
        ("GET", "/admin/v1/usage", None),
        ("GET", "/admin/v1/prices", None),
        ("POST", "/admin/v1/prices", {"model": "gpt-4o", "input": 0, "output": 0}),
        ("GET", "/admin/v1/ledger/verify", None),
        ("GET", f"/admin/v1/keys/{key_id}", None),
    ]
    for n, (method, path, body) in enumerate(calls):
        # Each from its own address: wrong tokens from one address are slowed to 429 after a
        # few (tests/portal/test_throttles.py), and this test is about the 401 itself.
        spoofed = {**headers, "x-forwarded-for": f"192.0.2.{len(headers) * 10 + n}"}
        r = http.request(method, gw.url + path, headers=spoofed, json=body)
        assert r.status_code == 401, (method, path, r.text)
        assert r.json()["error"]["type"] == "authentication_error"
    _assert_unchanged(gw, key_id, "1.00")
    prices = http.get(f"{gw.url}/admin/v1/prices", headers=ADMIN, params={"model": "gpt-4o"})
    assert [v["id"] for v in prices.json()["data"]] == ["catalog"]


BAD_PRICES: list[tuple[dict[str, Any], str]] = [
    ({"input": 1, "output": 1}, "model"),
    ({"model": "no-such-model", "input": 1, "output": 1}, "model"),
    ({"model": "gpt-4o", "input": "cheap", "output": 1}, "input"),
    ({"model": "gpt-4o", "input": 1}, "output"),
    ({"model": "gpt-4o", "input": 1, "output": -2}, "output"),
    ({"model": "gpt-4o", "input": 1, "output": 1, "effective_from": "soon"}, "effective_from"),
    ({"model": "gpt-4o", "input": 1, "output": 1, "price": 3}, "price"),
    ({"model": "gpt-4o", "input": 1, "output": 1, "tiers": [{"input": 2, "output": 2}]}, "tiers"),
]


def test_bad_price_is_400_naming_the_field(gw: RunningGateway) -> None:
    for body, field in BAD_PRICES:
        r = http.post(f"{gw.url}/admin/v1/prices", headers=ADMIN, json=body)
        assert r.status_code == 400, (body, r.text)
        assert field in r.json()["error"]["message"], (body, r.text)
    prices = http.get(f"{gw.url}/admin/v1/prices", headers=ADMIN, params={"model": "gpt-4o"})
    assert [v["id"] for v in prices.json()["data"]] == ["catalog"]


def test_bad_usage_query_is_400_naming_the_parameter(gw: RunningGateway) -> None:
    for param, value in [("limit", "0"), ("limit", "many"), ("since", "yesterday")]:
        r = http.get(f"{gw.url}/admin/v1/usage", headers=ADMIN, params={param: value})
        assert r.status_code == 400, (param, value, r.text)
        assert r.json()["error"]["param"] == param
