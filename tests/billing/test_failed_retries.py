"""A vendor call that fails before the first byte is retried; the customer pays only for the
attempt that answered, and the usage record says how many attempts it took.

The emulator has no "fail the first N calls" trigger, so the gateway's emulator URL points at a
small wrapper around the real emulator app: `[[flaky:N:TOKEN]]` in a prompt turns into the
emulator's own `[[error:503]]` for the first N upstream calls carrying TOKEN, and is removed
from later ones. The error is the emulator's vendor-exact 503, before any stream starts.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import anthropic
import openai
import pytest
import uvicorn
from billing_support import (
    create_key,
    expected_cost,
    key_summary,
    record_of,
    running_gateway,
    wait_for_record,
)

from backends import BACKENDS
from gateway_support import RunningGateway, free_port
from tokenrelay.emulator import create_app as create_emulator

_FLAKY = re.compile(rb"\[\[flaky:(\d+):([a-z0-9]+)\]\]")


class FlakyEmulator:
    """ASGI wrapper: the real emulator, failing the first N calls of a `[[flaky:N:T]]` prompt."""

    def __init__(self) -> None:
        self.app = create_emulator()
        self.calls: Counter[str] = Counter()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False) and message["type"] == "http.request"
        match = _FLAKY.search(body)
        if match:
            failures, token = int(match.group(1)), match.group(2).decode()
            self.calls[token] += 1
            body = _FLAKY.sub(b"[[error:503]]" if self.calls[token] <= failures else b"", body)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
        scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return dict(await receive())  # then whatever comes next (a disconnect)

        await self.app(scope, replay, send)


@pytest.fixture(scope="module")
def flaky() -> Iterator[tuple[FlakyEmulator, str]]:
    app = FlakyEmulator()
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "flaky emulator did not start"
        time.sleep(0.02)
    yield app, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module", params=BACKENDS)
def gw(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    flaky: tuple[FlakyEmulator, str],
) -> Iterator[RunningGateway]:
    with running_gateway(request.param, tmp_path_factory, emulate="all", emulator_url=flaky[1]) as (
        gateway,
        _store,
    ):
        yield gateway


RATES = {  # catalog USD per 1M: input, output
    "gpt-4o": ("2.50", "10"),
    "claude-haiku-4-5": ("1", "5"),
    "gemini-2.5-flash": ("0.30", "2.50"),
}


def _request(gw: RunningGateway, key: str, api: str, model: str, prompt: str) -> tuple[str, str]:
    """Streams with the official SDK; returns (request id, the cost the client was shown)."""
    messages = [{"role": "user", "content": prompt}]
    if api == "openai":
        gpt = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
        with gpt.chat.completions.with_streaming_response.create(
            model=model, messages=messages, stream=True, stream_options={"include_usage": True}
        ) as resp:
            chunks = list(resp.parse())
            usage = chunks[-1].usage
            assert usage is not None
            return resp.headers["x-request-id"], str(usage.model_extra["cost_usd"])  # type: ignore[index]
    claude = anthropic.Anthropic(api_key=key, base_url=gw.proxy, max_retries=0)
    raw = claude.messages.with_raw_response.create(model=model, max_tokens=300, messages=messages)
    raw.parse()
    return raw.headers["x-request-id"], raw.headers["x-tokenrelay-cost-usd"]


@pytest.mark.parametrize(
    ("api", "model"),
    [("openai", "gpt-4o"), ("anthropic", "claude-haiku-4-5"), ("openai", "gemini-2.5-flash")],
)
def test_a_request_retried_after_a_503_bills_only_the_successful_attempt(
    gw: RunningGateway, flaky: tuple[FlakyEmulator, str], api: str, model: str
) -> None:
    key_id, key = create_key(gw.url, "10.00")
    token = uuid.uuid4().hex[:12]
    request_id, shown = _request(gw, key, api, model, f"[[flaky:1:{token}]] [[words:25]] hello")
    assert flaky[0].calls[token] == 2  # failed once, answered on the retry

    record = record_of(gw.url, key_id, request_id)
    assert record["attempts"] == 2
    assert record["status"] == "ok" and record["usage_source"] == "vendor"
    assert record["output_tokens"] - record["reasoning_tokens"] == 25  # Gemini also thinks
    # The cost is that one answer's usage at the catalog price: nothing for the failed try.
    assert Decimal(record["cost_usd"]) == expected_cost(record, *RATES[model])
    assert Decimal(shown) == Decimal(record["cost_usd"])
    summary = key_summary(gw.url, key_id)
    assert summary["requests"] == 1
    assert Decimal(summary["balance_usd"]) == Decimal("10.00") - Decimal(record["cost_usd"])


def test_a_request_that_fails_every_attempt_costs_nothing(
    gw: RunningGateway, flaky: tuple[FlakyEmulator, str]
) -> None:
    key_id, key = create_key(gw.url, "10.00")
    token = uuid.uuid4().hex[:12]
    gpt = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
    with pytest.raises(openai.APIStatusError) as failed:
        gpt.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": f"[[flaky:9:{token}]] hi"}]
        )
    assert failed.value.status_code >= 500
    assert flaky[0].calls[token] == 2  # one try and one retry (TOKENRELAY_UPSTREAM_RETRIES=1)
    record = wait_for_record(gw.url, key_id, failed.value.response.headers["x-request-id"])
    assert record["attempts"] == 2 and record["status"] == "error"
    assert Decimal(record["cost_usd"]) == 0
    assert record["input_tokens"] == record["output_tokens"] == 0
    summary = key_summary(gw.url, key_id)
    assert Decimal(summary["balance_usd"]) == Decimal("10.00")
