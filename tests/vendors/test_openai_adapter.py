"""OpenAI Chat Completions adapter: recorded bytes → golden IR events; IR → request body; errors."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paths import RECORDINGS
from tokenrelay import ir
from tokenrelay.errors import GatewayError
from tokenrelay.vendors.base import UpstreamRequest, Vendor
from tokenrelay.vendors.openai import OPENAI


def _recordings_dir() -> Path:
    return RECORDINGS


REC = _recordings_dir()
CHUNKINGS = [1, 7, None]  # None = the whole body in one feed


def sse(name: str) -> bytes:
    return (REC / f"{name}.sse").read_bytes()


def recorded(name: str) -> dict[str, Any]:
    return orjson.loads((REC / f"{name}.json").read_bytes())


def decode(vendor: Vendor, data: bytes, step: int | None) -> list[ir.Event]:
    decoder = vendor.stream_decoder(UpstreamRequest("POST", "http://upstream", {}, b""))
    step = step or len(data)
    events: list[ir.Event] = []
    for i in range(0, len(data), step):
        events += decoder.feed(data[i : i + step])
    return events + decoder.close()


def body_of(vendor: Vendor, req: ir.Request, model: str | None = None) -> dict[str, Any]:
    call = vendor.build_request(req, model or req.model, api_key="sk-test", base_url="https://u/v1")
    return orjson.loads(call.body)


def text_run(index: int, kind: ir.DeltaKind, tokens: list[str]) -> list[ir.Event]:
    return [ir.Delta(index, kind, t) for t in tokens]


# ----------------------------------------------------------------------------- streams

TEXT_TOKENS = [
    "I'm", " unable", " to", " provide", " real", "-time", " weather", " updates", ".", " To",
    " get", " the", " current", " weather", " in", " San", " Francisco", ",", " I", " recommend",
    " checking", " a", " reliable", " weather", " website", " or", " a", " weather", " app", ".",
]  # fmt: skip

TEXT_STREAM_GOLDEN: list[ir.Event] = [
    ir.Start("chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL", "gpt-4o-2024-08-06"),
    ir.BlockStart(0, "text"),
    *text_run(0, "text", TEXT_TOKENS),
    ir.BlockStop(0),
    ir.Finish("end_turn"),
    ir.Usage(input=14, output=30, cache_read=0, reasoning=0),
]

TOOL_STREAM_GOLDEN: list[ir.Event] = [
    ir.Start("chatcmpl-ABfwERreu9s99xXsVuOWtIB2UOx62", "gpt-4o-2024-08-06"),
    ir.BlockStart(0, "tool_call", tool_call_id="call_4XzlGBLtUe9dy3GVNV4jhq7h", name="get_weather"),
    *text_run(0, "arguments", ['{"', "city", '":"', "New", " York", " City", '"}']),
    ir.BlockStop(0),
    ir.Finish("tool_use"),
    ir.Usage(input=44, output=16, cache_read=0, reasoning=0),
]

MIDSTREAM_GOLDEN: list[ir.Event] = [
    ir.Start("chatcmpl-BxQ3vZ8kLr2mN9pT4sW6yA1cE5gH", "gpt-4o-2024-08-06"),
    ir.BlockStart(0, "text"),
    *text_run(0, "text", ["Once", " upon", " a", " time", ","]),
    ir.Error(
        "api_error",
        "The server had an error processing your request. Sorry about that! You can retry your "
        "request, or contact us through our help center at help.openai.com if you keep seeing "
        "this error.",
        500,
    ),
]

GOLDEN = {
    "openai__text_stream": TEXT_STREAM_GOLDEN,
    "openai__tool_call_stream": TOOL_STREAM_GOLDEN,
    "openai__midstream_error": MIDSTREAM_GOLDEN,
}


@pytest.mark.parametrize("step", CHUNKINGS)
@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_stream_golden_events(name: str, step: int | None) -> None:
    assert decode(OPENAI, sse(name), step) == GOLDEN[name]


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(GOLDEN)), cuts=st.lists(st.integers(0, 10_000), max_size=30))
def test_stream_any_chunking(name: str, cuts: list[int]) -> None:
    data = sse(name)
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    decoder = OPENAI.stream_decoder(UpstreamRequest("POST", "u", {}, b""))
    events: list[ir.Event] = []
    for a, b in itertools.pairwise(bounds):
        events += decoder.feed(data[a:b])
    assert events + decoder.close() == GOLDEN[name]


def test_fold_text_stream() -> None:
    resp = ir.fold(decode(OPENAI, sse("openai__text_stream"), 7))
    assert resp.content == [ir.Text("".join(TEXT_TOKENS))]
    assert resp.stop_reason == "end_turn"
    assert (resp.usage.input, resp.usage.output, resp.usage.cache_read) == (14, 30, 0)


def test_fold_tool_stream_has_complete_arguments() -> None:
    resp = ir.fold(decode(OPENAI, sse("openai__tool_call_stream"), 1))
    assert resp.content == [
        ir.ToolCall("call_4XzlGBLtUe9dy3GVNV4jhq7h", "get_weather", '{"city":"New York City"}')
    ]
    assert orjson.loads(resp.content[0].arguments) == {"city": "New York City"}  # type: ignore[union-attr]
    assert resp.stop_reason == "tool_use"


def test_midstream_error_is_terminal_and_fold_keeps_partial_text() -> None:
    data = sse("openai__midstream_error") + b"data: [DONE]\n\n" + b'data: {"choices":[]}\n\n'
    events = decode(OPENAI, data, None)
    assert events == MIDSTREAM_GOLDEN
    resp = ir.fold(events)
    assert resp.content == [ir.Text("Once upon a time,")]
    assert resp.error is not None and resp.stop_reason is None


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    obj = {
        "id": "c1",
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _call(i: int, args: str, id_: str | None = None, name: str | None = None) -> dict[str, Any]:
    frag: dict[str, Any] = {"index": i, "function": {"arguments": args}}
    if id_:
        frag["id"], frag["type"], frag["function"]["name"] = id_, "function", name
    return {"tool_calls": [frag]}


def test_parallel_tool_calls_become_sequential_blocks() -> None:
    data = b"".join([
        _chunk({"role": "assistant", "content": "Let me check."}),
        _chunk(_call(0, "", "call_a", "get_weather")),
        _chunk(_call(0, '{"city":"Paris"}')),
        _chunk(_call(1, '{"city":', "call_b", "get_time")),
        _chunk(_call(1, '"Rome"}')),
        _chunk(_call(0, "late")),  # a fragment for a closed call: must not crash or corrupt
        _chunk({}, "tool_calls"),
        b"data: [DONE]\n\n",
    ])  # fmt: skip
    events = decode(OPENAI, data, 5)
    assert events == [
        ir.Start("c1", "m"),
        ir.BlockStart(0, "text"),
        ir.Delta(0, "text", "Let me check."),
        ir.BlockStop(0),
        ir.BlockStart(1, "tool_call", tool_call_id="call_a", name="get_weather"),
        ir.Delta(1, "arguments", '{"city":"Paris"}'),
        ir.BlockStop(1),
        ir.BlockStart(2, "tool_call", tool_call_id="call_b", name="get_time"),
        ir.Delta(2, "arguments", '{"city":'),
        ir.Delta(2, "arguments", '"Rome"}'),
        ir.BlockStop(2),
        ir.Finish("tool_use"),
    ]


def test_refusal_stream_becomes_text_and_refusal_stop() -> None:
    data = _chunk({"role": "assistant", "refusal": "I can't"}) + _chunk({}, "stop")
    assert decode(OPENAI, data, None) == [
        ir.Start("c1", "m"),
        ir.BlockStart(0, "text"),
        ir.Delta(0, "text", "I can't"),
        ir.BlockStop(0),
        ir.Finish("refusal"),
    ]


def test_malformed_chunk_and_cut_stream() -> None:
    assert decode(OPENAI, b"data: {not json\n\n", None) == [
        ir.Error("api_error", "The upstream provider sent a malformed response.", 502)
    ]
    # A body cut without a final blank line: close() flushes it, and invents no Finish.
    assert decode(OPENAI, _chunk({"content": "hi"}).rstrip(b"\n"), 3) == [
        ir.Start("c1", "m"),
        ir.BlockStart(0, "text"),
        ir.Delta(0, "text", "hi"),
    ]


# ----------------------------------------------------------------------------- non-stream


def test_parse_text_response() -> None:
    body = orjson.dumps(recorded("openai__text")["response"]["body"])
    text = recorded("openai__text")["response"]["body"]["choices"][0]["message"]["content"]
    assert OPENAI.parse_response(body) == [
        ir.Start("chatcmpl-ABfvaueLEMLNYbT8YzpJxsmiQ6HSY", "gpt-4o-2024-08-06"),
        ir.BlockStart(0, "text"),
        ir.Delta(0, "text", text),
        ir.BlockStop(0),
        ir.Usage(input=14, output=37, cache_read=0, reasoning=0),
        ir.Finish("end_turn"),
    ]


def test_parse_tool_call_response() -> None:
    body = orjson.dumps(recorded("openai__tool_call")["response"]["body"])
    assert OPENAI.parse_response(body) == [
        ir.Start("chatcmpl-ABfvx6Z4dchiW2nya1N8KMsHFrQRE", "gpt-4o-2024-08-06"),
        ir.BlockStart(
            0, "tool_call", tool_call_id="call_Y6qJ7ofLgOrBnMD5WbVAeiRV", name="GetWeatherArgs"
        ),
        ir.Delta(0, "arguments", '{"city":"Edinburgh","country":"UK","units":"c"}'),
        ir.BlockStop(0),
        ir.Usage(input=76, output=24, cache_read=0, reasoning=0),
        ir.Finish("tool_use"),
    ]


def test_parse_response_usage_with_cache_and_refusal() -> None:
    body = {
        "id": "x", "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": None, "refusal": "No."}}],
        "usage": {"prompt_tokens": 1117, "completion_tokens": 46,
                  "prompt_tokens_details": {"cached_tokens": 1024},
                  "completion_tokens_details": {"reasoning_tokens": 10}},
    }  # fmt: skip
    events = OPENAI.parse_response(orjson.dumps(body))
    assert events[-2:] == [
        ir.Usage(input=93, output=46, cache_read=1024, reasoning=10),
        ir.Finish("refusal"),
    ]
    assert ir.fold(events).content == [ir.Text("No.")]


def test_parse_response_garbage_does_not_crash() -> None:
    assert OPENAI.parse_response(b"<html>") == [
        ir.Error("api_error", "The upstream provider sent a malformed response.", 502)
    ]


# ----------------------------------------------------------------------------- requests


def test_recorded_tool_call_stream_request() -> None:
    rec = orjson.loads((REC / "openai__tool_call_stream.request.json").read_bytes())
    req = ir.Request(
        model="gpt-4o-2024-08-06",
        messages=[ir.Message("user", [ir.Text("what's the weather in NYC?")])],
        tools=[
            ir.Tool("get_weather", parameters=rec["body"]["tools"][0]["function"]["parameters"])
        ],
        stream=True,
    )
    call = OPENAI.build_request(
        req, "gpt-4o-2024-08-06", api_key="sk-x", base_url="https://api.openai.com/v1/"
    )
    assert call.url == rec["url"]
    assert call.method == "POST"
    assert call.headers == {"authorization": "Bearer sk-x", "content-type": "application/json"}
    assert orjson.loads(call.body) == rec["body"]


def test_recorded_strict_tool_request() -> None:
    rec = recorded("openai__tool_call")["request"]["body"]
    fn = rec["tools"][0]["function"]
    req = ir.Request(
        model="gpt-4o-2024-08-06",
        messages=[ir.Message("user", [ir.Text("What's the weather like in Edinburgh?")])],
        tools=[ir.Tool(fn["name"], parameters=fn["parameters"], strict=True)],
    )
    assert body_of(OPENAI, req) == rec


def full_request(**overrides: Any) -> ir.Request:
    req = ir.Request(
        model="gpt-4o",
        system=[ir.Text("You are terse."), ir.Text("Answer in English.")],
        messages=[
            ir.Message("user", [
                ir.Text("Weather in Paris? See the photo."),
                ir.Image(media_type="image/png", data="iVBORw0K"),
                ir.Image(url="https://example.com/p.jpg"),
            ]),
            ir.Message("assistant", [
                ir.Thinking("User wants weather.", signature="sig"),
                ir.RedactedThinking("opaque"),
                ir.Text("Checking."),
                ir.ToolCall("call_1", "get_weather", '{"city":"Paris"}'),
            ]),
            ir.Message("user", [
                ir.ToolResult("call_1", [ir.Text("18°C, sunny")]),
                ir.Text("And tomorrow?"),
                ir.Document(
                    "base64", media_type="application/pdf", data="JVBERi0", filename="f.pdf"
                ),
            ]),
        ],
        tools=[ir.Tool("get_weather", "Weather by city", {"type": "object", "properties": {}})],
        tool_choice=ir.ToolChoice("tool", "get_weather", disable_parallel=True),
        max_tokens=512, temperature=0.2, top_p=0.9, stop=["END"], user="u-1",
        thinking=ir.ThinkingConfig(enabled=True, budget_tokens=4000),
        response_format={"type": "json_schema", "name": "w", "schema": {"type": "object"},
                         "strict": True},
    )  # fmt: skip
    for key, value in overrides.items():
        setattr(req, key, value)
    return req


EXPECTED_MESSAGES = [
    {"role": "system", "content": "You are terse.\n\nAnswer in English."},
    {"role": "user", "content": [
        {"type": "text", "text": "Weather in Paris? See the photo."},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/p.jpg"}},
    ]},
    {"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
    ]},
    {"role": "tool", "tool_call_id": "call_1", "content": "18°C, sunny"},
    {"role": "user", "content": [
        {"type": "text", "text": "And tomorrow?"},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0",
                                  "filename": "f.pdf"}},
    ]},
]  # fmt: skip


def test_full_request_body() -> None:
    assert body_of(OPENAI, full_request()) == {
        "model": "gpt-4o",
        "messages": EXPECTED_MESSAGES,
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Weather by city",
            "parameters": {"type": "object", "properties": {}}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "max_completion_tokens": 512,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END"],
        "user": "u-1",
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "w", "schema": {"type": "object"},
                                            "strict": True}},
    }  # fmt: skip


def test_reasoning_model_gets_effort_and_no_sampling() -> None:
    body = body_of(OPENAI, full_request(model="o3-mini"))
    assert body["reasoning_effort"] == "medium"  # budget 4000
    assert "temperature" not in body and "top_p" not in body
    assert body["max_completion_tokens"] == 512 and "max_tokens" not in body
    for budget, effort in [(1024, "low"), (2048, "low"), (8192, "medium"), (20000, "high")]:
        req = full_request(thinking=ir.ThinkingConfig(enabled=True, budget_tokens=budget))
        assert body_of(OPENAI, req, "gpt-5")["reasoning_effort"] == effort
    req = full_request(thinking=ir.ThinkingConfig(effort="max"))
    assert body_of(OPENAI, req, "o4-mini")["reasoning_effort"] == "high"
    # Non-reasoning models never see reasoning_effort and keep their sampling.
    body = body_of(OPENAI, full_request(), "gpt-5-chat-latest")
    assert "reasoning_effort" not in body and body["temperature"] == 0.2


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (ir.ToolChoice("auto"), "auto"),
        (ir.ToolChoice("any"), "required"),
        (ir.ToolChoice("none"), "none"),
        (ir.ToolChoice("tool", "f"), {"type": "function", "function": {"name": "f"}}),
    ],
)
def test_tool_choice(choice: ir.ToolChoice, expected: object) -> None:
    body = body_of(OPENAI, full_request(tool_choice=choice))
    assert body["tool_choice"] == expected
    assert "parallel_tool_calls" not in body


def test_minimal_request_omits_unset_fields() -> None:
    req = ir.Request(model="gpt-4o", messages=[ir.Message("user", [ir.Text("Hi")])])
    assert body_of(OPENAI, req) == {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Hi"}],
    }


def test_stream_always_asks_for_usage_and_extras_pass_through() -> None:
    req = ir.Request(
        model="gpt-4o", messages=[ir.Message("user", [ir.Text("Hi")])], stream=True,
        extras={"seed": 7, "logprobs": True, "n": 1, "service_tier": "flex", "metadata": {"a": 1},
                "stream_options": {"include_usage": False, "include_obfuscation": False}},
        extras_format="openai",
    )  # fmt: skip
    body = body_of(OPENAI, req)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True, "include_obfuscation": False}
    assert (body["seed"], body["logprobs"], body["n"], body["service_tier"]) == (7, True, 1, "flex")
    assert "metadata" not in body
    # Anthropic-format extras are never forwarded to an OpenAI-compatible vendor.
    req.extras_format, req.stream = "anthropic", False
    assert body_of(OPENAI, req) == {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Hi"}],
    }


def test_tool_result_images_and_errors_keep_order() -> None:
    req = ir.Request(model="gpt-4o", messages=[
        ir.Message("assistant", [ir.ToolCall("c1", "shot", "{}"), ir.ToolCall("c2", "f", "")]),
        ir.Message("user", [
            ir.ToolResult("c1", [ir.Text("here"), ir.Image(url="https://x/s.png")]),
            ir.ToolResult("c2", [ir.Text("boom")], is_error=True),
        ]),
    ])  # fmt: skip
    assert body_of(OPENAI, req)["messages"] == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "shot", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "here"},
        {"role": "tool", "tool_call_id": "c2", "content": "boom"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/s.png"}}]},
    ]  # fmt: skip


def test_document_by_url_is_a_client_error() -> None:
    req = ir.Request(
        model="gpt-4o", messages=[ir.Message("user", [ir.Document("url", url="https://x/a.pdf")])]
    )
    with pytest.raises(GatewayError) as exc:
        body_of(OPENAI, req)
    assert exc.value.status == 400


# ----------------------------------------------------------------------------- errors


def test_recorded_rate_limit() -> None:
    resp = recorded("openai__error_rate_limit")["response"]
    err = OPENAI.parse_error(resp["status"], orjson.dumps(resp["body"]), resp["headers"])
    assert (err.kind, err.http_status, err.retry_after) == ("rate_limit", 429, 3.0)
    assert err.message.startswith("Rate limit reached for gpt-4o")


def test_recorded_unsupported_parameter_keeps_message_and_param() -> None:
    resp = recorded("openai__error_unsupported_parameter")["response"]
    err = OPENAI.parse_error(resp["status"], orjson.dumps(resp["body"]), resp["headers"])
    assert (err.kind, err.http_status) == ("invalid_request", 400)
    assert err.message == resp["body"]["error"]["message"]
    assert (err.param, err.code) == ("max_tokens", "unsupported_parameter")


def _openai_error(message: str, type_: str, code: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


@pytest.mark.parametrize(
    ("status", "body", "kind", "client_status"),
    [
        (401, _openai_error("Incorrect API key provided: sk-abc***xyz.", "invalid_request_error",
                            "invalid_api_key"), "api_error", 502),
        (403, _openai_error("Country not supported", "request_forbidden",
                            "unsupported_country_region_territory"), "api_error", 502),
        (429, _openai_error("You exceeded your current quota", "insufficient_quota",
                            "insufficient_quota"), "api_error", 502),
        (404, _openai_error("The model `gpt-9` does not exist", "invalid_request_error",
                            "model_not_found"), "not_found", 404),
        (422, _openai_error("Unprocessable", "invalid_request_error"), "invalid_request", 400),
        (500, _openai_error("The server had an error", "server_error"), "api_error", 500),
        (503, _openai_error("That model is currently overloaded", "server_error"), "overloaded",
         503),
        (504, b"", "timeout", 504),
        (502, b"<html><body>Bad gateway</body></html>", "api_error", 502),
    ],
)  # fmt: skip
def test_error_statuses(status: int, body: bytes, kind: str, client_status: int) -> None:
    err = OPENAI.parse_error(status, body, {})
    assert (err.kind, err.http_status) == (kind, client_status)
    assert "sk-" not in err.message and "***" not in err.message
    assert "<html>" not in err.message


def test_retry_after_ms_wins() -> None:
    err = OPENAI.parse_error(429, b"{}", {"retry-after-ms": "1500", "retry-after": "9"})
    assert err.retry_after == 1.5


def test_no_count_tokens_endpoint() -> None:
    req = ir.Request(model="gpt-4o", messages=[])
    assert OPENAI.build_count_tokens(req, "gpt-4o", api_key="k", base_url="https://u") is None
    with pytest.raises(NotImplementedError):
        OPENAI.parse_count_tokens(b"{}")


@pytest.mark.parametrize(
    ("error", "limit"),
    [
        ({"type": "tokens", "message": "Rate limit reached on tokens per min (TPM)"}, "tokens"),
        ({"type": "requests", "message": "Rate limit reached for requests per min"}, "requests"),
        ({"message": "Rate limit reached for gpt-4o on tokens per min (TPM)"}, "tokens"),
        ({"message": "Slow down"}, None),
    ],
)
def test_429_says_which_limit(error: dict[str, Any], limit: str | None) -> None:
    err = OPENAI.parse_error(429, orjson.dumps({"error": error}), {})
    assert (err.kind, err.http_status, err.limit) == ("rate_limit", 429, limit)
