"""The Responses frontend on its own: request bodies → IR (what each vendor adapter will be
given), IR events → the event stream and response object the openai SDK's typed models
accept, and the fast path's scan of OpenAI's own stream."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from tokenrelay import ir
from tokenrelay.errors import GatewayError
from tokenrelay.frontends.responses.frontend import RESPONSES_FRONTEND, ResponsesStreamRenderer
from tokenrelay.frontends.responses.parse import Echo, parse_responses_request
from tokenrelay.reasoning.cache import BLOB_PREFIX
from tokenrelay.reasoning.cache import to_blob as reasoning_blob
from tokenrelay.sse import SSEParser
from tokenrelay.upstreams.pools import affinity_key
from tokenrelay.vendors.openai_responses import ResponsesScan, StreamDecoder

CODEX = Path(__file__).parents[1] / "fixtures" / "codex" / "request_stream.json"
_MEMBERS = typing.get_args(typing.get_args(ResponseStreamEvent)[0])
EVENT_TYPES = {typing.get_args(m.model_fields["type"].annotation)[0]: m for m in _MEMBERS}


def parse(body: dict[str, Any]) -> tuple[ir.Request, Echo]:
    return parse_responses_request({"model": "m", **body}, {})


def events_of(out: bytes) -> list[dict[str, Any]]:
    events = [orjson.loads(ev.data) for ev in SSEParser().feed(out)]
    for e in events:
        EVENT_TYPES[e["type"]].model_validate(e)
    return events


# ------------------------------------------------------------------------------------ parse


def test_string_input_and_instructions() -> None:
    req, _ = parse({"input": "hi", "instructions": "Be brief.", "max_output_tokens": 99})
    assert [t.text for t in req.system] == ["Be brief."]
    assert req.messages == [ir.Message("user", [ir.Text("hi")])]
    assert req.max_tokens == 99 and req.extras_format == "responses"


def test_items_group_into_the_turns_vendors_require() -> None:
    blob = reasoning_blob([ir.Thinking("plan", "sig-1")])
    req, _ = parse(
        {
            "input": [
                {"role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
                {"role": "user", "content": "weather?"},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": blob},
                {"role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
                {"type": "function_call", "call_id": "c1", "name": "get", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "get", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sun"},
                {"type": "function_call_output", "call_id": "c2", "output": "rain"},
                {"role": "user", "content": "thanks"},
                {"role": "system", "content": "late rule"},
            ]
        }
    )
    assert [t.text for t in req.system] == ["rules", "late rule"]
    user, assistant, results = req.messages
    assert user.role == "user" and assistant.role == "assistant"
    assert assistant.parts == [
        ir.Thinking("plan", "sig-1"),
        ir.Text("Checking."),
        ir.ToolCall("c1", "get", "{}"),
        ir.ToolCall("c2", "get", "{}"),
    ]
    assert results.role == "user"
    assert results.parts == [
        ir.ToolResult("c1", [ir.Text("sun")], name="get"),
        ir.ToolResult("c2", [ir.Text("rain")], name="get"),
        ir.Text("thanks"),
    ]


def test_redacted_reasoning_round_trips_through_encrypted_content() -> None:
    parts: list[ir.Thinking | ir.RedactedThinking] = [
        ir.RedactedThinking("opaque"),
        ir.Thinking("t", None),
    ]
    blob = reasoning_blob(parts)
    assert blob.startswith(BLOB_PREFIX)
    req, _ = parse(
        {"input": [{"type": "reasoning", "id": "rs", "summary": [], "encrypted_content": blob}]}
    )
    assert req.messages[0].parts == parts


def test_openai_encrypted_reasoning_is_left_to_openai() -> None:
    item = {"type": "reasoning", "id": "rs", "summary": [], "encrypted_content": "gAAAA..."}
    req, _ = parse({"input": [item, {"role": "user", "content": "go"}]})
    assert req.messages[0].parts == []


def test_namespaced_tools_flatten_and_builtins_are_native_only() -> None:
    req, echo = parse(
        {
            "input": "x",
            "tools": [
                {"type": "function", "name": "a", "parameters": {"type": "object"}},
                {
                    "type": "namespace",
                    "name": "ns",
                    "description": "d",
                    "tools": [{"type": "function", "name": "b"}],
                },
                {"type": "web_search", "external_web_access": False},
                {"type": "web_search"},
                {"type": "file_search", "vector_store_ids": ["v"]},
            ],
            "tool_choice": "required",
            "parallel_tool_calls": False,
        }
    )
    assert [t.name for t in req.tools] == ["a", "ns__b"]
    assert echo.namespaces == {"ns"}
    # Codex's default cached search is an offer, dropped; live search and file search are not.
    assert req.native_only == [
        ("tools.3", "the built-in tool 'web_search'"),
        ("tools.4", "the built-in tool 'file_search'"),
    ]
    assert req.tool_choice == ir.ToolChoice("any", disable_parallel=True)


def test_reasoning_text_format_and_echo() -> None:
    req, echo = parse(
        {
            "input": "x",
            "reasoning": {"effort": "high", "summary": "auto"},
            "include": ["reasoning.encrypted_content"],
            "text": {
                "format": {
                    "type": "json_schema",
                    "name": "n",
                    "schema": {"type": "object"},
                    "strict": True,
                }
            },
            "store": True,
            "prompt_cache_key": "pk",
            "metadata": {"a": "b"},
            "user": "u1",
        }
    )
    assert req.thinking == ir.ThinkingConfig(enabled=True, effort="high")
    assert req.response_format == {
        "type": "json_schema",
        "name": "n",
        "schema": {"type": "object"},
        "strict": True,
    }
    assert echo.summary and echo.encrypted and req.user == "u1"
    assert echo.fields["store"] is False  # the gateway keeps nothing
    assert echo.fields["prompt_cache_key"] == "pk" and echo.fields["metadata"] == {"a": "b"}
    off, _ = parse({"input": "x", "reasoning": {"effort": "none"}})
    assert off.thinking == ir.ThinkingConfig(enabled=False)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
        ({"input": "x", "conversation": "conv_1"}, "conversation"),
        ({"input": "x", "background": True}, "background"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input.0.role"),
        ({"input": [{"type": "mystery"}]}, "input.0.type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input.0.content.0.image_url",
        ),
        (
            {
                "input": [
                    {"type": "reasoning", "summary": [], "encrypted_content": BLOB_PREFIX + "!!"}
                ]
            },
            "input.0.encrypted_content",
        ),
        ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "x", "text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({}, "input"),
    ],
)
def test_bad_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as exc:
        parse(body)
    assert exc.value.status == 400 and exc.value.param == param
    assert exc.value.message.startswith(param)


def test_codex_request_parses_and_feeds_pool_affinity() -> None:
    body = orjson.loads(CODEX.read_bytes())["body"]
    req, echo = parse_responses_request(body, {})
    assert req.stream and echo.summary and echo.encrypted
    assert req.system and req.messages[-1].role == "user"
    assert any(t.name.startswith("multi_agent_v1__") for t in req.tools)
    assert req.native_only == []  # the cached web_search Codex always sends is dropped
    same = {**body, "input": []}
    assert affinity_key({}, body) == affinity_key({}, same)  # prompt_cache_key decides
    assert affinity_key({}, body) != affinity_key({}, {**body, "prompt_cache_key": "other"})


# ----------------------------------------------------------------------------------- render


def _answer() -> list[ir.Event]:
    return [
        ir.Start("msg_x", "claude-x"),
        ir.BlockStart(0, "thinking"),
        ir.Delta(0, "thinking", "Let me "),
        ir.Delta(0, "thinking", "think."),
        ir.Delta(0, "signature", "sig"),
        ir.BlockStop(0),
        ir.BlockStart(1, "text"),
        ir.Delta(1, "text", "Hello"),
        ir.Delta(1, "text", " there"),
        ir.BlockStop(1),
        ir.BlockStart(2, "tool_call", tool_call_id="toolu_1", name="ns__lookup"),
        ir.Delta(2, "arguments", '{"q":'),
        ir.Delta(2, "arguments", '"x"}'),
        ir.BlockStop(2),
        ir.Usage(input=10, output=20, cache_read=5, reasoning=4),
        ir.Finish("tool_use"),
    ]


def test_stream_renders_the_typed_event_sequence() -> None:
    echo = Echo(summary=True, encrypted=True, namespaces=frozenset({"ns"}))
    r = ResponsesStreamRenderer(request_id="req_abc", echo=echo)
    usage = ir.UsageTotals()
    out = b""
    for ev in _answer():
        if isinstance(ev, ir.Usage):
            usage.apply(ev)
        out += r.render(ev)
    out += r.end(usage, {"cost_usd": "0.01"})
    events = events_of(out)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = events[-1]["response"]
    Response.model_validate(final)
    assert final["id"] == "resp_abc" and final["model"] == "claude-x"
    reasoning, message, call = final["output"]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Let me think."}]
    req, _ = parse({"input": [reasoning]})
    assert req.messages[0].parts == [ir.Thinking("Let me think.", "sig")]
    assert message["content"][0]["text"] == "Hello there"
    assert (call["name"], call["namespace"], call["call_id"]) == ("lookup", "ns", "toolu_1")
    assert final["usage"] == {
        "input_tokens": 15,
        "input_tokens_details": {"cached_tokens": 5, "cache_write_tokens": 0},
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 4},
        "total_tokens": 35,
        "cost_usd": "0.01",
    }


def test_response_object_equals_the_streamed_final_response() -> None:
    echo = Echo(summary=True, encrypted=True, namespaces=frozenset({"ns"}))
    r = ResponsesStreamRenderer(request_id="req_abc", echo=echo)
    usage = ir.UsageTotals()
    out = b""
    for ev in _answer():
        if isinstance(ev, ir.Usage):
            usage.apply(ev)
        out += r.render(ev)
    streamed = events_of(out + r.end(usage, {}))[-1]["response"]
    body = {
        "model": "m",
        "input": "x",
        "reasoning": {"summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "tools": [{"type": "namespace", "name": "ns", "description": "", "tools": []}],
    }

    req = RESPONSES_FRONTEND.parse_request(body, {})  # as the relay does: parse, then render
    whole = RESPONSES_FRONTEND.render_response(
        ir.fold(_answer()), request_id="req_abc", extra_usage={}, echo=req.echo
    )
    Response.model_validate(whole)
    assert whole["output"] == streamed["output"] and whole["usage"] == streamed["usage"]


def test_summary_and_encrypted_content_only_when_asked() -> None:
    r = ResponsesStreamRenderer(request_id="req_1", echo=Echo())
    out = b"".join(r.render(ev) for ev in _answer()) + r.end(ir.UsageTotals(), {})
    events = events_of(out)
    assert not any("reasoning_summary" in e["type"] for e in events)
    reasoning = events[-1]["response"]["output"][0]
    assert reasoning == {"id": reasoning["id"], "type": "reasoning", "summary": []}


def test_max_tokens_is_incomplete_and_failures_are_typed() -> None:
    r = ResponsesStreamRenderer(request_id="req_1", echo=Echo())
    out = r.render(ir.Start("x", "m")) + r.render(ir.Finish("max_tokens"))
    final = events_of(out + r.end(ir.UsageTotals(), {}))[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}

    started = ResponsesStreamRenderer(request_id="req_1", echo=Echo())
    out = started.render(ir.Start("x", "m"))
    failed = events_of(out + started.error(GatewayError("overloaded", "busy", 503)))[-1]
    assert failed["type"] == "response.failed"
    assert failed["response"]["error"] == {"code": "server_error", "message": "busy"}
    fresh = ResponsesStreamRenderer(request_id="req_1", echo=Echo())
    (error,) = events_of(fresh.error(GatewayError("rate_limit", "slow down", 429)))
    assert error["type"] == "error" and error["code"] == "rate_limit_exceeded"


def test_errors_before_the_answer_use_openais_error_shape() -> None:
    status, body = RESPONSES_FRONTEND.render_error(
        GatewayError("invalid_request", "tools.1: nope", 400, param="tools.1")
    )
    assert status == 400
    assert body == {
        "error": {
            "message": "tools.1: nope",
            "type": "invalid_request_error",
            "param": "tools.1",
            "code": None,
        }
    }


# ----------------------------------------------------------------------------- fast path scan


def _openai_stream() -> bytes:
    from tokenrelay.emulator.openai_responses import responses
    from tokenrelay.emulator.wire import Req

    body = {"model": "o4-mini", "input": "hi", "stream": True, "reasoning": {"summary": "auto"}}
    resp = responses(
        Req("POST", "/openai/v1/responses", {}, {"authorization": "Bearer k"}, orjson.dumps(body))
    )
    assert resp.frames is not None
    return b"".join(resp.frames)


def test_scan_holds_back_the_final_event_and_adds_the_cost() -> None:
    usages: list[ir.Usage] = []
    scan = ResponsesScan(lambda raw: StreamDecoder().feed(raw), usages.append)
    raw = _openai_stream()
    parser = SSEParser()
    out = scan.process(parser.feed(raw[: len(raw) // 2])) + scan.process(
        parser.feed(raw[len(raw) // 2 :])
    )
    assert scan.done and not scan.failed
    assert b"response.completed" not in out and out == raw[: len(out)]
    tail = scan.render_tail({"cost_usd": "0.5"})
    assert out + tail != raw
    final = orjson.loads(tail.split(b"data: ", 1)[1])
    assert final["response"]["usage"]["cost_usd"] == "0.5"
    assert usages[-1].output == final["response"]["usage"]["output_tokens"]
    assert (
        usages[-1].reasoning
        == final["response"]["usage"]["output_tokens_details"]["reasoning_tokens"]
    )
    text = ir.fold(scan.generated())
    assert any(isinstance(p, ir.Text) and p.text for p in text.content)


def test_conversations_without_a_cache_key_keep_their_own_affinity() -> None:
    """Without prompt_cache_key or user, what stays the same turn after turn decides: the
    instructions and the first input item (not one key for every Responses conversation)."""
    first = {"role": "user", "content": "plan a trip"}
    turn1 = {"instructions": "Be brief.", "input": [first]}
    turn2 = {"instructions": "Be brief.", "input": [first, {"role": "user", "content": "more"}]}
    other = {"instructions": "Be brief.", "input": [{"role": "user", "content": "cook"}]}
    assert affinity_key({}, turn1) == affinity_key({}, turn2)
    assert affinity_key({}, turn1) != affinity_key({}, other)
    assert affinity_key({}, {"input": "a"}) != affinity_key({}, {"input": "b"})
