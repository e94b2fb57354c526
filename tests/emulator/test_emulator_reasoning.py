"""Reasoning state must round-trip: the emulator rejects requests that drop or forge it."""

from __future__ import annotations

import httpx
from emu_helpers import AUTH, PATHS, gemini_path, gemini_user, user

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


async def _anthropic_first_leg(emu: httpx.AsyncClient) -> tuple[dict, list]:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "tools": [WEATHER],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [user("Weather in Paris?")],
    }
    resp = await emu.post(PATHS["anthropic"], headers=AUTH["anthropic"], json=body)
    assert resp.status_code == 200, resp.text
    content = resp.json()["content"]
    assert [b["type"] for b in content] == ["thinking", "text", "tool_use"]
    assert content[0]["signature"]
    assert content[2]["input"] == {"city": "Paris"}
    return body, content


def _anthropic_follow_up(body: dict, assistant: list) -> dict:
    tool_id = next(b["id"] for b in assistant if b["type"] == "tool_use")
    result = {"type": "tool_result", "tool_use_id": tool_id, "content": "18C and sunny"}
    return {
        **body,
        "messages": [
            *body["messages"],
            {"role": "assistant", "content": assistant},
            {"role": "user", "content": [result]},
        ],
    }


async def test_anthropic_thinking_signature_round_trip(emu: httpx.AsyncClient) -> None:
    body, content = await _anthropic_first_leg(emu)
    ok = await emu.post(
        PATHS["anthropic"], headers=AUTH["anthropic"], json=_anthropic_follow_up(body, content)
    )
    assert ok.status_code == 200, ok.text
    assert "Tool get_weather returned: 18C and sunny." in ok.json()["content"][-1]["text"]

    dropped = await emu.post(
        PATHS["anthropic"], headers=AUTH["anthropic"], json=_anthropic_follow_up(body, content[1:])
    )
    assert dropped.status_code == 400
    message = dropped.json()["error"]["message"]
    assert "Expected `thinking` or `redacted_thinking`, but found `text`" in message

    forged = [{**content[0], "signature": content[0]["signature"][:-4] + "AAA="}, *content[1:]]
    bad = await emu.post(
        PATHS["anthropic"], headers=AUTH["anthropic"], json=_anthropic_follow_up(body, forged)
    )
    assert bad.status_code == 400
    assert "Invalid `signature` in `thinking` block" in bad.json()["error"]["message"]

    edited = [{**content[0], "thinking": content[0]["thinking"] + " edited"}, *content[1:]]
    tampered = await emu.post(
        PATHS["anthropic"], headers=AUTH["anthropic"], json=_anthropic_follow_up(body, edited)
    )
    assert tampered.status_code == 400

    no_thinking = {k: v for k, v in body.items() if k != "thinking"}
    plain = await emu.post(
        PATHS["anthropic"],
        headers=AUTH["anthropic"],
        json=_anthropic_follow_up(no_thinking, content[1:]),
    )
    assert plain.status_code == 200, "without thinking no signature is required"


async def test_anthropic_stream_signature_equals_non_stream(emu: httpx.AsyncClient) -> None:
    body, content = await _anthropic_first_leg(emu)
    resp = await emu.post(
        PATHS["anthropic"], headers=AUTH["anthropic"], json={**body, "stream": True}
    )
    assert content[0]["signature"].encode() in resp.content


GEMINI_TOOLS = [
    {
        "functionDeclarations": [
            {
                "name": "get_weather",
                "parameters": {
                    "type": "OBJECT",
                    "properties": {"city": {"type": "STRING"}},
                    "required": ["city"],
                },
            },
            {
                "name": "get_time",
                "parameters": {
                    "type": "object",
                    "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}},
                },
            },
        ]
    }
]


async def _gemini_turn(emu: httpx.AsyncClient, model: str, contents: list) -> httpx.Response:
    return await emu.post(
        gemini_path(model),
        headers=AUTH["gemini"],
        json={"contents": contents, "tools": GEMINI_TOOLS},
    )


async def test_gemini3_thought_signature_round_trip(emu: httpx.AsyncClient) -> None:
    first = [gemini_user("Weather and time please [[parallel]]")]
    resp = await _gemini_turn(emu, "gemini-3-pro-preview", first)
    assert resp.status_code == 200, resp.text
    parts = resp.json()["candidates"][0]["content"]["parts"]
    assert [list(p["functionCall"]) for p in parts] == [["name", "args"]] * 2
    assert "thoughtSignature" in parts[0] and "thoughtSignature" not in parts[1]
    assert parts[1]["functionCall"] == {"name": "get_time", "args": {"zone": "UTC"}}
    answers = {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": p["functionCall"]["name"], "response": {"result": "ok"}}}
            for p in parts
        ],
    }

    def history(model_parts: list) -> list:
        return [*first, {"role": "model", "parts": model_parts}, answers]

    ok = await _gemini_turn(emu, "gemini-3-pro-preview", history(parts))
    assert ok.status_code == 200, ok.text
    assert (
        "Tool get_weather returned: ok."
        in ok.json()["candidates"][0]["content"]["parts"][0]["text"]
    )

    stripped = [{"functionCall": p["functionCall"]} for p in parts]
    missing = await _gemini_turn(emu, "gemini-3-pro-preview", history(stripped))
    assert missing.status_code == 400
    err = missing.json()["error"]
    assert err["status"] == "INVALID_ARGUMENT"
    assert "missing a thought_signature" in err["message"]

    forged = [{**parts[0], "thoughtSignature": "Zm9yZ2Vk"}, parts[1]]
    assert (await _gemini_turn(emu, "gemini-3-pro-preview", history(forged))).status_code == 400

    sentinel = [{**parts[0], "thoughtSignature": "skip_thought_signature_validator"}, parts[1]]
    assert (await _gemini_turn(emu, "gemini-3-pro-preview", history(sentinel))).status_code == 200

    # Gemini 2.5 does not enforce signatures
    assert (await _gemini_turn(emu, "gemini-2.5-flash", history(stripped))).status_code == 200


