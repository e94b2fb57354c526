"""Reasoning state shared through Redis: a tool loop started on one gateway continues on another.

The emulator enforces the vendors' rules (Anthropic's signed thinking before the tool calls it
led to, Gemini 3's thoughtSignature, DeepSeek's reasoning_content on thinking tool turns): an
OpenAI-format client carries none of them, so turn 2 passes only if the gateway it reaches
restores what the gateway that answered turn 1 remembered. A third gateway without Redis is the
control: the same turn 2 is refused there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from backends import PrivateRedis, backend
from gateway_support import RunningGateway, start_gateway
from tokenrelay import ir
from tokenrelay.reasoning.cache import (
    MAX_SHARED_BYTES,
    ReasoningState,
    SharedReasoningCache,
    decode,
    encode,
    reasoning_cache_for,
)
from tokenrelay.settings import Settings

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
CASES = [
    ("claude-sonnet-4-6", {"reasoning_effort": "low"}),
    ("gemini-3-pro-preview", {"reasoning_effort": "low"}),
    ("deepseek-reasoner", {}),  # the fast path: DeepSeek's adapter reads the cache itself
]


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RunningGateway]]:
    """A and B on one PostgreSQL database and one Redis; C alone on SQLite, without Redis."""
    tmp = tmp_path_factory.mktemp("shared-reasoning")
    redis = PrivateRedis(tmp)
    redis.start()
    running: list[tuple[RunningGateway, Any]] = []
    try:
        with backend("postgres+redis", tmp) as store:
            for name in ("a", "b"):
                path = tmp / name
                path.mkdir()
                running.append(
                    start_gateway(path, database_url=store.database_url, redis_url=redis.url)
                )
            path = tmp / "c"
            path.mkdir()
            running.append(start_gateway(path))
            yield [gw for gw, _ in running]
            for gw, thread in running:
                gw.server.should_exit = True
                thread.join(timeout=10)
    finally:
        redis.kill()


def _client(gw: RunningGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)


def _turn(
    client: openai.OpenAI, model: str, messages: list[Any], extra: dict[str, Any], stream: bool
) -> tuple[str, list[dict[str, Any]], str]:
    if stream:
        with client.chat.completions.stream(
            model=model, messages=messages, tools=TOOLS, **extra
        ) as s:
            c = s.get_final_completion()
    else:
        c = client.chat.completions.create(model=model, messages=messages, tools=TOOLS, **extra)
    msg = c.choices[0].message
    calls = [
        {
            "id": t.id,
            "type": "function",
            "function": {"name": t.function.name, "arguments": t.function.arguments},
        }
        for t in msg.tool_calls or []
    ]
    return msg.content or "", calls, c.choices[0].finish_reason


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize(("model", "extra"), CASES, ids=[c[0] for c in CASES])
def test_tool_loop_continues_on_another_gateway(
    gateways: list[RunningGateway], model: str, extra: dict[str, Any], stream: bool
) -> None:
    a, b, c = gateways
    key = a.create_key("loop")  # A and B share the database: one key works on both
    messages: list[Any] = [{"role": "user", "content": "What's the weather in Paris?"}]
    text, calls, finish = _turn(_client(a, key), model, messages, extra, stream)
    assert finish == "tool_calls" and calls, (text, calls)
    # What most client code keeps: role, content, tool_calls; the reasoning is gone.
    messages.append({"role": "assistant", "content": text or None, "tool_calls": calls})
    messages += [
        {"role": "tool", "tool_call_id": t["id"], "content": '{"temp_c": 18}'} for t in calls
    ]

    text, calls2, finish = _turn(_client(b, key), model, messages, extra, stream)
    assert finish == "stop" and not calls2 and "18" in text

    # The control: a gateway that never saw turn 1 cannot restore it. DeepSeek (a Chat client
    # on its own wire: the fast path) refuses the turn; Anthropic and Gemini would too, but the
    # turn goes through converted, as one another vendor made would (reasoning/cache.py
    # convert_for: the tool use as text, the stand-in signature), without the reasoning.
    control = _client(c, c.create_key("control"))
    if model.startswith("deepseek"):
        with pytest.raises(openai.BadRequestError):
            _turn(control, model, messages, extra, stream)
    else:
        assert _turn(control, model, messages, extra, stream)[2] in ("stop", "tool_calls")


def test_state_encoding_round_trips_compactly() -> None:
    state = ReasoningState(
        "anthropic",
        "claude-sonnet-4-6",
        [ir.Thinking("step one", "sig=="), ir.RedactedThinking("opaque")],
        {"toolu_1": "ts1"},
    )
    blob = encode(state)
    assert decode(blob) == state
    assert len(blob) < 120, blob  # one short JSON object, no field names repeated per block


def test_redis_down_costs_a_warning_not_the_request(caplog: pytest.LogCaptureFixture) -> None:
    from gateway_support import free_port

    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    cache = reasoning_cache_for(settings)
    assert isinstance(cache, SharedReasoningCache)
    state = ReasoningState("anthropic", "m", [ir.Thinking("t", "s")], {})
    req = ir.Request(
        model="m",
        messages=[ir.Message("assistant", [ir.ToolCall("call_x", "f", "{}")])],
    )

    async def run() -> None:
        cache.put(["call_1"], state)
        await cache.flush()  # logs, does not raise
        await cache.prefetch(req)
        await cache.close()

    asyncio.run(run())
    assert cache.get("call_1") == state  # still remembered in this process
    assert not cache.pending
    assert any("not shared" in r.message for r in caplog.records)
    assert any("not read" in r.message for r in caplog.records)


def test_oversized_state_stays_in_process() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0")
    cache = reasoning_cache_for(settings)
    huge = ReasoningState("anthropic", "m", [ir.Thinking("x" * (MAX_SHARED_BYTES + 1), "s")], {})
    cache.put(["call_1"], huge)
    assert cache.get("call_1") is huge and not cache.pending
    asyncio.run(cache.close())


def test_without_redis_the_cache_is_in_process() -> None:
    cache = reasoning_cache_for(Settings())
    assert not cache.shared and not isinstance(cache, SharedReasoningCache)
    cache.put(["c"], ReasoningState("x", "m"))
    assert not cache.pending and cache.get("c") is not None
