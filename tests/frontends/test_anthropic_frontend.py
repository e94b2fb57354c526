"""The Anthropic Messages codec: request → IR, IR → SSE / JSON / errors, checked through the
official anthropic SDK."""

from __future__ import annotations

import copy
from typing import Any

import anthropic
import orjson
import pytest
from frontend_harness import (
    ERROR_KINDS,
    anthropic_client,
    midstream_error_events,
    render_stream,
    text_events,
    thinking_events,
    tool_events,
)

from tokenrelay import ir
from tokenrelay.errors import GatewayError
from tokenrelay.frontends.anthropic.frontend import ANTHROPIC_FRONTEND, AnthropicStreamRenderer

FULL_BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look", "citations": [{"type": "char_location"}]},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"},
                },
                {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                {
                    "type": "document",
                    "title": "T",
                    "citations": {"enabled": True},
                    "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "redacted_thinking", "data": "red"},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris", "days": 2},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "is_error": True,
                    "content": [{"type": "text", "text": "boom"}],
                },
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "ok"},
            ],
        },
    ],
    "tools": [
        {
            "name": "get_weather",
            "description": "Weather",
            "cache_control": {"type": "ephemeral"},
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    ],
    "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
    "thinking": {"type": "enabled", "budget_tokens": 2048, "display": "summarized"},
    "output_config": {
        "effort": "high",
        "format": {"type": "json_schema", "schema": {"type": "object"}},
    },
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 40,
    "stop_sequences": ["END"],
    "stream": True,
    "metadata": {"user_id": "u-7"},
    "service_tier": "auto",
    "container": "c-1",
    "context_management": {"edits": []},
}


def expected_full_request() -> ir.Request:
    return ir.Request(
        model="claude-sonnet-4-5",
        max_tokens=1024,
        system=[ir.Text("Be brief.", cache_control={"type": "ephemeral"})],
        messages=[
            ir.Message(
                "user",
                [
                    ir.Text("Look", citations=[{"type": "char_location"}]),
                    ir.Image(media_type="image/png", data="iVBOR"),
                    ir.Image(url="https://x/y.png"),
                    ir.Document(
                        "base64",
                        media_type="application/pdf",
                        data="JVBE",
                        title="T",
                        extra={"citations": {"enabled": True}},
                    ),
                ],
            ),
            ir.Message(
                "assistant",
                [
                    ir.Thinking("hmm", signature="sig"),
                    ir.RedactedThinking("red"),
                    ir.ToolCall("toolu_1", "get_weather", '{"city":"Paris","days":2}'),
                ],
            ),
            ir.Message(
                "user",
                [
                    ir.ToolResult("toolu_1", [ir.Text("boom")], is_error=True),
                    ir.ToolResult("toolu_2", [ir.Text("ok")]),
                ],
            ),
        ],
        tools=[
            ir.Tool(
                "get_weather",
                "Weather",
                {"type": "object", "properties": {"city": {"type": "string"}}},
                cache_control={"type": "ephemeral"},
            )
        ],
        tool_choice=ir.ToolChoice("tool", name="get_weather", disable_parallel=True),
        thinking=ir.ThinkingConfig(
            enabled=True, budget_tokens=2048, effort="high", display="summarized"
        ),
        response_format={
            "type": "json_schema",
            "name": "response",
            "schema": {"type": "object"},
            "strict": True,
        },
        temperature=0.5,
        top_p=0.9,
        top_k=40,
        stop=["END"],
        stream=True,
        user="u-7",
        extras={"service_tier": "auto", "container": "c-1", "context_management": {"edits": []}},
        extras_format="anthropic",
        passthrough_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
    )


HEADERS = {
    "Anthropic-Beta": "interleaved-thinking-2025-05-14",
    "anthropic-version": "2023-06-01",
    "x-api-key": "secret",
}


# ----------------------------------------------------------------------------------- parsing


def test_full_request_parses_to_exact_ir() -> None:
    assert ANTHROPIC_FRONTEND.parse_request(FULL_BODY, HEADERS) == expected_full_request()


