"""Issue 25, item 4: `POST /api/proxy/v1/quote/...` answers what a request would hold and cost,
without calling a vendor or moving money; its worst case is exactly the hold the same request
takes (a balance of one nano-USD less is refused with 402, the quoted amount is admitted)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway_support import ADMIN_TOKEN

MODELS = ["claude-sonnet-4-6", "gpt-4o", "gemini-2.5-flash", "grok-4.3", "deepseek-chat"]
NANO = Decimal("0.000000001")

text = st.text(min_size=1, max_size=300)
model = st.sampled_from(MODELS)
max_out = st.integers(min_value=1, max_value=70_000)


def _maybe(key: str, value: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(st.just({}), value.map(lambda v: {key: v}))


TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}

messages_body = st.builds(
    lambda m, mt, u, extra, tools: {
        "model": m,
        "max_tokens": mt,
        "messages": [{"role": "user", "content": u}],
        **extra,
        **tools,
    },
    model,
    max_out,
    text,
    _maybe("system", text),
    _maybe("tools", st.just([TOOL])),
)
chat_body = st.builds(
    lambda m, u, cap, sys: {
        "model": m,
        "messages": [*sys, {"role": "user", "content": u}],
        **cap,
    },
    model,
    text,
    st.one_of(
        st.just({}),
        max_out.map(lambda n: {"max_tokens": n}),
        max_out.map(lambda n: {"max_completion_tokens": n}),
    ),
    st.one_of(st.just([]), text.map(lambda s: [{"role": "system", "content": s}])),
)
responses_body = st.builds(
    lambda m, u, cap, ins: {"model": m, "input": u, **cap, **ins},
    model,
    text,
    _maybe("max_output_tokens", st.integers(min_value=16, max_value=70_000)),
    _maybe("instructions", text),
)
gemini_body = st.builds(
    lambda m, u, cap: (
        m,
        {"contents": [{"role": "user", "parts": [{"text": u}]}], **cap},
    ),
    model,
    text,
    _maybe("generationConfig", max_out.map(lambda n: {"maxOutputTokens": n})),
)


def _paths(fmt: str, body: Any) -> tuple[str, str, dict[str, Any]]:
    """(quote path, request path, body) under /api/proxy."""
    if fmt == "gemini":
        m, payload = body
        return f"/v1/quote/gemini/{m}", f"/v1beta/models/{m}:generateContent", payload
    return f"/v1/quote/{fmt}", f"/v1/{fmt}", body


def _key(gateway, credits: Decimal) -> str:
    r = httpx.post(
        gateway.url + "/admin/v1/keys",
        json={"name": "quote", "credits_usd": str(credits)},
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def _post(gateway, path: str, key: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}", "x-api-key": key, "x-goog-api-key": key}
    return httpx.post(gateway.proxy + path, json=body, headers=headers, timeout=30)


def _check(gateway, api_key: str, fmt: str, body: Any) -> None:
    quote_path, request_path, payload = _paths(fmt, body)
    q = _post(gateway, quote_path + "?output_tokens=200", api_key, payload)
    if q.status_code != 200:  # refused: the request itself is refused the same way
        r = _post(gateway, request_path, api_key, payload)
        assert r.status_code == q.status_code, (q.text, r.text)
        return
    quote = q.json()
    worst = Decimal(quote["max_cost_usd"])
    assert Decimal(quote["hold_usd"]) == worst
    assert Decimal(quote["expected_cost_usd"]) <= worst
    short = _post(gateway, request_path, _key(gateway, worst - NANO), payload)
    assert short.status_code == 402, short.text  # the hold is the quoted worst case, not less
    enough = _post(gateway, request_path, _key(gateway, worst), payload)
    # ...and not more: admitted (the vendor may still refuse what the client asked, e.g. a
    # max_tokens over the model's limit on the pass-through path: its own 400, never a 402).
    assert enough.status_code != 402, (quote, enough.text)


PROPERTY = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


BODIES = {
    "messages": messages_body,
    "chat/completions": chat_body,
    "responses": responses_body,
    "gemini": gemini_body,
}


@pytest.mark.parametrize("fmt", BODIES)
@PROPERTY
@given(data=st.data())
def test_the_quoted_worst_case_is_the_hold(gateway, api_key, fmt: str, data: st.DataObject) -> None:
    _check(gateway, api_key, fmt, data.draw(BODIES[fmt]))


def test_a_quote_calls_no_vendor_and_moves_no_money(gateway) -> None:
    key = _key(gateway, Decimal("1.00"))
    body = {"model": "gpt-4o", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    q = _post(gateway, "/v1/quote/messages?output_tokens=10", key, body)
    assert q.status_code == 200, q.text
    account = httpx.get(gateway.proxy + "/v1/account", headers={"authorization": f"Bearer {key}"})
    assert Decimal(account.json()["balance_usd"]) == Decimal("1.00"), account.text


@pytest.mark.parametrize(
    ("path", "status"),
    [("/v1/quote/messages?output_tokens=-1", 400), ("/v1/quote/messages", 401)],
)
def test_bad_quotes_are_4xx_in_the_format(gateway, api_key, path: str, status: int) -> None:
    key = api_key if status != 401 else "sk-aic-wrong"
    r = _post(gateway, path, key, {"model": "gpt-4o", "max_tokens": 5, "messages": []})
    assert r.status_code == status and r.json()["type"] == "error", r.text
