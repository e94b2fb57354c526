"""Token counting is admitted like a request (issue 20, hole 4): authenticated, allow-listed
and throttled; a key whose account cannot pay never makes the operator's vendor account count
for it (it gets the local estimate). Before: a key with $0, rpm 1 and one allowed model made 40
vendor count calls for other models."""

from __future__ import annotations

import anthropic
import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from gateway_support import ADMIN_TOKEN, RunningGateway

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
MESSAGES = [{"role": "user", "content": "How many tokens is this?"}]


def _key(gw: RunningGateway, **fields: object) -> str:
    r = httpx.post(gw.url + "/admin/v1/keys", json={"name": "count", **fields}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def _count_calls(gw: RunningGateway) -> int:
    data = httpx.get(gw.emulator_url + "/_requests").json()["data"]
    return sum("count" in q["path"].lower() for q in data if q["method"] == "POST")


def test_a_key_that_cannot_pay_gets_the_estimate_and_never_a_vendor_count(
    gateway: RunningGateway,
) -> None:
    broke = anthropic.Anthropic(
        api_key=_key(gateway, allowed_models=["claude-sonnet-4-6"]),
        base_url=gateway.proxy,
        max_retries=0,
    )
    before = _count_calls(gateway)
    raw = broke.messages.with_raw_response.count_tokens(
        model="claude-sonnet-4-6", messages=MESSAGES
    )
    assert raw.headers["x-tokenrelay-count"] == "estimated" and raw.parse().input_tokens > 0
    assert _count_calls(gateway) == before
    # Other models than its allow-list: refused, like a request.
    with pytest.raises(anthropic.PermissionDeniedError):
        broke.messages.count_tokens(model="claude-opus-4-1", messages=MESSAGES)
    assert _count_calls(gateway) == before

    # A funded key gets the vendor's exact count (the same request).
    paying = anthropic.Anthropic(
        api_key=_key(gateway, credits_usd="1.00"), base_url=gateway.proxy, max_retries=0
    )
    raw = paying.messages.with_raw_response.count_tokens(
        model="claude-sonnet-4-6", messages=MESSAGES
    )
    assert raw.headers["x-tokenrelay-count"] == "exact"
    assert _count_calls(gateway) == before + 1


def test_counts_are_throttled_at_the_keys_rate(gateway: RunningGateway) -> None:
    key = _key(gateway, rpm=1, allowed_models=["gemini-2.5-flash"])
    claude = anthropic.Anthropic(api_key=key, base_url=gateway.proxy, max_retries=0)
    claude.messages.count_tokens(model="gemini-2.5-flash", messages=MESSAGES)
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.count_tokens(model="gemini-2.5-flash", messages=MESSAGES)
    # Gemini's own :countTokens shares the bucket; the refusal is Gemini-shaped.
    g = genai.Client(
        api_key=key,
        http_options=genai_types.HttpOptions(
            base_url=gateway.proxy, retry_options=genai_types.HttpRetryOptions(attempts=1)
        ),
    )
    with pytest.raises(genai_errors.ClientError) as refused:
        g.models.count_tokens(model="gemini-2.5-flash", contents="hi")
    assert refused.value.code == 429