def test_simple_string_content_and_system() -> None:
    req = ANTHROPIC_FRONTEND.parse_request(
        {
            "model": "m",
            "max_tokens": 5,
            "system": "S",
            "messages": [{"role": "user", "content": "hi"}],
        },
        {},
    )
    assert req.system == [ir.Text("S")]
    assert req.messages == [ir.Message("user", [ir.Text("hi")])]
    assert (req.stream, req.extras, req.passthrough_headers) == (False, {}, {})


@pytest.mark.parametrize(
    ("thinking", "expected"),
    [
        ({"type": "disabled"}, ir.ThinkingConfig(enabled=False)),
        (
            {"type": "adaptive", "display": "omitted"},
            ir.ThinkingConfig(enabled=True, adaptive=True, display="omitted"),
        ),
    ],
)
def test_thinking_variants(thinking: dict[str, Any], expected: ir.ThinkingConfig) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [], "thinking": thinking}
    assert ANTHROPIC_FRONTEND.parse_request(body, {}).thinking == expected


def test_server_tools_and_blocks_kept_verbatim_in_extras() -> None:
    server_tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
    custom = {"name": "f", "input_schema": {"type": "object"}, "type": "custom"}
    messages = [
        {"role": "user", "content": "news?"},
        {
            "role": "assistant",
            "content": [
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
                {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
                {"type": "text", "text": "Found."},
            ],
        },
    ]
    body = {"model": "m", "max_tokens": 5, "messages": messages, "tools": [server_tool, custom]}
    req = ANTHROPIC_FRONTEND.parse_request(body, {})
    assert req.tools == [ir.Tool("f", None, {"type": "object"})]
    assert req.extras == {"tools": [server_tool, custom], "messages": messages}
    assert req.messages[1] == ir.Message("assistant", [ir.Text("Found.")])


def test_count_tokens_does_not_require_max_tokens() -> None:
    req = ANTHROPIC_FRONTEND.parse_count_tokens(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, {}
    )
    assert req.max_tokens is None
    with pytest.raises(GatewayError) as exc:
        ANTHROPIC_FRONTEND.parse_count_tokens({"messages": []}, {})
    assert exc.value.param == "model"


def _mutate(path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(FULL_BODY)
    *parents, last = path.split(".")
    target: Any = body
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is _DELETE:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return body


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("max_tokens", _DELETE, "max_tokens: Field required"),
        ("max_tokens", 0, "max_tokens: must be greater than or equal to 1"),
        ("max_tokens", True, "max_tokens: expected an integer"),
        ("model", 3, "model: expected a string"),
        ("messages", {}, "messages: expected a list"),
        ("messages.1.content", 5, "messages.1.content: expected string or list of content blocks"),
        (
            "messages.0.role",
            "tool",
            "messages.0.role: expected one of 'user', 'assistant', 'system'",
        ),
        ("messages.1.content.2.input", "{}", "messages.1.content.2.input: expected an object"),
        (
            "messages.0.content.1.source.type",
            "file",
            "messages.0.content.1.source.type: expected one of 'base64', 'url'",
        ),
        (
            "messages.0.content.0.type",
            "video",
            "messages.0.content.0.type: unsupported content block type 'video'",
        ),
        (
            "messages.2.content.0.tool_use_id",
            _DELETE,
            "messages.2.content.0.tool_use_id: Field required",
        ),
        ("temperature", "hot", "temperature: expected a number"),
        ("temperature", 1.5, "temperature: must be less than or equal to 1"),
        ("top_k", 1.5, "top_k: expected an integer"),
        ("stop_sequences", ["a", 1], "stop_sequences.1: expected a string"),
        ("stream", "yes", "stream: expected a boolean"),
        ("tool_choice", "auto", "tool_choice: expected an object"),
        ("tool_choice.name", _DELETE, "tool_choice.name: Field required"),
        ("thinking.budget_tokens", _DELETE, "thinking.budget_tokens: Field required"),
        ("tools.0.input_schema", _DELETE, "tools.0.input_schema: Field required"),
        ("metadata", {"user_id": "u", "session": 1}, "metadata.session: Extra inputs"),
        ("system", 7, "system: expected string or list of text blocks"),
        ("output_config.format.type", "regex", "output_config.format.type: expected one of"),
    ],
)
def test_validation_errors_name_the_field(path: str, value: Any, message: str) -> None:
    with pytest.raises(GatewayError) as exc:
        ANTHROPIC_FRONTEND.parse_request(_mutate(path, value), {})
    err = exc.value
    assert (err.kind, err.status) == ("invalid_request", 400)
    assert err.message.startswith(message)
    assert err.param == message.split(":")[0]


