"""Money at the admin API's edges, on a real gateway over both storage set-ups: absurd prices
and amounts are a 400 that writes nothing, large credits stay exact in Redis, a credit retried
with the same Idempotency-Key is applied once, a balance cannot overflow, and malformed
parameters (non-ASCII digits, NUL, lone surrogates, out-of-range times) are a 400, never a 500.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
from billing_support import ADMIN, create_key, http, key_summary, module_gateway
from sqlalchemy import insert

from backends import BACKENDS, backend, redis_namespace
from gateway_support import RunningGateway
from tokenrelay.billing.holds import RedisHolds
from tokenrelay.billing.pricebook import RATE_FIELDS, PriceBook
from tokenrelay.catalog import Catalog
from tokenrelay.store.db import create_engine, migrate_async
from tokenrelay.store.tables import price_versions

MAX_BALANCE_NANO = 2**63 - 1  # BIGINT


gw = module_gateway()


def credit(gw: RunningGateway, key_id: str, body: Any, **headers: str) -> Any:
    return http.post(
        f"{gw.url}/admin/v1/keys/{key_id}/credits", headers={**ADMIN, **headers}, json=body
    )


def ask(gw: RunningGateway, key: str, model: str = "gpt-4o-mini") -> None:
    client = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
    client.chat.completions.create(
        model=model, max_tokens=5, messages=[{"role": "user", "content": "[[words:2]] hi"}]
    )


def assert_400(response: Any, param: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and param in error["message"], error


def ledger_ok(gw: RunningGateway) -> None:
    verify = http.get(f"{gw.url}/admin/v1/ledger/verify", headers=ADMIN)
    assert verify.status_code == 200 and verify.json() == {"ok": True, "problems": []}


# -------------------------------------------------------------------------- hole 1: prices

ABSURD_RATES: list[Any] = [
    "1e999999",
    "1e308",
    1e308,
    "100000.000000001",  # above $100,000 per 1M tokens
    "0.0000000001",  # below a femto-USD per token: the integer cost path cannot hold it
    "1e-999999",
]


def test_an_absurd_price_is_400_and_the_model_keeps_working(gw: RunningGateway) -> None:
    _, key = create_key(gw.url, "5.00")
    for rate in ABSURD_RATES:
        for body in (
            {"model": "gpt-4o-mini", "input": rate, "output": 1},
            {"model": "gpt-4o-mini", "input": 1, "output": 1, "cache_write_1h": rate},
            {
                "model": "gpt-4o-mini",
                "input": 1,
                "output": 1,
                "tiers": [{"above_prompt_tokens": 10, "input": 1, "output": rate}],
            },
        ):
            r = http.post(f"{gw.url}/admin/v1/prices", headers=ADMIN, json=body)
            assert r.status_code == 400, (body, r.text)
    # Nothing was stored: the book, its listing and the model are as before.
    prices = http.get(f"{gw.url}/admin/v1/prices", headers=ADMIN)
    assert prices.status_code == 200, prices.text
    assert {v["id"] for v in prices.json()["data"]} == {"catalog"}
    ask(gw, key)
    # The largest allowed price is stored, listed and billed.
    top = {"model": "gpt-4o-mini", "input": "100000", "output": "0.000000001"}
    r = http.post(f"{gw.url}/admin/v1/prices", headers=ADMIN, json=top)
    assert r.status_code == 201, r.text
    listed = http.get(f"{gw.url}/admin/v1/prices", headers=ADMIN, params={"model": "gpt-4o-mini"})
    assert listed.status_code == 200 and listed.json()["data"][-1]["input"] == "100000.00"


@pytest.fixture(params=BACKENDS)
async def book(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PriceBook]:
    with backend(request.param, tmp_path) as store:
        engine = create_engine(store.database_url)
        try:
            await migrate_async(engine)
            yield PriceBook(Catalog.load(), engine)
        finally:
            await engine.dispose()


async def test_a_bad_stored_price_row_is_skipped_not_fatal(book: PriceBook) -> None:
    """A row written before prices were bounded (or by hand) must not take the book down."""
    now = dt.datetime.now(dt.UTC)
    rates = {f: "1" for f in RATE_FIELDS}
    async with book.engine.begin() as conn:
        await conn.execute(
            insert(price_versions),
            [
                {"id": "pv_bad", "model_id": "gpt-4o", "effective_from": now, **rates}
                | {"input": "1E+999999", "tiers": [], "created_at": now, "note": None},
                {"id": "pv_badtier", "model_id": "gpt-4o", "effective_from": now, **rates}
                | {"tiers": [{"above_prompt_tokens": "x"}], "created_at": now, "note": None},
                {"id": "pv_good", "model_id": "gpt-4o", "effective_from": now, **rates}
                | {"tiers": [], "created_at": now, "note": None},
            ],
        )
    await book.load()
    assert [v.id for v in book.versions("gpt-4o")] == ["catalog", "pv_good"]
    assert book.price_for("gpt-4o")[1] == "pv_good"
    assert [v.public()["id"] for v in book.versions()]  # the whole listing renders


# ------------------------------------------------------------------------- hole 1: credits


@pytest.mark.parametrize("amount", ["1e999999", "1e308", 1e308, "-1e999999", "1000000000.5"])
def test_absurd_credit_amounts_are_400(gw: RunningGateway, amount: Any) -> None:
    key_id, _ = create_key(gw.url, "1.00")
    assert_400(credit(gw, key_id, {"amount_usd": amount}), "amount_usd")
    created = http.post(
        f"{gw.url}/admin/v1/keys", headers=ADMIN, json={"name": "x", "credits_usd": amount}
    )
    assert_400(created, "credits_usd")
    assert key_summary(gw.url, key_id)["balance_usd"] == "1.00"
    ledger_ok(gw)


# --------------------------------------------------------- hole 2: large credits, idempotency


def test_a_credit_of_100_million_reaches_a_live_balance_exactly(gw: RunningGateway) -> None:
    key_id, key = create_key(gw.url, "10.00")
    ask(gw, key)  # the balance is now live (in Redis, or in memory)
    for amount in ("100000000", "123456789.123456789"):
        r = credit(gw, key_id, {"amount_usd": amount})
        assert r.status_code == 200, r.text
    ask(gw, key)  # the live balance still admits requests
    summary = key_summary(gw.url, key_id)
    total = Decimal(summary["balance_usd"]) + Decimal(summary["spent_usd"])
    assert total == Decimal("223456799.123456789") and summary["requests"] == 2
    ledger_ok(gw)


async def test_redis_holds_keep_amounts_beyond_a_double_exact() -> None:
    """2^53 nano-USD is ~$9M: beyond it a Lua number drops digits, from $100M on it is
    formatted "1e+17", which HINCRBY refuses."""
    async with redis_namespace("bigholds") as (client, prefix):
        big = 9_000_000_000_000_000_123

        async def loader(_key_id: str) -> int:
            return big

        holds = RedisHolds(client, loader, prefix=prefix)
        assert await holds.available("k") == big
        assert await holds.reserve("k", "r1", 100_000_000_000_000_001)
        assert await holds.available("k") == big - 100_000_000_000_000_001
        assert not await holds.reserve("k", "r2", big)  # the rest does not cover it
        assert not await holds.reserve("k", "r3", 10**20)  # more than any balance
        await holds.credit("k", 123_456_789_012_345_678)
        assert await holds.settle("k", "r1", 99_999_999_999_999_999)
        assert await holds.available("k") == big + 123_456_789_012_345_678 - 99_999_999_999_999_999


def test_a_credit_retried_with_its_idempotency_key_is_applied_once(gw: RunningGateway) -> None:
    key_id, _ = create_key(gw.url, "1.00")
    body = {"amount_usd": "2.50", "note": "invoice 42"}
    first = credit(gw, key_id, body, **{"Idempotency-Key": f"inv-42-{key_id}"})
    again = credit(gw, key_id, body, **{"Idempotency-Key": f"inv-42-{key_id}"})
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert (
        first.json()
        == again.json()
        == {
            "id": key_id,
            "amount_usd": "2.50",
            "balance_usd": "3.50",
        }
    )
    assert key_summary(gw.url, key_id)["balance_usd"] == "3.50"
    # The same key for another credit is refused, and moves nothing.
    for other in ({"amount_usd": "2.51", "note": "invoice 42"}, {"amount_usd": "2.50"}):
        r = credit(gw, key_id, other, **{"Idempotency-Key": f"inv-42-{key_id}"})
        assert r.status_code == 409, r.text
        assert "Idempotency-Key" in r.json()["error"]["message"]
    other_key, _ = create_key(gw.url, "1.00")
    r = credit(gw, other_key, body, **{"Idempotency-Key": f"inv-42-{key_id}"})
    assert r.status_code == 409, r.text
    # Without a key, a repeat is a second credit, as before.
    assert credit(gw, key_id, body).json()["balance_usd"] == "6.00"
    bad = credit(gw, key_id, body, **{"Idempotency-Key": "x" * 201})
    assert_400(bad, "Idempotency-Key")
    assert key_summary(gw.url, key_id)["balance_usd"] == "6.00"
    ledger_ok(gw)


def test_concurrent_retries_with_one_idempotency_key_credit_once(gw: RunningGateway) -> None:
    key_id, _ = create_key(gw.url, "0.00")
    idem = {"Idempotency-Key": f"burst-{key_id}"}
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda _: credit(gw, key_id, {"amount_usd": "7.00"}, **idem), range(16))
        )
    assert {r.status_code for r in answers} == {200}, [r.text for r in answers]
    assert {r.json()["balance_usd"] for r in answers} == {"7.00"}
    assert key_summary(gw.url, key_id)["balance_usd"] == "7.00"
    ledger_ok(gw)


# ---------------------------------------------------------------------- hole 3: overflow


def test_credits_cannot_overflow_a_balance(gw: RunningGateway) -> None:
    key_id, key = create_key(gw.url, "1000000000")
    statuses = [credit(gw, key_id, {"amount_usd": "1000000000"}) for _ in range(9)]
    assert [r.status_code for r in statuses[:8]] == [200] * 8
    assert_400(statuses[8], "amount_usd")
    balance = key_summary(gw.url, key_id)["balance_usd"]
    assert balance == "9000000000.00"
    # The most that fits still does, to the nano.
    room = str(Decimal(MAX_BALANCE_NANO - 9 * 10**18).scaleb(-9))
    assert credit(gw, key_id, {"amount_usd": room}).status_code == 200
    assert_400(credit(gw, key_id, {"amount_usd": "0.000000001"}), "amount_usd")
    assert key_summary(gw.url, key_id)["balance_usd"] == "9223372036.854775807"
    ask(gw, key)  # a full balance still serves requests
    ledger_ok(gw)


# ----------------------------------------------------------- hole 4: malformed parameters


def test_malformed_query_and_path_parameters_are_client_errors(gw: RunningGateway) -> None:
    usage = f"{gw.url}/admin/v1/usage"
    for query, param in [
        ("limit=%C2%B2", "limit"),  # '²'.isdigit() is True, int('²') fails
        ("limit=%D9%A3", "limit"),  # Arabic-Indic 3
        ("limit=1001", "limit"),
        ("limit=99999999999999999999999", "limit"),
        ("key_id=%00", "key_id"),
        ("since=0001-01-01T00:00:00%2B14:00", "since"),  # no UTC datetime
        ("since=9999-12-31T23:00:00-12:00", "since"),
    ]:
        assert_400(http.get(f"{usage}?{query}", headers=ADMIN), param)
    assert_400(http.get(f"{gw.url}/admin/v1/prices?model=%00", headers=ADMIN), "model")
    for path in ("%00", "x" * 300, "key_%E2%82%AC"):
        for method in ("GET", "DELETE"):
            r = http.request(method, f"{gw.url}/admin/v1/keys/{path}", headers=ADMIN)
            assert r.status_code == 404, (method, path, r.text)
        r = http.post(
            f"{gw.url}/admin/v1/keys/{path}/credits", headers=ADMIN, json={"amount_usd": 1}
        )
        assert r.status_code == 404, (path, r.text)


def test_text_the_database_cannot_store_is_400(gw: RunningGateway) -> None:
    key_id, _ = create_key(gw.url, "1.00")
    raw = {**ADMIN, "content-type": "application/json"}
    for body in [
        b'{"name": "\\ud800"}',  # a lone surrogate: valid JSON, not UTF-8
        b'{"name": "a\\u0000b"}',  # PostgreSQL refuses NUL
        b"[" * 100_000,  # nesting deeper than the parser's recursion
    ]:
        r = http.post(f"{gw.url}/admin/v1/keys", headers=raw, content=body)
        assert r.status_code == 400, (body[:30], r.text)
    for note in ("a\u0000b", "x" * 501):
        assert_400(credit(gw, key_id, {"amount_usd": 1, "note": note}), "note")
    price = {"model": "gpt-4o", "input": 1, "output": 1, "note": "a\u0000b"}
    assert_400(http.post(f"{gw.url}/admin/v1/prices", headers=ADMIN, json=price), "note")
    far = {"model": "gpt-4o", "input": 1, "output": 1, "effective_from": "0001-01-01T00:00+01:00"}
    assert_400(http.post(f"{gw.url}/admin/v1/prices", headers=ADMIN, json=far), "effective_from")
    assert key_summary(gw.url, key_id)["balance_usd"] == "1.00"
    ledger_ok(gw)
