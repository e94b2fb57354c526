"""A Claude Code-shaped session, driven with the `anthropic` SDK the way Claude Code 2.1 sends it
(VENDORS.md §7), on a model of every vendor: `?beta=true` with its anthropic-beta list and
session header, system blocks with cache_control, its default tools, `thinking: adaptive`,
`context_management`, `output_config.effort`, `max_tokens: 32000`, and — as it does for models it
does not know — a `system` message inside `messages`. The file is read with the tool, the
answer comes from the tool result, and a plain prompt gets a plain answer; every call is billed
under the session's id.
"""

from __future__ import annotations

import uuid
from typing import Any

import anthropic
import httpx
import pytest

from gateway_support import ADMIN_TOKEN

MODELS = ["claude-sonnet-4-6", "gpt-4o", "gemini-2.5-flash", "grok-4.3", "deepseek-chat"]
BETAS = [
    "claude-code-20250219",
    "interleaved-thinking-2025-05-14",
    "context-management-2025-06-27",
    "prompt-caching-scope-2026-01-05",
    "mid-conversation-system-2026-04-07",
    "effort-2025-11-24",
]
SYSTEM = [
    {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197; cc_entrypoint=cli;"},
    {
        "type": "text",
        "text": "You are a Claude agent, built on Anthropic's Claude Agent SDK.",
        "cache_control": {"type": "ephemeral"},
    },
    {"type": "text", "text": "You are an interactive agent that helps with software tasks."},
]
AGENTS = "Available agent types for the Agent tool:\n- Explore: Read-only search agent."
REMINDER = "<system-reminder>\nToday's date is 2026-12-02. Use the Agent tool.\n</system-reminder>"


def _tool(name: str, prop: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {prop: {"type": "string"}}, "required": [prop]}
    return {"name": name, "description": f"The {name} tool.", "input_schema": schema}


# Claude Code's first tool is Agent: an emulator that called the first tool would loop on it.
TOOLS = [_tool("Agent", "prompt"), _tool("Bash", "command"), _tool("Read", "file_path")]
TOOLS[-1]["cache_control"] = {"type": "ephemeral"}
# What Claude Code sends besides the SDK's own parameters.
FIELDS = {
    "thinking": {"type": "adaptive"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "output_config": {"effort": "high"},
}


def _user(text: str, *extra: dict[str, Any]) -> dict[str, Any]:
    blocks = [*extra, {"type": "text", "text": REMINDER}]
    blocks.append({"type": "text", "text": text, "cache_control": {"type": "ephemeral"}})
    return {"role": "user", "content": blocks}


def _turn(client: anthropic.Anthropic, model: str, session: str, messages: list[Any]) -> Any:
    with client.beta.messages.stream(
        model=model,
        max_tokens=32000,
        system=SYSTEM,  # type: ignore[arg-type]
        tools=TOOLS,  # type: ignore[arg-type]
        messages=messages,
        betas=BETAS,
        metadata={"user_id": '{"device_id":"d1","session_id":"' + session + '"}'},
        extra_headers={"X-Claude-Code-Session-Id": session, "x-app": "cli"},
        extra_body=FIELDS,
    ) as stream:
        return stream.get_final_message()


@pytest.mark.parametrize("model", MODELS)
def test_claude_code_session(gateway, api_key, model: str) -> None:
    client = anthropic.Anthropic(api_key=api_key, base_url=gateway.proxy, max_retries=0)
    session = str(uuid.uuid4())
    secret = f"MANGO-{uuid.uuid4().hex[:8]}"
    # The sub-agent list as a system message mid-list, where Claude Code puts it.
    messages: list[Any] = [
        _user("Read notes.txt and tell me the secret word."),
        {"role": "system", "content": AGENTS},
    ]

    first = _turn(client, model, session, messages)
    uses = [b for b in first.content if b.type == "tool_use"]
    assert first.stop_reason == "tool_use"
    assert [(u.name, u.input) for u in uses] == [("Read", {"file_path": "notes.txt"})]

    messages.append({"role": "assistant", "content": [b.model_dump() for b in first.content]})
    result = {"type": "tool_result", "tool_use_id": uses[0].id, "content": f"1\t{secret}\n"}
    messages.append({"role": "user", "content": [result]})
    second = _turn(client, model, session, messages)
    answer = "".join(b.text for b in second.content if b.type == "text")
    assert second.stop_reason == "end_turn"
    assert secret in answer  # answered from the file

    messages.append({"role": "assistant", "content": [b.model_dump() for b in second.content]})
    messages.append(_user("Say hello."))
    third = _turn(client, model, session, messages)
    assert third.stop_reason == "end_turn"
    assert not [b for b in third.content if b.type == "tool_use"]

    usage = httpx.get(
        gateway.url + "/admin/v1/usage",
        params={"limit": 1000},
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    ).json()["data"]
    mine = [r for r in usage if r["session_id"] == session]
    assert len(mine) == 3 and all(r["status"] == "ok" for r in mine), mine


def test_claude_code_start_up_checks(gateway, api_key) -> None:
    """At start Claude Code sends a HEAD to its base URL; the model list answers its discovery
    (in Anthropic's shape, for every vendor's models)."""
    for path in ("/api/proxy", "/api/proxy/v1"):
        assert httpx.head(gateway.url + path).status_code == 200
    listing = httpx.get(
        gateway.proxy + "/v1/models",
        params={"beta": "true", "limit": 1000},
        headers={"x-api-key": api_key, "anthropic-version": "2023-06-01"},
    )
    assert listing.status_code == 200
    models = {m["id"]: m for m in listing.json()["data"]}
    assert {"gpt-4o", "gemini-2.5-flash", "grok-4.3", "claude-sonnet-4-6"} <= set(models)
    assert all(m["type"] == "model" for m in models.values())
