"""The emulated OpenAI Responses API, driven by the openai SDK straight into the emulator's ASGI
app: every event must parse as the SDK's typed model for its type, numbered from 0 without a
gap, and the stream must fold into the same response the non-streaming call returns."""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from tokenrelay.emulator import create_app

_MEMBERS = typing.get_args(typing.get_args(ResponseStreamEvent)[0])
EVENT_TYPES = {typing.get_args(m.model_fields["type"].annotation)[0]: m for m in _MEMBERS}
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
PATH = "/openai/v1/responses"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(
        transport=transport, base_url="http://emu", headers={"authorization": "Bearer sk-test"}
    ) as client:
        yield client


@pytest.fixture
def sdk(http: httpx.AsyncClient) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="sk-test", base_url="http://emu/openai/v1", http_client=http, max_retries=0
    )


async def events(http: httpx.AsyncClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    r = await http.post(PATH, json={**body, "stream": True})
    assert r.status_code == 200, r.text
    out = []
    for block in r.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" not in lines:
            continue
        data = orjson.loads(lines["data"])
        assert lines["event"] == data["type"]
        EVENT_TYPES[data["type"]].model_validate(data)
        out.append(data)
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    return out


async def test_text_stream_folds_into_the_non_stream_response(
    http: httpx.AsyncClient, sdk: openai.AsyncOpenAI
) -> None:
    body = {"model": "gpt-4o", "input": "Explain recursion", "instructions": "Be brief."}
    whole = await sdk.responses.create(**body)
    Response.model_validate(whole.model_dump())
    assert whole.status == "completed" and whole.output_text.startswith("Emulated gpt-4o")
    assert whole.instructions == "Be brief." and whole.usage is not None
    async with sdk.responses.stream(**body) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_response()
    assert final.output_text == whole.output_text and final.usage == whole.usage
    assert [o.id for o in final.output] == [o.id for o in whole.output]
    kinds = [e["type"] for e in await events(http, body)]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * (len(kinds) - 8),
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]


async def test_reasoning_summary_and_encrypted_content_only_when_asked(
    http: httpx.AsyncClient, sdk: openai.AsyncOpenAI
) -> None:
    plain = await sdk.responses.create(model="o4-mini", input="hi")
    reasoning = plain.output[0]
    assert reasoning.type == "reasoning" and reasoning.summary == []
    assert reasoning.encrypted_content is None
    assert plain.usage is not None and plain.usage.output_tokens_details.reasoning_tokens > 0

    body = {
        "model": "o4-mini",
        "input": "hi",
        "reasoning": {"summary": "auto"},
        "include": ["reasoning.encrypted_content"],
    }
    kinds = [e["type"] for e in await events(http, body)]
    assert kinds[2:5] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
    ]
    full = await sdk.responses.create(**body)
    item = full.output[0]
    assert item.type == "reasoning" and item.summary and item.encrypted_content

    # Sent back untouched it is accepted; altered, refused like OpenAI refuses it.
    turn = [{"role": "user", "content": "hi"}, item.model_dump(exclude_none=True)]
    ok = await sdk.responses.create(
        model="o4-mini", input=[*turn, {"role": "user", "content": "more"}]
    )  # type: ignore[arg-type]
    assert ok.status == "completed"
    turn[1]["encrypted_content"] += "x"
    with pytest.raises(openai.BadRequestError) as exc:
        await sdk.responses.create(model="o4-mini", input=turn)  # type: ignore[arg-type]
    assert exc.value.code == "invalid_encrypted_content"


async def test_function_calls_and_their_outputs(
    http: httpx.AsyncClient, sdk: openai.AsyncOpenAI
) -> None:
    body = {"model": "gpt-4o", "input": "Weather in Paris?", "tools": [WEATHER]}
    first = await sdk.responses.create(**body)
    (call,) = first.output
    assert call.type == "function_call" and call.call_id.startswith("call_")
    assert orjson.loads(call.arguments) == {"city": "Paris"}
    streamed = await events(http, body)
    args = "".join(
        e["delta"] for e in streamed if e["type"] == "response.function_call_arguments.delta"
    )
    assert args == call.arguments
    follow = await sdk.responses.create(
        model="gpt-4o",
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            call.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ],
        tools=[WEATHER],
    )
    assert "sunny" in follow.output_text
    with pytest.raises(openai.BadRequestError):
        await sdk.responses.create(
            model="gpt-4o",
            input=[{"type": "function_call_output", "call_id": "call_nope", "output": "x"}],
        )


async def test_namespaced_tools_are_called_with_their_namespace(sdk: openai.AsyncOpenAI) -> None:
    tools: Any = [{"type": "namespace", "name": "crm", "description": "", "tools": [WEATHER]}]
    resp = await sdk.responses.create(model="gpt-4o", input="Weather in Paris?", tools=tools)
    (call,) = resp.output
    assert call.type == "function_call" and call.namespace == "crm"


async def test_faults(http: httpx.AsyncClient, sdk: openai.AsyncOpenAI) -> None:
    failed = await events(http, {"model": "gpt-4o", "input": "[[midstream-error]] go"})
    assert failed[-1]["type"] == "response.failed"
    assert failed[-1]["response"]["error"]["code"] == "server_error"
    incomplete = await sdk.responses.create(
        model="gpt-4o", input="[[max]] go", max_output_tokens=20
    )
    assert incomplete.status == "incomplete"
    assert incomplete.incomplete_details is not None
    assert incomplete.incomplete_details.reason == "max_output_tokens"
    assert incomplete.usage is not None and incomplete.usage.output_tokens == 20
    cached = await sdk.responses.create(model="gpt-4o", input="[[cache]] a longer prompt here")
    assert cached.usage is not None and cached.usage.input_tokens_details.cached_tokens > 0
    with pytest.raises(openai.RateLimitError):
        await sdk.responses.create(model="gpt-4o", input="[[error:429]]")
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.create(model="gpt-does-not-exist", input="x")
    with pytest.raises(openai.BadRequestError) as stored:
        await sdk.responses.create(model="gpt-4o", input="x", previous_response_id="resp_1")
    assert stored.value.param == "previous_response_id"
    with pytest.raises(openai.AuthenticationError):
        await sdk.with_options(api_key="bad-key").responses.create(model="gpt-4o", input="x")
