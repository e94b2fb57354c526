"""Malformed bodies get the vendor's own 400 (or xAI/DeepSeek's 422), never an emulator
crash: the real APIs validate types before anything else, and a 500 would carry the bug's
text to whoever called."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from emu_helpers import AUTH, PATHS, gemini_path

from tokenrelay.emulator.app import create_app

OPENAI_LIKE = {
    "openai": "gpt-4o",
    "xai": "grok-4.3",
    "deepseek": "deepseek-chat",
    "compat": "acme/chat-1",
}
_CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
USER = {"role": "user", "content": "hi"}

OPENAI_BODIES: list[dict[str, Any]] = [
    {"messages": [{**USER, "tool_calls": [_CALL]}]},  # tool_calls on a user message
    {"messages": [{**USER, "tool_calls": "x"}]},
    {"messages": [{"role": "assistant", "content": "", "tool_calls": [1]}, USER]},
    {"messages": [{"role": "assistant", "content": "", "tool_calls": [{"function": "f"}]}]},
    {"messages": [{"role": "tool", "tool_call_id": ["x"], "content": "r"}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
    {"messages": [{"role": "user", "content": [7]}]},
    {"messages": [USER], "stop": 3},
    {"messages": [USER], "stop": [1]},
    {"messages": [USER], "stream_options": "yes"},
    {"messages": [USER], "tool_choice": {"type": "function", "function": "f"}},
    {"messages": [USER], "tool_choice": {"type": "function", "function": {"name": ["f"]}}},
    {"messages": [USER], "tools": [{"type": "function", "function": {"name": 1}}]},
    {"messages": [USER], "max_tokens": "10"},
    {"model": ["gpt-4o"], "messages": [USER]},
]
ANTHROPIC_BODIES: list[dict[str, Any]] = [
    {"max_tokens": "10"},
    {"max_tokens": 10, "stop_sequences": 5},
    {"max_tokens": 10, "stop_sequences": [5]},
    {"max_tokens": 10, "tool_choice": {"type": ["any"]}},
    {"max_tokens": 10, "tool_choice": {"type": "tool", "name": ["f"]}},
    {"max_tokens": 10, "system": [{"type": "text", "text": 1}]},
    {"max_tokens": 10, "system": 5},
    {"max_tokens": 10, "tools": [{"name": "f", "input_schema": 1}]},
    {"max_tokens": 10, "tools": ["f"]},
    {"max_tokens": 10, "thinking": "on"},
    {"max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]},
    {"max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
    {
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": ["t"], "name": "f"}]},
        ],
    },
    {
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": 3}]}
        ],
    },
]
GEMINI_BODIES: list[dict[str, Any]] = [
    {"contents": [5]},
    {"contents": [{"role": ["user"], "parts": [{"text": "hi"}]}]},
    {"contents": [{"parts": [{"text": 5}]}]},
    {"contents": [{"parts": [{"functionCall": "f"}]}]},
    {"contents": [{"parts": [{"functionCall": {"name": 1}}]}]},
    {"contents": [{"parts": "hi"}]},
    {"contents": [{"parts": [{"text": "hi"}]}], "tools": [{"functionDeclarations": "f"}]},
    {"contents": [{"parts": [{"text": "hi"}]}], "tools": [{"functionDeclarations": [{"name": 1}]}]},
    {
        "contents": [{"parts": [{"text": "hi"}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": {"a": 1}}},
    },
    {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": "5"}},
    {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"stopSequences": 5}},
    {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": 3},
    {"contents": [{"parts": [{"text": "hi"}]}], "systemInstruction": "be brief"},
]


def _assert_vendor_400(r: httpx.Response, vendor: str) -> None:
    assert r.status_code in ((422, 400) if vendor in ("xai", "deepseek") else (400,)), r.text
    body = r.json()
    assert "emulator" not in r.text and "Error(" not in r.text
    if vendor == "anthropic":
        assert body["type"] == "error"
        assert body["error"]["type"] == "invalid_request_error"
    elif vendor == "gemini":
        assert body["error"]["status"] == "INVALID_ARGUMENT"
    elif vendor == "xai":
        assert isinstance(body["error"], str)
    else:
        assert body["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("vendor", sorted(OPENAI_LIKE))
@pytest.mark.parametrize("body", OPENAI_BODIES)
async def test_openai_compat_rejects_malformed_bodies(emu, vendor, body) -> None:
    payload = {"model": OPENAI_LIKE[vendor], **body}
    r = await emu.post(PATHS[vendor], headers=AUTH[vendor], json=payload)
    _assert_vendor_400(r, vendor)


@pytest.mark.parametrize("body", ANTHROPIC_BODIES)
@pytest.mark.parametrize("counting", [False, True], ids=["messages", "count_tokens"])
async def test_anthropic_rejects_malformed_bodies(emu, body, counting) -> None:
    payload = {"model": "claude-sonnet-4-5", "messages": [USER], **body}
    path = PATHS["anthropic"] + ("/count_tokens" if counting else "")
    r = await emu.post(path, headers=AUTH["anthropic"], json=payload)
    _assert_vendor_400(r, "anthropic")


@pytest.mark.parametrize("body", GEMINI_BODIES)
@pytest.mark.parametrize("action", ["generateContent", "streamGenerateContent", "countTokens"])
async def test_gemini_rejects_malformed_bodies(emu, body, action) -> None:
    r = await emu.post(gemini_path("gemini-2.5-flash", action), headers=AUTH["gemini"], json=body)
    _assert_vendor_400(r, "gemini")


async def test_a_crash_answers_500_without_the_exception_text(monkeypatch) -> None:
    from tokenrelay.emulator import openai_compat

    def boom(*_: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(openai_compat, "_validate", boom)
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://emu") as emu:
        r = await emu.post(PATHS["openai"], headers=AUTH["openai"], json={"model": "gpt-4o"})
    assert r.status_code == 500
    assert "secret" not in r.text and "RuntimeError" not in r.text


@pytest.mark.parametrize("model", ["gpt-4o", "grok-4.3", "deepseek-chat", "claude-sonnet-4-6"])
def test_gateway_relays_the_vendor_400_for_user_tool_calls(gateway, api_key, model) -> None:
    r = httpx.post(
        gateway.proxy + "/v1/chat/completions",
        headers={"authorization": f"Bearer {api_key}"},
        json={"model": model, "messages": [{**USER, "tool_calls": "x"}]},
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "emulator" not in error["message"] and "Error(" not in error["message"]


# Nested JSON-schema keywords of the wrong type inside a tool's parameters (a fuzzed Gemini CLI
# body, passed on by the gateway): the emulator answers with a call, never a crash.
BAD_SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"a": {"type": "string"}}, "required": 1},
    {"type": "object", "properties": [], "required": ["a"]},
    {"type": "object", "properties": {"a": {"enum": 5}}, "required": ["a", 3]},
]


@pytest.mark.parametrize("schema", BAD_SCHEMAS)
async def test_malformed_tool_schemas_never_crash(emu, schema) -> None:
    ask = "please call lookup"  # names the tool: the emulator calls it
    calls = [
        (
            PATHS["anthropic"],
            AUTH["anthropic"],
            {
                "model": "claude-sonnet-4-5",
                "max_tokens": 50,
                "messages": [{"role": "user", "content": ask}],
                "tools": [{"name": "lookup", "input_schema": schema}],
            },
        ),
        (
            PATHS["openai"],
            AUTH["openai"],
            {
                "model": "gpt-4o",
                "messages": [{"role": "user", "content": ask}],
                "tools": [
                    {"type": "function", "function": {"name": "lookup", "parameters": schema}}
                ],
            },
        ),
        (
            gemini_path("gemini-2.5-flash", "generateContent"),
            AUTH["gemini"],
            {
                "contents": [{"parts": [{"text": ask}]}],
                "tools": [
                    {"functionDeclarations": [{"name": "lookup", "parametersJsonSchema": schema}]}
                ],
            },
        ),
    ]
    for path, headers, body in calls:
        r = await emu.post(path, headers=headers, json=body)
        assert r.status_code < 500, (path, r.text)
