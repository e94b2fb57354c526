"""Accounts: one prepaid balance, several keys drawing on it. Holds and debits are per account,
so two keys of one account racing for the last of its balance never overspend it — on SQLite
with in-process holds and on PostgreSQL with Redis holds, through a real gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import openai
import pytest

from backends import BACKENDS, Backend, backend
from gateway_support import ADMIN_TOKEN, RunningGateway, served

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
BODY = {
    "model": "claude-haiku-4-5",
    "max_tokens": 20,
    "messages": [{"role": "user", "content": "[[words:10]] count"}],
}


@pytest.fixture(scope="module", params=BACKENDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    with backend(request.param, str(tmp_path_factory.mktemp("accounts"))) as b:
        yield b


@pytest.fixture(scope="module")
def gw(store: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    yield from served(
        tmp_path_factory.mktemp("gw"), database_url=store.database_url, redis_url=store.redis_url
    )


def create_key(url: str, **body: Any) -> dict[str, Any]:
    r = httpx.post(f"{url}/admin/v1/keys", headers=ADMIN, json={"name": "acct", **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


def show(url: str, key_id: str) -> dict[str, Any]:
    r = httpx.get(f"{url}/admin/v1/keys/{key_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return dict(r.json())


def usage(url: str, key_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/admin/v1/usage", headers=ADMIN, params={"key_id": key_id, "limit": 1000})
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def one_request_cost(gw: RunningGateway) -> Decimal:
    probe = create_key(gw.url, credits_usd="1.00")["key"]
    r = httpx.post(
        f"{gw.proxy}/v1/messages",
        json=BODY,
        headers={"x-api-key": probe, "anthropic-version": "2023-06-01"},
    )
    assert r.status_code == 200, r.text
    return Decimal(r.headers["x-tokenrelay-cost-usd"])


def test_two_keys_of_one_account_race_for_its_last_cent(gw: RunningGateway) -> None:
    one = one_request_cost(gw)
    credits = one * 20 + Decimal("0.000000001")  # 20 requests and one nano-USD
    first = create_key(gw.url, credits_usd=str(credits))
    second = create_key(gw.url, account_id=first["account_id"])
    assert second["account_id"] == first["account_id"]
    assert Decimal(second["balance_usd"]) == credits  # the account's balance, not the key's
    keys = [first["key"], second["key"]]

    async def burst() -> list[tuple[int, int]]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=200), timeout=60) as c:

            async def call(i: int) -> tuple[int, int]:
                resp = await c.post(
                    f"{gw.proxy}/v1/messages",
                    json={**BODY, "stream": i % 3 == 0},
                    headers={"x-api-key": keys[i % 2], "anthropic-version": "2023-06-01"},
                )
                if resp.status_code == 402:
                    assert resp.json()["error"]["type"] == "billing_error"
                return i % 2, resp.status_code

            # Waves of 40 until one gets nothing through: holds are the worst case (20 output
            # tokens), so a wave admits a few, and the balance runs down wave by wave.
            # A wave can also be refused by the holds of the last one's streams, which settle
            # just after their last byte: the end is two refused waves, a pause apart.
            done: list[tuple[int, int]] = []
            refused = 0
            for _ in range(60):
                wave = await asyncio.gather(*(call(i) for i in range(40)))
                done += wave
                refused = refused + 1 if all(s == 402 for _, s in wave) else 0
                if refused == 2:
                    break
                await asyncio.sleep(0.3 * refused)
            return done

    results = asyncio.run(burst())
    statuses = [s for _, s in results]
    assert set(statuses) <= {200, 402}, statuses
    ok = statuses.count(200)
    assert 0 < ok <= 20, ok
    by_key = {k: sum(1 for kk, s in results if kk == k and s == 200) for k in (0, 1)}
    assert by_key[0] > 0 and by_key[1] > 0, by_key  # both keys spent from the one balance

    records = [
        r for key in (first, second) for r in usage(gw.url, key["id"]) if r["status"] == "ok"
    ]
    assert len(records) == ok
    assert {r["account_id"] for r in records} == {first["account_id"]}
    spent = sum(Decimal(r["cost_usd"]) for r in records)
    balance = Decimal(show(gw.url, first["id"])["balance_usd"])
    assert balance == Decimal(show(gw.url, second["id"])["balance_usd"])
    assert balance == credits - spent >= 0
    # Default price group: the customer pays the catalog's list price, the upstream cost.
    assert all(r["upstream_cost_usd"] == r["cost_usd"] for r in records)

    # The last wave was refused whole: what is left cannot cover one more request's worst
    # case, from either key, and the refusals moved nothing.
    for key in keys:
        r = httpx.post(
            f"{gw.proxy}/v1/messages",
            json={**BODY, "stream": False},  # the same bytes, so the same worst case
            headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        )
        assert r.status_code == 402, r.text
    assert Decimal(show(gw.url, first["id"])["balance_usd"]) == balance
    verify = httpx.get(f"{gw.url}/admin/v1/ledger/verify", headers=ADMIN)
    assert verify.status_code == 200 and verify.json()["ok"] is True, verify.text


def test_a_credit_to_one_key_funds_every_key_of_the_account(gw: RunningGateway) -> None:
    first = create_key(gw.url)
    second = create_key(gw.url, account_id=first["account_id"])
    client = anthropic.Anthropic(api_key=second["key"], base_url=gw.proxy, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as broke:
        client.messages.create(**BODY)  # type: ignore[call-overload]
    assert broke.value.status_code == 402
    r = httpx.post(
        f"{gw.url}/admin/v1/keys/{first['id']}/credits",
        headers=ADMIN,
        json={"amount_usd": "1.00", "note": "top-up"},
    )
    assert r.status_code == 200, r.text
    reply = client.messages.create(**BODY)  # type: ignore[call-overload]
    assert reply.usage.output_tokens > 0


def test_allowed_models_and_expiry_are_enforced(gw: RunningGateway) -> None:
    only = create_key(gw.url, credits_usd="1.00", allowed_models=["gpt-4o-mini"])
    client = openai.OpenAI(api_key=only["key"], base_url=gw.proxy + "/v1", max_retries=0)
    ok = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    assert ok.choices
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
    assert "gpt-4o" in str(refused.value)
    assert usage(gw.url, only["id"])[0]["model"] == "gpt-4o-mini"  # the refusal billed nothing

    expired = create_key(gw.url, credits_usd="1.00", expires_at="2020-01-01T00:00:00Z")
    client = openai.OpenAI(api_key=expired["key"], base_url=gw.proxy + "/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )


@pytest.mark.parametrize(
    "body, param",
    [
        ({"account_id": "acct_nope"}, "account_id"),
        ({"allowed_models": "gpt-4o"}, "allowed_models"),
        ({"expires_at": "tomorrow"}, "expires_at"),
    ],
)
def test_bad_key_fields_are_refused(gw: RunningGateway, body: dict[str, Any], param: str) -> None:
    r = httpx.post(f"{gw.url}/admin/v1/keys", headers=ADMIN, json={"name": "x", **body})
    assert r.status_code in (400, 404), r.text
    assert r.json()["error"]["param"] == param


def test_a_daily_spend_cap_refuses_before_the_balance_runs_out(gw: RunningGateway) -> None:
    cap = Decimal("0.0006")
    key = create_key(gw.url, credits_usd="1.00", daily_cap_usd=str(cap))
    assert key["daily_cap_usd"] == "0.0006"
    client = anthropic.Anthropic(api_key=key["key"], base_url=gw.proxy, max_retries=0)
    refused = None
    for _ in range(40):
        try:
            client.messages.create(**BODY)  # type: ignore[call-overload]
        except anthropic.APIStatusError as exc:
            refused = exc
            break
    assert refused is not None and refused.status_code == 402
    assert "daily spend cap" in str(refused)
    spent = sum(Decimal(r["cost_usd"]) for r in usage(gw.url, key["id"]))
    assert 0 < spent <= cap
    assert Decimal(show(gw.url, key["id"])["balance_usd"]) == Decimal("1.00") - spent
    # Another key of the same account has no cap: the account's balance still serves it.
    other = create_key(gw.url, account_id=key["account_id"])
    ok = anthropic.Anthropic(api_key=other["key"], base_url=gw.proxy, max_retries=0)
    assert ok.messages.create(**BODY).usage.output_tokens > 0  # type: ignore[call-overload]
