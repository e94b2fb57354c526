"""What a stream that ends without the vendor's usage is billed: the delivered text's tokens
and, when the vendor never said it, the prompt's estimate — counted in a worker thread when
long, so a client that sends a huge prompt and hangs up does not hold the event loop, and the
same figures whether the stream kept its request or only the client's bytes."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from billing_support import create_key, wait_for_record

from gateway_support import RunningGateway
from tokenrelay import ir
from tokenrelay.billing.metering import (
    OFF_LOOP_CHARS,
    RequestContext,
    count_tokens,
    estimate_request_tokens,
)
from tokenrelay.billing.pricing import cost_nano, usd
from tokenrelay.catalog import Catalog
from tokenrelay.frontends.anthropic.parse import parse_messages_request
from tokenrelay.frontends.chat.parse import parse_chat_request
from tokenrelay.gateway.intake import Intake

LONG = "x" * 1_000_000 + "y"  # over OFF_LOOP_CHARS; unremembered anywhere


def cut_stream(request: ir.Request | None = None) -> RequestContext:
    """A stream the vendor answered and the client left: no usage from the vendor."""
    ctx = RequestContext("req_test", "openai", stream=True, request=request)
    ctx.upstream_answered = True
    return ctx


async def ran_others_while(estimating: RequestContext) -> bool:
    """Whether another task had a turn before `estimate` was done (inline, the count would
    finish in the estimate's first step, before any other task ran)."""
    seen: list[bool] = []

    async def another_request() -> None:
        seen.append(counting.done())

    counting = asyncio.ensure_future(estimating.estimate())
    other = asyncio.ensure_future(another_request())
    await counting
    await other
    return seen == [False]


async def test_a_cut_streams_long_output_is_counted_while_the_loop_serves_others() -> None:
    ctx = cut_stream(ir.Request(model="m", messages=[ir.Message("user", [ir.Text("hi")])]))
    ctx.note_output(LONG)
    ctx.finish("cancelled", "client disconnected", complete=False)
    assert ctx.usage.output == 0  # not counted on the way out: settlement awaits the count
    assert await ran_others_while(ctx)
    assert ctx.usage.output == count_tokens(LONG)
    assert ctx.usage.input == estimate_request_tokens(ctx.request)  # type: ignore[arg-type]
    assert ctx.usage_source == "estimated"


@pytest.mark.parametrize("kept", ["request", "client bytes"])
async def test_a_cut_streams_long_prompt_is_counted_while_the_loop_serves_others(
    kept: str,
) -> None:
    raw = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": LONG}]})
    request = parse_chat_request(orjson.loads(raw), {})
    ctx = cut_stream(request)
    if kept == "client bytes":  # what a stream under way keeps (Prepared.under_way)
        ctx.let_go(lambda: parse_chat_request(orjson.loads(raw), {}), len(raw))
    ctx.note_output("Hello")
    ctx.finish("cancelled", "client disconnected", complete=False)
    assert await ran_others_while(ctx)
    assert ctx.usage.input == estimate_request_tokens(request)
    assert ctx.usage.output == count_tokens("Hello")


async def test_the_estimate_is_made_once() -> None:
    ctx = cut_stream()
    ctx.note_output("Hello there")
    ctx.finish("error", "upstream cut", complete=False)
    await ctx.estimate()
    ctx.usage.output += 5  # anything after the estimate is not overwritten by another
    await ctx.estimate()
    assert ctx.usage.output == count_tokens("Hello there") + 5


# --------------------------------------------------------------------------------------------
# end to end: a stream the vendor cut before its usage, on both paths


def _openai_text(lines: list[str]) -> str:
    out = []
    for line in lines:
        if line.startswith("data: {"):
            for choice in orjson.loads(line[6:]).get("choices") or ():
                out.append((choice.get("delta") or {}).get("content") or "")
    return "".join(out)


def _anthropic_text(lines: list[str]) -> str:
    out = []
    for line in lines:
        if line.startswith("data: {"):
            event = orjson.loads(line[6:])
            if event.get("type") == "content_block_delta":
                out.append(event["delta"].get("text", ""))
    return "".join(out)


Client = tuple[str, dict[str, str], Callable[[Any, Any], ir.Request], Callable[[list[str]], str]]
CLIENTS: dict[str, Client] = {
    # OpenAI client, OpenAI vendor: the fast path.
    "fast path": ("/v1/chat/completions", {}, parse_chat_request, _openai_text),
    # Anthropic client, OpenAI vendor (whose stream says its usage only at the end): translated.
    "translated": (
        "/v1/messages",
        {"anthropic-version": "2023-06-01"},
        parse_messages_request,
        _anthropic_text,
    ),
}


@pytest.mark.parametrize("path", list(CLIENTS))
@pytest.mark.parametrize("prompt_chars", [40, OFF_LOOP_CHARS + 10_000])
def test_a_stream_cut_before_the_vendors_usage_bills_the_estimates(
    gateway: RunningGateway, path: str, prompt_chars: int
) -> None:
    """Billed: the delivered text's o200k_base count and the prompt's estimate from the request
    the client sent, priced once at the model's list price."""
    route, headers, parse, delivered_text = CLIENTS[path]
    key_id, key = create_key(gateway.url)
    filler = ("lorem ipsum dolor " * (prompt_chars // 18 + 1))[:prompt_chars]
    body = {
        "model": "gpt-4o",
        "stream": True,
        "max_tokens": 300,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": f"[[words:40]] [[cut]] {filler}"}],
    }
    if path == "fast path":  # Chat Completions has no top-level system
        body["messages"].insert(0, {"role": "system", "content": body.pop("system")})
    headers = {**headers, "authorization": f"Bearer {key}", "x-api-key": key}
    r = httpx.post(gateway.proxy + route, json=body, headers=headers, timeout=30)
    assert r.status_code == 200
    text = delivered_text(r.text.splitlines())
    assert text  # some words went out before the cut
    record = wait_for_record(gateway.url, key_id, r.headers["x-request-id"])
    assert record["status"] == "error"
    assert record["usage_source"] == "estimated"
    assert record["output_tokens"] == count_tokens(text)
    assert record["input_tokens"] == estimate_request_tokens(parse(body, headers))
    price = Catalog.load().get("gpt-4o").price  # type: ignore[union-attr]
    usage = ir.UsageTotals(input=record["input_tokens"], output=record["output_tokens"])
    assert Decimal(record["cost_usd"]) == Decimal(usd(cost_nano(usage, price)))


def parsed_requests(mark: bytes) -> list[ir.Request | Intake]:
    """The parsed requests (IR or intake) alive in this process that say `mark`."""
    gc.collect()
    return [
        o
        for o in gc.get_objects()
        if isinstance(o, ir.Request | Intake) and mark in repr(o).encode()
    ]


@pytest.mark.parametrize("path", list(CLIENTS))
def test_a_live_stream_keeps_no_parsed_copy_of_its_request(
    gateway: RunningGateway, path: str
) -> None:
    """Once the answer streams, nothing can resend or re-decide the call: the gateway keeps
    only the client's bytes (for a cut stream's estimate), not the request parsed (a coding
    agent's 40 KB prompt parsed is ~70 KB of objects, for each stream's whole life)."""
    route, headers, _, _ = CLIENTS[path]
    mark = f"unrepeated-{path.replace(' ', '-')}"
    raw = orjson.dumps(
        {
            "model": "gpt-4o",
            "stream": True,
            "max_tokens": 300,
            "messages": [{"role": "user", "content": f"[[words:30]] [[delay:100]] {mark}"}],
        }
    )
    del mark  # from here only the bytes the client sends say it

    key = create_key(gateway.url)[1]
    headers = {**headers, "authorization": f"Bearer {key}", "x-api-key": key}
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", gateway.proxy + route, content=raw, headers=headers) as resp,
    ):
        lines = resp.iter_lines()
        while "data:" not in next(lines):  # the answer streams
            pass
        assert parsed_requests(b"unrepeated-") == []
        assert "".join(lines)  # and goes on to its end


@pytest.mark.parametrize("path", list(CLIENTS))
def test_a_request_waiting_on_its_vendor_keeps_no_parsed_copy_of_it(
    gateway: RunningGateway, path: str
) -> None:
    """While the vendor thinks (seconds for a reasoning model, with thousands of requests
    waiting at once), a retry needs only the call and a fallback the client's bytes: the
    request parsed is let go before the call goes (a 40 KB prompt: ~227 → ~132 KB a waiting
    request, bench.tails --wait-ms). Here a whole answer whose body the vendor holds back."""
    route, headers, _, _ = CLIENTS[path]
    mark = f"unrepeated-wait-{path.replace(' ', '-')}"
    raw = orjson.dumps(
        {
            "model": "gpt-4o",
            "max_tokens": 300,
            "messages": [{"role": "user", "content": f"[[words:5]] [[first-delay:3000]] {mark}"}],
        }
    )
    del mark
    # This request's own context, told apart by its session header: another test's request
    # left without a duration must not pass for this one's call having gone.
    session = f"wait-{uuid.uuid4().hex}"

    def waiting() -> bool:  # the call went, its answer has not come
        return any(
            isinstance(o, RequestContext)
            and o.session_id == session
            and o.attempts
            and o.duration_ms is None
            for o in gc.get_objects()
        )

    key = create_key(gateway.url)[1]
    headers = {**headers, "authorization": f"Bearer {key}", "x-api-key": key}
    headers["x-claude-code-session-id"] = session
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(
            httpx.post, gateway.proxy + route, content=raw, headers=headers, timeout=30
        )
        deadline = time.monotonic() + 10
        while not waiting():
            assert time.monotonic() < deadline and not answer.done(), "never waited"
            time.sleep(0.05)
        assert parsed_requests(b"unrepeated-wait-") == []
        r = answer.result()
    assert r.status_code == 200, r.text
    assert r.json()["usage"]