@pytest.mark.parametrize("body", [[], "x", None, 3])
def test_body_must_be_an_object(body: Any) -> None:
    with pytest.raises(GatewayError) as exc:
        ANTHROPIC_FRONTEND.parse_request(body, {})
    assert exc.value.status == 400


# ------------------------------------------------------------------------- stream rendering

GOLDEN_TEXT_STREAM = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"id":"msg_fixed","type":"message",'
    b'"role":"assistant","model":"m-1","content":[],"stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":11,"cache_creation_input_tokens":2,"cache_read_input_tokens":3,'
    b'"output_tokens":1}}}\n\n'
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'
    b"\n\n"
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
    b'"text":"Hello"}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
    b'"text":" \\"there\\"!"}}\n\n'
    b"event: content_block_stop\n"
    b'data: {"type":"content_block_stop","index":0}\n\n'
    b"event: message_delta\n"
    b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
    b'"usage":{"input_tokens":11,"cache_creation_input_tokens":2,"cache_read_input_tokens":3,'
    b'"output_tokens":6,"cost_usd":"0.000123"}}\n\n'
    b"event: message_stop\n"
    b'data: {"type":"message_stop"}\n\n'
)


def _render(events: list[ir.Event], **extra: Any) -> bytes:
    return render_stream(AnthropicStreamRenderer(request_id="req_1"), events, extra)


def test_golden_text_stream() -> None:
    assert _render(text_events(), cost_usd="0.000123") == GOLDEN_TEXT_STREAM


def test_message_id_is_fresh_when_upstream_id_is_foreign() -> None:
    first = _render(text_events(msg_id="chatcmpl-9"))
    data = orjson.loads(first.split(b"\n")[1][len(b"data: ") :])
    assert data["message"]["id"].startswith("msg_")
    assert len(data["message"]["id"]) == len("msg_") + 32


def test_text_stream_through_sdk() -> None:
    client = anthropic_client(_render(text_events()))
    with client.messages.stream(model="m", max_tokens=5, messages=[]) as stream:
        assert "".join(stream.text_stream) == 'Hello "there"!'
        final = stream.get_final_message()
    assert final.id == "msg_fixed"
    assert final.model == "m-1"
    assert final.stop_reason == "end_turn"
    assert final.content[0].type == "text"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 6)
    assert final.usage.cache_read_input_tokens == 3
    assert final.usage.cache_creation_input_tokens == 2


def test_thinking_stream_through_sdk() -> None:
    client = anthropic_client(_render(thinking_events()))
    with client.messages.stream(model="m", max_tokens=5, messages=[]) as stream:
        final = stream.get_final_message()
    thinking, redacted, text = final.content
    assert thinking.type == "thinking"
    assert (thinking.thinking, thinking.signature) == ("Let me think.", "SIG123==")
    assert redacted.type == "redacted_thinking"
    assert redacted.data == "REDACTED=="
    assert text.type == "text"
    assert text.text == "42"
    assert final.usage.output_tokens == 30


def test_parallel_tool_calls_through_sdk() -> None:
    raw = _render(tool_events())
    client = anthropic_client(raw)
    with client.messages.stream(model="m", max_tokens=5, messages=[]) as stream:
        final = stream.get_final_message()
    assert final.id.startswith("msg_")
    assert final.stop_reason == "tool_use"
    text, call_a, call_b = final.content
    assert text.type == "text"
    assert text.text == "Checking."
    assert call_a.type == "tool_use"
    assert (call_a.id, call_a.name, call_a.input) == ("call_a", "get_weather", {"city": "Paris"})
    assert call_b.type == "tool_use"
    assert call_b.input == {"tz": "Europe/Paris", "fmt": 24}
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens) == (100, 50)
    # Block indexes are contiguous and the Gemini signature never reaches the client.
    assert b'"index":1,"content_block"' in raw
    assert b'"index":2,"content_block"' in raw
    assert b"sig" not in raw


