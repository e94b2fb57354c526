"""The official SDKs parse the emulator's output — strong evidence of wire fidelity."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import anthropic
import httpx
import httpx2
import openai
import pytest
import uvicorn
from google import genai
from google.genai import types
from starlette.applications import Starlette
from starlette.routing import Mount

from tokenrelay.emulator import create_app

WEATHER = {
    "name": "get_weather",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def _http() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app()))


def _http2() -> httpx2.AsyncClient:
    """The anthropic SDK now ships on httpx2 (the httpx fork); same ASGI transport idea."""
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=create_app()))


async def test_anthropic_sdk_stream_equals_create() -> None:
    client = anthropic.AsyncAnthropic(
        api_key="sk-ant-test", base_url="http://emu/anthropic", http_client=_http2(), max_retries=0
    )
    kwargs = {
        "model": "claude-test-model",
        "max_tokens": 4096,
        "tools": [WEATHER],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
    }
    created = await client.messages.create(**kwargs)
    async with client.messages.stream(**kwargs) as stream:
        streamed = await stream.get_final_message()
    assert created.model_dump(exclude={"content"}) == streamed.model_dump(exclude={"content"})
    assert [b.type for b in created.content] == ["thinking", "text", "tool_use"]
    assert streamed.content[0].signature == created.content[0].signature
    assert streamed.content[2].input == created.content[2].input == {"city": "Paris"}
    assert created.stop_reason == "tool_use"
    follow = await client.messages.create(
        **{
            **kwargs,
            "messages": [
                *kwargs["messages"],
                {"role": "assistant", "content": streamed.content},
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": streamed.content[2].id,
                            "content": "sunny",
                        }
                    ],
                },
            ],
        }
    )
    assert "sunny" in follow.content[-1].text
    with pytest.raises(anthropic.InternalServerError) as exc:
        await client.messages.create(
            **{**kwargs, "messages": [{"role": "user", "content": "x [[error:529]]"}]}
        )
    assert exc.value.status_code == 529
    with pytest.raises(anthropic.APIStatusError) as mid:
        async with client.messages.stream(
            **{
                **kwargs,
                "tools": [],
                "messages": [{"role": "user", "content": "x [[midstream-error]]"}],
            }
        ) as stream:
            await stream.get_final_message()
    assert "overloaded_error" in str(mid.value.body)
    tokens = await client.messages.count_tokens(
        model="claude-test-model", tools=[WEATHER], messages=kwargs["messages"]
    )
    assert tokens.input_tokens == created.usage.input_tokens


@pytest.mark.parametrize(
    ("base", "model"),
    [
        ("openai/v1", "gpt-4o"),
        ("xai/v1", "grok-3-mini"),
        ("deepseek", "deepseek-reasoner"),
        ("compat/acme-llm/v1", "acme/chat-1"),  # an operator's own compatible server
    ],
)
async def test_openai_sdk_against_each_dialect(base: str, model: str) -> None:
    client = openai.AsyncOpenAI(
        api_key="sk-test", base_url=f"http://emu/{base}", http_client=_http(), max_retries=0
    )
    tools = [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]},
        }
    ]
    messages = [{"role": "user", "content": "Weather? [[parallel]]"}]
    created = await client.chat.completions.create(model=model, messages=messages, tools=tools)
    async with client.chat.completions.stream(
        model=model, messages=messages, tools=tools, stream_options={"include_usage": True}
    ) as stream:
        streamed = await stream.get_final_completion()
    calls_a = [
        (c.id, c.function.name, c.function.arguments) for c in created.choices[0].message.tool_calls
    ]
    calls_b = [
        (c.id, c.function.name, c.function.arguments)
        for c in streamed.choices[0].message.tool_calls
    ]
    assert calls_a == calls_b and len(calls_a) == 2
    assert created.usage == streamed.usage
    text = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hello [[words:3]]"}]
    )
    assert text.choices[0].message.content == " w1 w2 w3"
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "x [[error:429]]"}]
        )
    with pytest.raises(openai.APIError):
        stream = await client.chat.completions.create(
            model=model,
            stream=True,
            messages=[{"role": "user", "content": "x [[midstream-error]]"}],
        )
        async for _ in stream:
            pass


async def test_google_genai_sdk() -> None:
    client = genai.Client(
        api_key="test-key",
        http_options=types.HttpOptions(base_url="http://emu/gemini", httpx_async_client=_http()),
    )
    resp = await client.aio.models.generate_content(
        model="gemini-3-pro-preview", contents="hello [[words:4]]"
    )
    assert resp.text == " w1 w2 w3 w4"
    assert resp.usage_metadata.candidates_token_count == 4
    chunks = [
        c
        async for c in await client.aio.models.generate_content_stream(
            model="gemini-3-pro-preview", contents="hello [[words:4]]"
        )
    ]
    assert "".join(c.text or "" for c in chunks) == resp.text
    assert chunks[-1].usage_metadata == resp.usage_metadata
    tool = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="get_weather", parameters_json_schema=WEATHER["input_schema"]
            )
        ]
    )
    config = types.GenerateContentConfig(
        tools=[tool], automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)
    )
    call = await client.aio.models.generate_content(
        model="gemini-3-pro-preview", contents="Weather?", config=config
    )
    assert call.function_calls[0].args == {"city": "Paris"}
    count = await client.aio.models.count_tokens(
        model="gemini-3-pro-preview", contents="hello [[words:4]]"
    )
    assert count.total_tokens == resp.usage_metadata.prompt_token_count


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def mounted_server() -> AsyncIterator[str]:
    """A real uvicorn server with the emulator mounted under /emulator, as the gateway does."""
    port = _free_port()
    app = Starlette(routes=[Mount("/emulator", app=create_app())])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}/emulator"
    server.should_exit = True
    await task


async def test_real_server_mount_stream_and_cut(mounted_server: str) -> None:
    headers = {"authorization": "Bearer sk-test"}
    body = {
        "model": "gpt-4o",
        "stream": True,
        "messages": [{"role": "user", "content": "[[words:5]] [[delay:5]]"}],
    }
    async with httpx.AsyncClient(base_url=mounted_server) as http:
        got = await http.post("/openai/v1/chat/completions", headers=headers, json=body)
        assert got.status_code == 200 and got.text.endswith("data: [DONE]\n\n")
        cut = {**body, "messages": [{"role": "user", "content": "[[words:9]] [[cut]]"}]}
        with pytest.raises(httpx.RemoteProtocolError):
            async with http.stream(
                "POST", "/openai/v1/chat/completions", headers=headers, json=cut
            ) as resp:
                assert resp.status_code == 200
                async for _ in resp.aiter_bytes():
                    pass
        missing = await http.get("/nowhere")
        assert missing.status_code == 404
