"""The emulator picks tools like a model would, on every vendor's wire: the tool the prompt
names, the file-reading tool (or a shell `cat`) for a prompt that names a file, none when the
prompt asks for none and the choice is the model's, and the answer from the tool's result."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from emu_helpers import AUTH, PATHS, gemini_path

VENDORS = ["anthropic", "openai", "gemini", "xai", "deepseek"]


def _tool(name: str, prop: str) -> tuple[str, dict[str, Any]]:
    return name, {"type": "object", "properties": {prop: {"type": "string"}}, "required": [prop]}


# Claude Code's default tools (Agent first) and Codex's (a shell, and view_image taking a path).
CLAUDE_CODE = [_tool("Agent", "prompt"), _tool("Bash", "command"), _tool("Read", "file_path")]
CODEX = [_tool("view_image", "path"), _tool("exec_command", "cmd")]


async def _ask(
    emu: httpx.AsyncClient,
    vendor: str,
    prompt: str,
    tools: list[tuple[str, dict[str, Any]]],
    choice: str = "auto",
    result: str | None = None,
) -> tuple[list[tuple[str, Any]], str]:
    """One call; the tool calls (name, arguments) and the text. With `result`, the turn
    carries the result of a Read call the model made before."""
    if vendor == "anthropic":
        body: dict[str, Any] = {
            "model": "claude-sonnet-4-6",
            "max_tokens": 1024,
            "tools": [{"name": n, "input_schema": s} for n, s in tools],
            "tool_choice": {"type": choice},
            "messages": [{"role": "user", "content": prompt}],
        }
        if result is not None:
            call = {"type": "tool_use", "id": "tu_1", "name": "Read", "input": {}}
            body["messages"] += [
                {"role": "assistant", "content": [call]},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": result}],
                },
            ]
        r = await emu.post(PATHS[vendor], headers=AUTH[vendor], json=body)
        assert r.status_code == 200, r.text
        content = r.json()["content"]
        calls = [(b["name"], b["input"]) for b in content if b["type"] == "tool_use"]
        return calls, "".join(b.get("text", "") for b in content if b["type"] == "text")
    if vendor == "gemini":
        mode = {"auto": "AUTO", "any": "ANY"}[choice]
        contents: list[Any] = [{"role": "user", "parts": [{"text": prompt}]}]
        if result is not None:
            call = {"functionCall": {"name": "Read", "args": {}}, "thoughtSignature": "x" * 8}
            response = {"functionResponse": {"name": "Read", "response": {"output": result}}}
            contents += [{"role": "model", "parts": [call]}, {"role": "user", "parts": [response]}]
        gbody = {
            "contents": contents,
            "tools": [{"functionDeclarations": [{"name": n, "parameters": s} for n, s in tools]}],
            "toolConfig": {"functionCallingConfig": {"mode": mode}},
            "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}},
        }
        r = await emu.post(gemini_path("gemini-2.5-flash"), headers=AUTH[vendor], json=gbody)
        assert r.status_code == 200, r.text
        parts = r.json()["candidates"][0]["content"].get("parts", [])
        calls = [
            (p["functionCall"]["name"], p["functionCall"]["args"])
            for p in parts
            if "functionCall" in p
        ]
        return calls, "".join(p.get("text", "") for p in parts if not p.get("thought"))
    model = {"openai": "gpt-4o", "xai": "grok-4.3", "deepseek": "deepseek-chat"}[vendor]
    messages: list[Any] = [{"role": "user", "content": prompt}]
    if result is not None:
        call = {"id": "c1", "type": "function", "function": {"name": "Read", "arguments": "{}"}}
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": result},
        ]
    obody = {
        "model": model,
        "messages": messages,
        "tools": [{"type": "function", "function": {"name": n, "parameters": s}} for n, s in tools],
        "tool_choice": {"auto": "auto", "any": "required"}[choice],
    }
    r = await emu.post(PATHS[vendor], headers=AUTH[vendor], json=obody)
    assert r.status_code == 200, r.text
    message = r.json()["choices"][0]["message"]
    calls = [
        (c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in message.get("tool_calls") or []
    ]
    return calls, message.get("content") or ""


@pytest.mark.parametrize("vendor", VENDORS)
async def test_no_tool_when_the_prompt_asks_for_none(emu: httpx.AsyncClient, vendor: str) -> None:
    calls, text = await _ask(emu, vendor, "Say hello", CLAUDE_CODE)
    assert calls == [] and text


@pytest.mark.parametrize("vendor", VENDORS)
async def test_the_named_tool_is_called(emu: httpx.AsyncClient, vendor: str) -> None:
    calls, _ = await _ask(emu, vendor, "Use Bash to list the files", CLAUDE_CODE)
    assert [name for name, _ in calls] == ["Bash"]


@pytest.mark.parametrize("vendor", VENDORS)
async def test_a_file_path_is_read_with_the_read_tool(emu: httpx.AsyncClient, vendor: str) -> None:
    calls, _ = await _ask(emu, vendor, "What does src/notes.txt say?", CLAUDE_CODE)
    assert calls == [("Read", {"file_path": "src/notes.txt"})]


@pytest.mark.parametrize("vendor", VENDORS)
async def test_a_file_path_is_read_with_a_shell(emu: httpx.AsyncClient, vendor: str) -> None:
    calls, _ = await _ask(emu, vendor, "Read notes.txt and tell me the secret word.", CODEX)
    assert calls == [("exec_command", {"cmd": "cat notes.txt"})]


@pytest.mark.parametrize("vendor", VENDORS)
async def test_a_required_tool_is_the_first_when_none_is_named(
    emu: httpx.AsyncClient, vendor: str
) -> None:
    calls, _ = await _ask(emu, vendor, "Say hello", CLAUDE_CODE, choice="any")
    assert [name for name, _ in calls] == ["Agent"]


@pytest.mark.parametrize("vendor", VENDORS)
async def test_the_answer_comes_from_the_tool_result(emu: httpx.AsyncClient, vendor: str) -> None:
    result = "The secret word is FIG-93."
    calls, text = await _ask(emu, vendor, "Read notes.txt", CLAUDE_CODE, result=result)
    assert calls == [] and "FIG-93" in text
