"""What each vendor is sent for a request body as Claude Code 2.1 sends it (VENDORS.md §7): the
`system` message inside `messages` goes where the vendor takes system text, and its other
fields (thinking adaptive, context_management, output_config.effort, the anthropic-* headers)
reach Anthropic as sent and are mapped or dropped for the others."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tokenrelay import ir
from tokenrelay.errors import GatewayError
from tokenrelay.frontends.anthropic.parse import parse_messages_request
from tokenrelay.vendors.anthropic import ANTHROPIC, API_VERSION
from tokenrelay.vendors.base import Passthrough
from tokenrelay.vendors.deepseek import DEEPSEEK
from tokenrelay.vendors.gemini import GEMINI
from tokenrelay.vendors.openai import OPENAI
from tokenrelay.vendors.xai import XAI

AGENTS = "Available agent types for the Agent tool: Explore, Plan."
BETA = "claude-code-20250219,context-management-2025-06-27,effort-2025-11-24"
HEADERS = {"anthropic-beta": BETA, "anthropic-version": "2023-06-01", "x-api-key": "sk-aic-x"}
CONTEXT = {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}


def _body() -> dict[str, Any]:
    return {
        "model": "m",
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Read notes.txt"}]},
            {"role": "system", "content": AGENTS},
            {"role": "assistant", "content": "Reading."},
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": "Go on."},
        ],
        "tools": [{"name": "Read", "input_schema": {"type": "object", "properties": {}}}],
        "thinking": {"type": "adaptive"},
        "context_management": CONTEXT,
        "output_config": {"effort": "high"},
        "metadata": {"user_id": '{"session_id":"s1"}'},
    }


def _request(model: str) -> ir.Request:
    req = parse_messages_request(_body(), HEADERS)
    req.model = model
    return req


def _translated(vendor: Any, model: str) -> tuple[dict[str, Any], dict[str, str]]:
    req = _request(model)
    vendor.finalize(req, 4096)
    call = vendor.build_request(req, model, api_key="k", base_url="http://vendor")
    return orjson.loads(call.body), {k.lower(): v for k, v in call.headers.items()}


def test_system_messages_are_parsed_in_place() -> None:
    req = _request("m")
    assert [m.role for m in req.messages] == ["user", "system", "assistant", "system", "user"]
    assert req.messages[1].parts == [ir.Text(AGENTS)]
    assert req.thinking == ir.ThinkingConfig(enabled=True, adaptive=True, effort="high")


def test_a_system_message_must_hold_text() -> None:
    body = _body()
    body["messages"][1]["content"] = [{"type": "image", "source": {}}]
    with pytest.raises(GatewayError) as err:
        parse_messages_request(body, HEADERS)
    assert err.value.status == 400
    assert err.value.message.startswith("messages.1.content.0.type: ")


def _system_texts(body: dict[str, Any]) -> list[str]:
    return [b["text"] for b in body["system"]]


def test_anthropic_translated_folds_system_messages_and_keeps_claude_code_fields() -> None:
    body, headers = _translated(ANTHROPIC, "claude-sonnet-4-6")
    assert _system_texts(body) == ["You are Claude Code.", AGENTS, "Be brief."]
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["thinking"] == {"type": "adaptive"}
    assert body["context_management"] == CONTEXT
    assert body["output_config"] == {"effort": "high"}
    assert body["max_tokens"] == 32000
    assert headers["anthropic-beta"] == BETA
    assert headers["anthropic-version"] == API_VERSION


def test_anthropic_fast_path_folds_system_messages_and_passes_headers() -> None:
    req = _request("claude-sonnet-4-6")
    via = Passthrough(HEADERS, "vendor-key", "http://vendor", None)  # type: ignore[arg-type]
    call = ANTHROPIC.passthrough_request(_body(), req, via)
    body = orjson.loads(call.body)
    assert _system_texts(body) == ["You are Claude Code.", AGENTS, "Be brief."]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["context_management"] == CONTEXT and body["thinking"] == {"type": "adaptive"}
    assert call.headers["anthropic-beta"] == BETA
    assert call.headers["anthropic-version"] == "2023-06-01"
    assert call.headers["x-api-key"] == "vendor-key"


def test_fast_path_body_without_system_messages_is_sent_as_it_came() -> None:
    body = _body()
    body["messages"] = [m for m in body["messages"] if m["role"] != "system"]
    via = Passthrough(HEADERS, "vendor-key", "http://vendor", None)  # type: ignore[arg-type]
    call = ANTHROPIC.passthrough_request(body, _request("claude-sonnet-4-6"), via)
    assert orjson.loads(call.body) == {**body, "model": "claude-sonnet-4-6"}


DEEPSEEK_THINKING = {"type": "enabled"}
CLAUDE_CODE_ONLY = ("context_management", "output_config", "thinking", "metadata", "system")


@pytest.mark.parametrize(
    ("vendor", "model"),
    [(OPENAI, "gpt-4o"), (OPENAI, "gpt-5"), (XAI, "grok-4.3"), (DEEPSEEK, "deepseek-v4-flash")],
)
def test_openai_compatible_keeps_system_messages_in_place(vendor: Any, model: str) -> None:
    body, headers = _translated(vendor, model)
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "system", "assistant", "system", "user"]
    assert body["messages"][2]["content"] == AGENTS
    assert body["messages"][4]["content"] == "Be brief."
    # (DeepSeek's own `thinking` switch is its wire's, not the Anthropic object.)
    assert not [k for k in CLAUDE_CODE_ONLY if k in body and body[k] != DEEPSEEK_THINKING]
    assert not [h for h in headers if h.startswith("anthropic-")]
    if model == "gpt-5":  # a reasoning model: the effort Claude Code asked for
        assert body["reasoning_effort"] == "high"


def test_gemini_folds_system_messages_into_system_instruction() -> None:
    body, headers = _translated(GEMINI, "gemini-2.5-flash")
    text = body["systemInstruction"]["parts"][0]["text"]
    assert text == "\n\n".join(["You are Claude Code.", AGENTS, "Be brief."])
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert not [k for k in ("context_management", "output_config", "thinking") if k in body]
    assert not [h for h in headers if h.startswith("anthropic-")]
    # Adaptive thinking: Gemini's dynamic budget (the model decides, as with adaptive).
    assert body["generationConfig"]["thinkingConfig"]["thinkingBudget"] == -1