async def test_gemini_thoughts_only_when_included(emu: httpx.AsyncClient) -> None:
    base = {"contents": [gemini_user("hello")]}
    plain = (
        await emu.post(gemini_path("gemini-2.5-flash"), headers=AUTH["gemini"], json=base)
    ).json()
    assert all(not p.get("thought") for p in plain["candidates"][0]["content"]["parts"])
    assert plain["usageMetadata"]["thoughtsTokenCount"] > 0
    cfg = {"thinkingConfig": {"includeThoughts": True}}
    shown = (
        await emu.post(
            gemini_path("gemini-2.5-flash"),
            headers=AUTH["gemini"],
            json={**base, "generationConfig": cfg},
        )
    ).json()
    assert shown["candidates"][0]["content"]["parts"][0]["thought"] is True
    off = {"thinkingConfig": {"thinkingBudget": 0}}
    none = (
        await emu.post(
            gemini_path("gemini-2.5-flash"),
            headers=AUTH["gemini"],
            json={**base, "generationConfig": off},
        )
    ).json()
    assert "thoughtsTokenCount" not in none["usageMetadata"]
    old = (
        await emu.post(gemini_path("gemini-2.0-flash"), headers=AUTH["gemini"], json=base)
    ).json()
    assert "thoughtsTokenCount" not in old["usageMetadata"]


DS_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


async def test_deepseek_reasoning_content_round_trip(emu: httpx.AsyncClient) -> None:
    body = {"model": "deepseek-reasoner", "tools": DS_TOOLS, "messages": [user("Weather?")]}
    resp = await emu.post(PATHS["deepseek"], headers=AUTH["deepseek"], json=body)
    message = resp.json()["choices"][0]["message"]
    assert message["reasoning_content"]
    assert message["tool_calls"][0]["id"].startswith("call_00_")
    result = {"role": "tool", "tool_call_id": message["tool_calls"][0]["id"], "content": "rain"}

    def follow(assistant: dict, model: str = "deepseek-reasoner", **extra: object) -> dict:
        return {**body, "model": model, **extra, "messages": [*body["messages"], assistant, result]}

    ok = await emu.post(PATHS["deepseek"], headers=AUTH["deepseek"], json=follow(message))
    assert ok.status_code == 200, ok.text
    assert "Tool get_weather returned: rain." in ok.json()["choices"][0]["message"]["content"]

    dropped = {k: v for k, v in message.items() if k != "reasoning_content"}
    bad = await emu.post(PATHS["deepseek"], headers=AUTH["deepseek"], json=follow(dropped))
    assert bad.status_code == 400
    assert bad.json()["error"]["message"] == (
        "The `reasoning_content` in the thinking mode must be passed back to the API."
    )
    empty = await emu.post(
        PATHS["deepseek"],
        headers=AUTH["deepseek"],
        json=follow({**message, "reasoning_content": ""}),
    )
    assert empty.status_code == 400
    v4 = await emu.post(
        PATHS["deepseek"], headers=AUTH["deepseek"], json=follow(dropped, "deepseek-v4-pro")
    )
    assert v4.status_code == 400, "V4 thinks by default"
    v4_off = await emu.post(
        PATHS["deepseek"],
        headers=AUTH["deepseek"],
        json=follow(dropped, "deepseek-v4-pro", thinking={"type": "disabled"}),
    )
    assert v4_off.status_code == 200
    chat = await emu.post(
        PATHS["deepseek"], headers=AUTH["deepseek"], json=follow(dropped, "deepseek-chat")
    )
    assert chat.status_code == 200, "deepseek-chat does not think unless asked"
    assert "reasoning_content" not in chat.json()["choices"][0]["message"]


async def test_openai_and_xai_reasoning_tokens(emu: httpx.AsyncClient) -> None:
    o = (
        await emu.post(
            PATHS["openai"], headers=AUTH["openai"], json={"model": "o3", "messages": [user("hi")]}
        )
    ).json()
    details = o["usage"]["completion_tokens_details"]
    assert details["reasoning_tokens"] > 0
    assert o["usage"]["completion_tokens"] > details["reasoning_tokens"]
    assert "reasoning_content" not in o["choices"][0]["message"]
    g = (
        await emu.post(
            PATHS["openai"],
            headers=AUTH["openai"],
            json={"model": "gpt-4o", "messages": [user("hi")]},
        )
    ).json()
    assert g["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0

    silent = (
        await emu.post(
            PATHS["xai"], headers=AUTH["xai"], json={"model": "grok-4.3", "messages": [user("hi")]}
        )
    ).json()
    u = silent["usage"]
    r = u["completion_tokens_details"]["reasoning_tokens"]
    assert r > 0 and "reasoning_content" not in silent["choices"][0]["message"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] + r
    mini = (
        await emu.post(
            PATHS["xai"],
            headers=AUTH["xai"],
            json={"model": "grok-3-mini", "messages": [user("hi")]},
        )
    ).json()
    assert mini["choices"][0]["message"]["reasoning_content"]
