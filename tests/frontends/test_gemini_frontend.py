"""The Gemini generateContent codec: request → IR, IR events → what the google-genai SDK reads,
the route, and the fast path's stream scan."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.genai import types

from tokenrelay import ir
from tokenrelay.errors import GatewayError
from tokenrelay.frontends.gemini.frontend import (
    GEMINI_FRONTEND,
    route,
    route_payload,
)
from tokenrelay.frontends.gemini.parse import (
    REDACTED,
    json_schema,
    unwrap_signature,
    wrap_signature,
)
from tokenrelay.sse import Framing, SSEParser
from tokenrelay.vendors.gemini import GEMINI

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gemini_cli"


def parse(body: dict[str, Any]) -> ir.Request:
    return GEMINI_FRONTEND.parse_request({"model": "m", **body}, {})


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "parts": list(parts)}


# ------------------------------------------------------------------------------------ route


def test_route_takes_model_and_method_from_the_path() -> None:
    r = route("/api/proxy/v1beta/models/gemini-2.5-flash:streamGenerateContent")
    assert r is not None and (r.model, r.method) == ("gemini-2.5-flash", "streamGenerateContent")
    r = route("/api/proxy/v1/models/models/claude-sonnet-4-6:countTokens")
    assert r is not None and r.model == "claude-sonnet-4-6"
    assert route("/api/proxy/v1beta/models/x:unknownMethod") is None
    assert route("/api/proxy/v1beta/models/:generateContent") is None
    assert route_payload(r, {}) == {
        "model": "claude-sonnet-4-6",
        "stream": False,
        "framing": "sse",
    }
    stream = route("/api/proxy/v1beta/models/m:streamGenerateContent")
    assert stream is not None
    assert route_payload(stream, {"alt": "sse"}) == {"model": "m", "stream": True, "framing": "sse"}
    # Without alt=sse Gemini streams one JSON array.
    assert route_payload(stream, {})["framing"] == "json_array"
    with pytest.raises(GatewayError) as exc:
        route_payload(stream, {"alt": "media"})
    assert exc.value.status == 400 and exc.value.param == "alt"


_EVENTS: list[ir.Event] = [
    ir.Start("resp_1", "gemini-2.5-flash"),
    ir.BlockStart(0, "text"),
    ir.Delta(0, "text", "Hel"),
    ir.Delta(0, "text", "lo"),
    ir.BlockStop(0),
    ir.Finish("end_turn"),
]


def _stream(framing: Framing, ending: str) -> bytes:
    r = GEMINI_FRONTEND.stream_renderer(request_id="r", include_usage=True, framing=framing)
    out = b"".join(r.render(ev) for ev in _EVENTS)
    if ending == "error":
        return out + r.error(GatewayError("overloaded", "busy", 503))
    return out + r.end(ir.UsageTotals(input=3, output=2), {"cost_usd": "0.000001"})


@pytest.mark.parametrize("ending", ["end", "error"])
def test_json_array_stream_holds_the_sse_streams_chunks(ending: str) -> None:
    """Without alt=sse the same chunks come as one JSON array (Gemini's framing), ended by the
    last chunk or by the error."""
    sse = [json.loads(ev.data) for ev in SSEParser().feed(_stream("sse", ending))]
    array = _stream("json_array", ending)
    assert array.startswith(b"[") and array.endswith(b"]")
    assert json.loads(array) == sse
    assert len(sse) == 3 and ("error" in sse[-1]) == (ending == "error")


def test_json_array_stream_of_an_immediate_error_is_one_item() -> None:
    r = GEMINI_FRONTEND.stream_renderer(request_id="r", include_usage=True, framing="json_array")
    assert json.loads(r.error(GatewayError("overloaded", "busy", 503)))[0]["error"]["code"] == 503


# ------------------------------------------------------------------------------------ parse


def test_gemini_cli_first_turn_parses() -> None:
    body = json.loads((FIXTURES / "first_turn.json").read_text("utf-8"))
    # The body as the CLI sends it: the model and streaming are in the URL, which the intake
    # reads (gateway.intake.take_in); a body that repeats them does not change them.
    req = GEMINI_FRONTEND.parse_request({**body, "stream": True}, {})
    assert not req.stream
    assert req.system and "Gemini CLI" in req.system[0].text
    texts = [p.text for p in req.messages[0].parts if isinstance(p, ir.Text)]
    assert texts[-1] == "TOOL: list the files here"
    names = [t.name for t in req.tools]
    assert "read_file" in names and "list_directory" in names
    read_file = next(t for t in req.tools if t.name == "read_file")
    assert read_file.parameters["type"] == "object" and read_file.parameters["properties"]
    assert req.thinking == ir.ThinkingConfig(enabled=True, budget_tokens=8192)
    assert req.temperature == 1 and req.top_p == 0.95 and req.top_k == 64


def test_gemini_cli_tool_turn_pairs_call_and_response() -> None:
    body = json.loads((FIXTURES / "tool_turn.json").read_text("utf-8"))
    req = GEMINI_FRONTEND.parse_request({**body, "model": "m"}, {})
    call = req.messages[1].parts[0]
    result = req.messages[2].parts[0]
    assert isinstance(call, ir.ToolCall) and isinstance(result, ir.ToolResult)
    assert call.name == "list_directory" and json.loads(call.arguments) == {"dir_path": "."}
    assert result.tool_call_id == call.id and result.name == "list_directory"
    assert result.content == [ir.Text("Directory /tmp/gemini/work is empty.")]


def test_calls_without_ids_pair_by_name_and_cli_prefix_is_removed() -> None:
    req = parse(
        {
            "contents": [
                user({"text": "go"}),
                {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"name": "a", "args": {"x": 1}}},
                        {"functionCall": {"name": "b", "args": {}}},
                        {"functionCall": {"name": "a", "args": {"x": 2}}},
                        {"functionCall": {"name": "c", "id": "c__toolu_9", "args": {}}},
                    ],
                },
                user(
                    {"text": "and?"},
                    {"functionResponse": {"name": "a", "response": {"result": "r1"}}},
                    {"functionResponse": {"name": "a", "response": {"error": "boom"}}},
                    {"functionResponse": {"name": "b", "response": {"n": 3}}},
                    {"functionResponse": {"name": "c", "id": "c__toolu_9", "response": {}}},
                ),
            ]
        }
    )
    calls = req.messages[1].parts
    results = req.messages[2].parts
    assert [c.id for c in calls if isinstance(c, ir.ToolCall)] == [
        "call_1_0",
        "call_1_1",
        "call_1_2",
        "toolu_9",
    ]
    assert isinstance(results[-1], ir.Text)  # tool results first in their turn
    r = [p for p in results if isinstance(p, ir.ToolResult)]
    assert [x.tool_call_id for x in r] == ["call_1_0", "call_1_2", "call_1_1", "toolu_9"]
    assert r[0].content == [ir.Text("r1")] and not r[0].is_error
    assert r[1].content == [ir.Text("boom")] and r[1].is_error
    assert r[2].content == [ir.Text('{"n":3}')]


def test_thought_parts_merge_and_wrapped_signatures_come_back() -> None:
    sig = "EqQBCgIYAhIM+/=="  # an Anthropic-style signature the SDK could not hold raw
    wrapped = wrap_signature(sig)
    url_safe = base64.urlsafe_b64encode(base64.b64decode(wrapped)).decode().rstrip("=")
    req = parse(
        {
            "contents": [
                user({"text": "q"}),
                {
                    "role": "model",
                    "parts": [
                        {"text": "let me ", "thought": True},
                        {"text": "think", "thought": True},
                        {"text": "", "thought": True, "thought_signature": url_safe},
                        {"text": "answer"},
                        {"functionCall": {"name": "f", "id": "t1"}, "thoughtSignature": wrapped},
                    ],
                },
            ]
        }
    )
    thinking, text, call = req.messages[1].parts
    assert thinking == ir.Thinking("let me think", sig)
    two = parse(
        {
            "contents": [
                user({"text": "q"}),
                {
                    "role": "model",
                    "parts": [
                        {"text": "a", "thought": True, "thoughtSignature": wrap_signature("s1")},
                        {"text": "b", "thought": True},
                        {"text": "", "thought": True, "thoughtSignature": wrap_signature("s2")},
                        {
                            "text": "",
                            "thought": True,
                            "thoughtSignature": wrap_signature(REDACTED + "xyz"),
                        },
                    ],
                },
            ]
        }
    )
    assert two.messages[1].parts == [
        ir.Thinking("a", "s1"),
        ir.Thinking("b", "s2"),
        ir.RedactedThinking("xyz"),
    ]
    assert text == ir.Text("answer")
    assert isinstance(call, ir.ToolCall) and call.signature == sig and call.arguments == "{}"
    assert unwrap_signature("not base64!") is None


def test_generation_config_in_either_spelling() -> None:
    for gen in (
        {
            "maxOutputTokens": 77,
            "stopSequences": ["END"],
            "topK": 3,
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object"},
            "thinkingConfig": {"thinkingLevel": "LOW", "includeThoughts": True},
            "seed": 7,
            "candidateCount": 2,
        },
        {
            "max_output_tokens": 77,
            "stop_sequences": ["END"],
            "top_k": 3,
            "response_mime_type": "application/json",
            "response_json_schema": {"type": "object"},
            "thinking_config": {"thinking_level": "low", "include_thoughts": True},
            "seed": 7,
            "candidate_count": 2,
        },
    ):
        req = parse({"contents": [user({"text": "q"})], "generation_config": gen})
        assert req.max_tokens == 77 and req.stop == ["END"] and req.top_k == 3
        assert req.response_format == {
            "type": "json_schema",
            "name": "response",
            "schema": {"type": "object"},
        }
        assert req.thinking == ir.ThinkingConfig(enabled=True, effort="low")
        assert req.extras["generationConfig"] == {"seed": 7, "candidateCount": 2}


@pytest.mark.parametrize(
    ("config", "thinking"),
    [
        ({"thinkingBudget": 0}, ir.ThinkingConfig(enabled=False)),
        ({"thinkingBudget": -1}, ir.ThinkingConfig(enabled=True, adaptive=True)),
        ({"thinkingBudget": 4096}, ir.ThinkingConfig(enabled=True, budget_tokens=4096)),
        ({"includeThoughts": False}, ir.ThinkingConfig(enabled=None)),
    ],
)
def test_thinking_config(config: dict[str, Any], thinking: ir.ThinkingConfig) -> None:
    req = parse({"contents": [user({"text": "q"})], "generationConfig": {"thinkingConfig": config}})
    assert req.thinking == thinking


def test_tools_tool_config_and_server_tools() -> None:
    req = parse(
        {
            "contents": [user({"text": "q"})],
            "tools": [
                {
                    "functionDeclarations": [
                        {
                            "name": "f",
                            "parameters": {
                                "type": "OBJECT",
                                "properties": {
                                    "a": {"type": "STRING", "nullable": True},
                                    "b": {"type": "ARRAY", "items": {"type": "INTEGER"}},
                                },
                                "propertyOrdering": ["a", "b"],
                            },
                        },
                        {"name": "g"},
                    ]
                },
                {"googleSearch": {}},
            ],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["g"]}},
            "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "OFF"}],
        }
    )
    assert req.tools[0].parameters == {
        "type": "object",
        "properties": {
            "a": {"type": ["string", "null"]},
            "b": {"type": "array", "items": {"type": "integer"}},
        },
    }
    assert req.tools[1].parameters == {"type": "object", "properties": {}}
    assert req.tool_choice == ir.ToolChoice("tool", name="g")
    assert req.server_tools and req.extras["tools"] == [{"googleSearch": {}}]
    assert req.extras["safetySettings"][0]["threshold"] == "OFF"
    assert json_schema({"anyOf": [{"type": "NUMBER"}]}) == {"anyOf": [{"type": "number"}]}


def test_media_parts() -> None:
    req = parse(
        {
            "contents": [
                user(
                    {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
                    {"inline_data": {"mime_type": "application/pdf", "data": "BBBB"}},
                    {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x/y.jpg"}},
                    {"fileData": {"fileUri": "gs://b/v.mp4", "mimeType": "video/mp4"}},
                )
            ]
        }
    )
    assert req.messages[0].parts == [
        ir.Image(media_type="image/png", data="AAAA"),
        ir.Document("base64", media_type="application/pdf", data="BBBB"),
        ir.Image(media_type="image/jpeg", url="https://x/y.jpg"),
        ir.Document("url", media_type="video/mp4", url="gs://b/v.mp4"),
    ]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "contents"),
        ({"contents": {}}, "contents"),
        ({"contents": [{"role": "system", "parts": []}]}, "contents.0.role"),
        ({"contents": [user({"bogus": 1})]}, "contents.0.parts.0"),
        ({"contents": [user({"functionCall": {"name": "f"}})]}, "contents.0.parts.0.functionCall"),
        ({"contents": [user({"text": 3})]}, "contents.0.parts.0.text"),
        (
            {"contents": [user({"text": "q"})], "generationConfig": {"temperature": 3}},
            "generationConfig.temperature",
        ),
        (
            {"contents": [user({"text": "q"})], "generationConfig": {"maxOutputTokens": 0}},
            "generationConfig.maxOutputTokens",
        ),
        (
            {
                "contents": [user({"text": "q"})],
                "generationConfig": {"thinkingConfig": {"thinkingLevel": "HUGE"}},
            },
            "generationConfig.thinkingConfig.thinkingLevel",
        ),
        (
            {
                "contents": [user({"text": "q"})],
                "toolConfig": {"functionCallingConfig": {"mode": "X"}},
            },
            "toolConfig.functionCallingConfig.mode",
        ),
    ],
)
def test_bad_bodies_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as exc:
        parse(body)
    assert exc.value.status == 400 and exc.value.param == param
    status, rendered = GEMINI_FRONTEND.render_error(exc.value)
    assert status == 400 and rendered["error"]["status"] == "INVALID_ARGUMENT"
    assert rendered["error"]["message"].startswith(param)


# ----------------------------------------------------------------------------------- render

EVENTS: list[ir.Event] = [
    ir.Start("msg_1", "claude-x"),
    ir.Usage(input=10, cache_read=4),
    ir.BlockStart(0, "thinking"),
    ir.Delta(0, "thinking", "hmm"),
    ir.Delta(0, "signature", "sig+/=="),
    ir.BlockStop(0),
    ir.BlockStart(1, "text"),
    ir.Delta(1, "text", "Hello"),
    ir.Delta(1, "text", " there"),
    ir.BlockStop(1),
    ir.BlockStart(2, "tool_call", tool_call_id="toolu_1", name="f", data="gsig"),
    ir.Delta(2, "arguments", '{"a":'),
    ir.Delta(2, "arguments", "1}"),
    ir.BlockStop(2),
    ir.Usage(output=30, reasoning=8),
    ir.Finish("tool_use"),
]


def sdk_chunks(data: bytes) -> list[types.GenerateContentResponse]:
    return [
        types.GenerateContentResponse._from_response(response=orjson.loads(ev.data), kwargs={})
        for ev in SSEParser().feed(data)
    ]


def test_stream_renders_what_the_sdk_reads() -> None:
    renderer = GEMINI_FRONTEND.stream_renderer(request_id="r", include_usage=False)
    out = b"".join(renderer.render(ev) for ev in EVENTS)
    totals = ir.fold(EVENTS).usage
    out += renderer.end(totals, {"cost_usd": "0.0012"})
    assert out.count(b"\r\n\r\n") == 6
    chunks = sdk_chunks(out)
    parts = [p for c in chunks for p in c.candidates[0].content.parts]
    assert [p.text for p in parts if p.thought] == ["hmm", ""]
    assert base64.b64decode(base64.b64encode(parts[1].thought_signature)) == b"sig+/=="
    assert "".join(c.text or "" for c in chunks) == "Hello there"
    call = next(p for p in parts if p.function_call)
    assert (call.function_call.id, call.function_call.name) == ("toolu_1", "f")
    assert call.function_call.args == {"a": 1} and call.thought_signature == b"gsig"
    last = chunks[-1]
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    u = last.usage_metadata
    assert (u.prompt_token_count, u.cached_content_token_count) == (14, 4)
    assert (u.candidates_token_count, u.thoughts_token_count, u.total_token_count) == (22, 8, 44)
    assert orjson.loads(SSEParser().feed(out)[-1].data)["usageMetadata"]["costUsd"] == "0.0012"
    assert {c.response_id for c in chunks} == {"msg_1"}
    assert {c.model_version for c in chunks} == {"claude-x"}


def test_redacted_thinking_round_trips() -> None:
    events: list[ir.Event] = [
        ir.Start("m", "c"),
        ir.BlockStart(0, "redacted_thinking", data="opaque"),
        ir.BlockStop(0),
        ir.BlockStart(1, "text"),
        ir.Delta(1, "text", "hi"),
        ir.BlockStop(1),
        ir.Finish("end_turn"),
    ]
    renderer = GEMINI_FRONTEND.stream_renderer(request_id="r", include_usage=False)
    streamed = b"".join(renderer.render(ev) for ev in events)
    unary = GEMINI_FRONTEND.render_response(ir.fold(events), request_id="r", extra_usage={})
    for parts in (
        [
            p
            for ev in SSEParser().feed(streamed)
            for p in orjson.loads(ev.data)["candidates"][0]["content"]["parts"]
        ],
        unary["candidates"][0]["content"]["parts"],
    ):
        req = parse({"contents": [user({"text": "q"}), {"role": "model", "parts": parts}]})
        assert req.messages[1].parts == [ir.RedactedThinking("opaque"), ir.Text("hi")]


def test_unary_response_is_the_fold() -> None:
    body = GEMINI_FRONTEND.render_response(
        ir.fold(EVENTS), request_id="r", extra_usage={"cost_usd": "1"}
    )
    assert body["usageMetadata"]["costUsd"] == "1"  # (the SDK drops fields it does not know)
    resp = types.GenerateContentResponse._from_response(response=body, kwargs={})
    parts = resp.candidates[0].content.parts
    assert parts[0].thought and parts[0].text == "hmm"
    assert parts[0].thought_signature == b"sig+/=="
    assert resp.text == "Hello there"
    assert resp.function_calls[0].args == {"a": 1}
    assert resp.usage_metadata.total_token_count == 44


@pytest.mark.parametrize(
    ("stop", "finish"),
    [("max_tokens", "MAX_TOKENS"), ("refusal", "SAFETY"), ("end_turn", "STOP")],
)
def test_finish_reasons(stop: str, finish: str) -> None:
    resp = ir.Response("i", "m", [ir.Text("x")], stop, None, ir.UsageTotals(1, 1))
    body = GEMINI_FRONTEND.render_response(resp, request_id="r", extra_usage={})
    assert body["candidates"][0]["finishReason"] == finish


@pytest.mark.parametrize(
    ("kind", "status", "code", "name"),
    [
        ("invalid_request", 400, 400, "INVALID_ARGUMENT"),
        ("authentication", 401, 401, "UNAUTHENTICATED"),
        ("permission", 403, 403, "PERMISSION_DENIED"),
        ("not_found", 404, 404, "NOT_FOUND"),
        ("request_too_large", 413, 400, "INVALID_ARGUMENT"),
        ("rate_limit", 429, 429, "RESOURCE_EXHAUSTED"),
        ("billing", 402, 402, "FAILED_PRECONDITION"),
        ("overloaded", 529, 503, "UNAVAILABLE"),
        ("timeout", 504, 504, "DEADLINE_EXCEEDED"),
        ("api_error", 502, 502, "UNAVAILABLE"),
        ("api_error", 500, 500, "INTERNAL"),
    ],
)
def test_errors_in_gemini_shape(kind: Any, status: int, code: int, name: str) -> None:
    err = GatewayError(kind, "why", status)
    assert GEMINI_FRONTEND.render_error(err) == (
        code,
        {"error": {"code": code, "message": "why", "status": name}},
    )
    renderer = GEMINI_FRONTEND.stream_renderer(request_id="r", include_usage=False)
    chunk = renderer.error(err)
    assert chunk.startswith(b"data: {") and chunk.endswith(b"\r\n\r\n")
    assert orjson.loads(chunk[6:])["error"]["status"] == name


# ------------------------------------------------------------------------- fast-path scan


def gemini_chunk(text: str, usage: dict[str, int], finish: str | None = None) -> bytes:
    cand: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    body = {"candidates": [cand], "usageMetadata": usage, "responseId": "x"}
    return b"data: " + orjson.dumps(body) + b"\r\n\r\n"


def test_scan_passes_bytes_through_and_holds_the_final_chunk() -> None:
    usages: list[ir.Usage] = []
    scan = GEMINI.passthrough_scan(usages.append, client_usage=False)
    first = gemini_chunk('say "finishReason" twice', {"promptTokenCount": 5})
    last = gemini_chunk(
        "!", {"promptTokenCount": 5, "candidatesTokenCount": 3, "thoughtsTokenCount": 2}, "STOP"
    )
    parser = SSEParser()
    lf = first.replace(b"\r\n", b"\n")  # the SSE parser frames with LF
    assert scan.process(parser.feed(first)) == lf
    assert not scan.done and not usages
    assert scan.process(parser.feed(last)) == b""
    assert scan.done and usages[-1] == ir.Usage(input=5, output=5, cache_read=0, reasoning=2)
    tail = scan.render_tail({"cost_usd": "0.5"})
    held = orjson.loads(tail[6:])
    assert held["usageMetadata"]["costUsd"] == "0.5" and held["responseId"] == "x"
    assert tail.endswith(b"}\n\n")
    deltas = [ev for ev in scan.generated() if isinstance(ev, ir.Delta)]
    assert deltas[0].value.startswith("say")


def test_scan_forwards_a_vendor_error() -> None:
    scan = GEMINI.passthrough_scan(lambda u: None, client_usage=False)
    err = (
        b'data: {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}\r\n\r\n'
    )
    assert scan.process(SSEParser().feed(err)) == err.replace(b"\r\n", b"\n")
    assert scan.failed == "overloaded" and scan.error_forwarded and not scan.done