def test_midstream_error_raises_in_sdk() -> None:
    raw = _render(midstream_error_events())
    assert raw.endswith(
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
        b'"message":"Overloaded"},"request_id":"req_1"}\n\n'
    )
    assert b"message_stop" not in raw
    client = anthropic_client(raw)
    seen: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as exc,
        client.messages.stream(model="m", max_tokens=5, messages=[]) as stream,
    ):
        seen.extend(stream.text_stream)
    assert seen == ["Once upon"]
    assert exc.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_stream_without_finish_or_blockstop_still_terminates_cleanly() -> None:
    events: list[ir.Event] = [
        ir.Start("msg_x", "m"),
        ir.BlockStart(0, "text"),
        ir.Delta(0, "text", "cut"),
    ]
    raw = _render(events)
    assert b'"content_block_stop","index":0' in raw
    final = anthropic_client(raw).messages.create(model="m", max_tokens=5, messages=[], stream=True)
    kinds = [ev.type for ev in final]
    assert kinds[-2:] == ["message_delta", "message_stop"]


# ----------------------------------------------------------------------- non-stream and errors


def test_non_stream_response_through_sdk() -> None:
    resp = ir.fold(thinking_events())
    resp.content.append(ir.ToolCall("toolu_9", "f", '{"a": [1, 2]}'))
    resp.content.append(ir.ToolCall("toolu_10", "g", '{"cut": "of'))  # truncated arguments
    resp.usage.cache_write, resp.usage.cache_write_1h = 10, 4
    resp.stop_reason = None  # cut off: rendered as end_turn
    body = ANTHROPIC_FRONTEND.render_response(resp, request_id="r", extra_usage={"cost_usd": "1"})
    assert body["usage"]["cost_usd"] == "1"
    msg = anthropic_client(body).messages.create(model="m", max_tokens=5, messages=[])
    assert msg.id == "msg_think"
    assert msg.stop_reason == "end_turn"
    types = [block.type for block in msg.content]
    assert types == ["thinking", "redacted_thinking", "text", "tool_use", "tool_use"]
    assert msg.content[0].signature == "SIG123=="  # type: ignore[union-attr]
    assert msg.content[3].input == {"a": [1, 2]}  # type: ignore[union-attr]
    assert msg.content[4].input == {}  # type: ignore[union-attr]
    assert msg.usage.cache_creation_input_tokens == 10
    assert msg.usage.cache_creation is not None
    assert msg.usage.cache_creation.ephemeral_1h_input_tokens == 4
    assert msg.usage.cache_creation.ephemeral_5m_input_tokens == 6


EXPECTED_ERRORS: dict[str, tuple[int, str, type[anthropic.APIStatusError]]] = {
    "invalid_request": (400, "invalid_request_error", anthropic.BadRequestError),
    "authentication": (401, "authentication_error", anthropic.AuthenticationError),
    "permission": (403, "permission_error", anthropic.PermissionDeniedError),
    "not_found": (404, "not_found_error", anthropic.NotFoundError),
    "request_too_large": (413, "request_too_large", anthropic.APIStatusError),
    "rate_limit": (429, "rate_limit_error", anthropic.RateLimitError),
    "billing": (402, "billing_error", anthropic.APIStatusError),
    "overloaded": (529, "overloaded_error", anthropic.OverloadedError),
    "timeout": (504, "timeout_error", anthropic.InternalServerError),
    "api_error": (502, "api_error", anthropic.InternalServerError),
}


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_error_bodies_raise_matching_sdk_exception(kind: ir.ErrorKind) -> None:
    status, error_type, exc_class = EXPECTED_ERRORS[kind]
    err = GatewayError(kind, f"{kind} happened", 502 if kind == "api_error" else 400)
    got_status, body = ANTHROPIC_FRONTEND.render_error(err)
    assert got_status == status
    assert body == {"type": "error", "error": {"type": error_type, "message": f"{kind} happened"}}
    client = anthropic_client(body, status=status)
    with pytest.raises(exc_class) as exc:
        client.messages.create(model="m", max_tokens=5, messages=[])
    assert exc.value.status_code == status
    assert exc.value.body["error"]["type"] == error_type  # type: ignore[index]


def test_api_error_below_500_is_rendered_as_500() -> None:
    status, _ = ANTHROPIC_FRONTEND.render_error(GatewayError("api_error", "x", 200))
    assert status == 500
