"""Multi-turn tool loops through both client APIs, on every vendor, with reasoning on.

The emulator enforces what the real vendors enforce: Anthropic rejects a tool turn whose signed
thinking block is missing, Gemini 3 one whose functionCall lost its thoughtSignature, DeepSeek's
thinking mode one whose reasoning_content was dropped. An OpenAI-format client has no field for
the first two and usually drops the third, so these loops pass only if the gateway keeps that
state server-side and restores it.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
OPENAI_TOOLS = [{"type": "function", "function": WEATHER_TOOL}]
ANTHROPIC_TOOLS = [
    {
        "name": WEATHER_TOOL["name"],
        "description": WEATHER_TOOL["description"],
        "input_schema": WEATHER_TOOL["parameters"],
    }
]

# model, reasoning on through the OpenAI API, thinking on through the Anthropic API
CASES = [
    (
        "claude-sonnet-4-6",
        {"reasoning_effort": "low"},
        {"thinking": {"type": "enabled", "budget_tokens": 1024}},
    ),
    ("gpt-5", {"reasoning_effort": "low"}, {}),
    ("gemini-3-pro-preview", {"reasoning_effort": "low"}, {}),
    ("gemini-2.5-flash", {}, {}),
    ("grok-4.3", {}, {}),
    ("deepseek-reasoner", {}, {}),
    ("deepseek-v4-flash", {}, {}),
]


@pytest.fixture(scope="module")
def claude(gateway, api_key) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=api_key, base_url=gateway.proxy, max_retries=0)


@pytest.fixture(scope="module")
def gpt(gateway, api_key) -> openai.OpenAI:
    return openai.OpenAI(api_key=api_key, base_url=gateway.proxy + "/v1", max_retries=0)


def _openai_turn(
    gpt: openai.OpenAI, model: str, messages: list[Any], extra: dict[str, Any], stream: bool
) -> tuple[str, list[dict[str, Any]], str]:
    """One request; returns (text, tool_calls as plain dicts, finish_reason)."""
    if not stream:
        c = gpt.chat.completions.create(model=model, messages=messages, tools=OPENAI_TOOLS, **extra)
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
    with gpt.chat.completions.stream(
        model=model, messages=messages, tools=OPENAI_TOOLS, **extra
    ) as s:
        final = s.get_final_completion()
    msg = final.choices[0].message
    calls = [
        {
            "id": t.id,
            "type": "function",
            "function": {"name": t.function.name, "arguments": t.function.arguments},
        }
        for t in msg.tool_calls or []
    ]
    return msg.content or "", calls, final.choices[0].finish_reason


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize(("model", "oai_extra", "_a"), CASES, ids=[c[0] for c in CASES])
def test_openai_client_three_turn_tool_loop(gpt, model, oai_extra, _a, stream) -> None:
    messages: list[Any] = [{"role": "user", "content": "What's the weather in Paris?"}]
    text, calls, finish = _openai_turn(gpt, model, messages, oai_extra, stream)
    assert finish == "tool_calls" and calls, (text, calls)
    assert json.loads(calls[0]["function"]["arguments"])["city"]
    # Like most client code: keep role/content/tool_calls, drop everything else.
    messages.append({"role": "assistant", "content": text or None, "tool_calls": calls})
    messages += [
        {"role": "tool", "tool_call_id": c["id"], "content": '{"temp_c": 18}'} for c in calls
    ]
    text, calls2, finish = _openai_turn(gpt, model, messages, oai_extra, stream)
    assert finish == "stop" and not calls2
    assert "18" in text  # the tool result reached the vendor
    messages.append({"role": "assistant", "content": text})
    messages.append({"role": "user", "content": "And the weather in Berlin?"})
    text, calls3, finish = _openai_turn(gpt, model, messages, oai_extra, stream)
    assert finish == "tool_calls" and calls3
    messages.append({"role": "assistant", "content": text or None, "tool_calls": calls3})
    messages += [
        {"role": "tool", "tool_call_id": c["id"], "content": '{"temp_c": 11}'} for c in calls3
    ]
    text, _, finish = _openai_turn(gpt, model, messages, oai_extra, stream)
    assert finish == "stop" and "11" in text


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize(("model", "_o", "a_extra"), CASES, ids=[c[0] for c in CASES])
def test_anthropic_client_three_turn_tool_loop(claude, model, _o, a_extra, stream) -> None:
    def turn(messages: list[Any]) -> anthropic.types.Message:
        kwargs = {
            "model": model,
            "max_tokens": 4096,
            "messages": messages,
            "tools": ANTHROPIC_TOOLS,
            **a_extra,
        }
        if not stream:
            return claude.messages.create(**kwargs)
        with claude.messages.stream(**kwargs) as s:
            return s.get_final_message()

    messages: list[Any] = [{"role": "user", "content": "What's the weather in Paris?"}]
    for round_, city_temp in enumerate((18, 11)):
        msg = turn(messages)
        assert msg.stop_reason == "tool_use", msg
        uses = [b for b in msg.content if b.type == "tool_use"]
        assert uses and uses[0].input.get("city")
        # The Anthropic SDK way: send the assistant content back as it came.
        messages.append({"role": "assistant", "content": msg.content})
        messages.append(
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": u.id,
                        "content": f'{{"temp_c": {city_temp}}}',
                    }
                    for u in uses
                ],
            }
        )
        msg = turn(messages)
        assert msg.stop_reason == "end_turn"
        text = "".join(b.text for b in msg.content if b.type == "text")
        assert str(city_temp) in text
        if round_ == 0:
            messages.append({"role": "assistant", "content": msg.content})
            messages.append({"role": "user", "content": "And the weather in Berlin?"})


def test_parallel_tool_calls_stream_through_openai_api(gpt) -> None:
    for model in ("claude-sonnet-4-6", "gemini-2.5-flash", "gpt-4o", "deepseek-chat"):
        tools = [
            *OPENAI_TOOLS,
            {
                "type": "function",
                "function": {
                    "name": "get_time",
                    "description": "Local time",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            },
        ]
        with gpt.chat.completions.stream(
            model=model,
            tools=tools,
            messages=[{"role": "user", "content": "Weather and time in Paris [[parallel]]"}],
        ) as s:
            final = s.get_final_completion()
        calls = final.choices[0].message.tool_calls or []
        assert len(calls) == 2, model
        assert len({c.id for c in calls}) == 2
        for c in calls:
            json.loads(c.function.arguments)
