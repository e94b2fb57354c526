"""Prompts past what the local tokenizer takes in one piece (~1M characters) are still counted
and billed: the estimate degrades to a safe bound, never to zero or an exception."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from gateway_support import ADMIN_TOKEN, RunningGateway

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
MODEL = "gpt-4.1-mini"  # a 1M-token context: the vendor takes such a prompt
HUGE = "lorem ipsum dolor " * 70_000  # 1.26M characters, ~210k tokens


def _key(gateway: RunningGateway) -> tuple[str, str]:
    r = httpx.post(
        gateway.url + "/admin/v1/keys", headers=ADMIN, json={"name": "huge", "credits_usd": "50"}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"]), str(r.json()["key"])


def _record(gateway: RunningGateway, key_id: str, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = httpx.get(gateway.url + "/admin/v1/usage", params={"key_id": key_id}, headers=ADMIN)
        for row in r.json()["data"]:
            if row["request_id"] == request_id:
                return dict(row)
        time.sleep(0.1)
    raise AssertionError(f"no usage record for {request_id}")


def test_count_tokens_of_a_huge_prompt(gateway: RunningGateway) -> None:
    _, key = _key(gateway)
    r = httpx.post(
        gateway.proxy + "/v1/messages/count_tokens",
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        json={"model": MODEL, "messages": [{"role": "user", "content": HUGE}]},
        timeout=60,
    )
    assert r.status_code == 200, r.text[:300]
    assert r.json()["input_tokens"] >= 200_000


def test_disconnected_stream_with_a_huge_prompt_bills_the_prompt(
    gateway: RunningGateway,
) -> None:
    key_id, key = _key(gateway)
    body = {
        "model": MODEL,
        "stream": True,
        "messages": [{"role": "user", "content": HUGE + " [[words:200]] [[delay:30]]"}],
    }
    with (
        httpx.Client(timeout=60) as client,
        client.stream(
            "POST",
            gateway.proxy + "/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json=body,
        ) as resp,
    ):
        request_id = resp.headers["x-request-id"]
        for n, _ in enumerate(resp.iter_lines()):
            if n >= 8:
                break  # hang up mid-stream: the vendor's final usage never comes
    record = _record(gateway, key_id, request_id)
    assert record["status"] == "cancelled"
    assert record["usage_source"] == "estimated"
    assert record["input_tokens"] >= 200_000
    assert Decimal(record["cost_usd"]) >= Decimal("0.08")  # 210k tokens at $0.40 per 1M


def test_vendor_refusing_a_huge_prompt_is_its_400_not_a_500(gateway: RunningGateway) -> None:
    key_id, key = _key(gateway)
    client = openai.OpenAI(api_key=key, base_url=gateway.proxy + "/v1", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": HUGE + " [[error:400]]"}]
        )
    request_id = caught.value.response.headers["x-request-id"]
    assert Decimal(_record(gateway, key_id, request_id)["cost_usd"]) == 0
