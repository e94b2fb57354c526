"""xAI adapter: recorded bytes → golden IR events (reasoning outside completion_tokens!),
request differences (max_tokens, reasoning_effort, dropped params), `{"code","error"}` errors."""

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
from tokenrelay.vendors.base import UpstreamRequest, Vendor
from tokenrelay.vendors.xai import XAI


def _recordings_dir() -> Path:
    return RECORDINGS


REC = _recordings_dir()
CHUNKINGS = [1, 7, None]


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


def body_of(req: ir.Request, model: str | None = None) -> dict[str, Any]:
    call = XAI.build_request(
        req, model or req.model, api_key="xai-k", base_url="https://api.x.ai/v1"
    )
    return orjson.loads(call.body)


# ----------------------------------------------------------------------------- streams

TEXT_STREAM_GOLDEN: list[ir.Event] = [
    ir.Start("7327b9f5-1c2f-0a15-3fef-c14a71c460d3", "grok-3-mini"),
    ir.BlockStart(0, "thinking"),
    *(ir.Delta(0, "thinking", t) for t in ["First", ",", " the", " user", " said"]),
    ir.BlockStop(0),
    ir.BlockStart(1, "text"),
    ir.Delta(1, "text", "Hello"),
    ir.BlockStop(1),
    ir.Finish("end_turn"),
    # prompt 12 incl. 11 cached; output = completion 1 + reasoning 290 (xAI keeps them apart)
    ir.Usage(input=1, output=291, cache_read=11, reasoning=290),
]

TOOL_STREAM_GOLDEN: list[ir.Event] = [
    ir.Start("de9d896d-e946-b3a7-bb14-75ab33326930", "grok-3-mini"),
    ir.BlockStart(0, "thinking"),
    *(ir.Delta(0, "thinking", t) for t in ["First", ",", " the", " user", " is"]),
    ir.BlockStop(0),
    ir.BlockStart(1, "tool_call", tool_call_id="call_55117580", name="weather"),
    ir.Delta(1, "arguments", '{"location":"San Francisco"}'),  # the whole call in one delta
    ir.BlockStop(1),
    ir.Finish("tool_use"),
    ir.Usage(input=1, output=222, cache_read=290, reasoning=196),
]


def midstream_error_sse(error: bytes) -> bytes:
    """No xAI mid-stream error was recorded: the first real chunks, then an error event in
    xAI's own `{"code","error"}` shape, then (wrongly) more data that must be ignored."""
    head = b"".join(sse("xai__text_stream").split(b"\n\n")[i] + b"\n\n" for i in range(3))
    return head + b"data: " + error + b"\n\n" + b"data: [DONE]\n\n"


MIDSTREAM_HEAD: list[ir.Event] = [
    ir.Start("7327b9f5-1c2f-0a15-3fef-c14a71c460d3", "grok-3-mini"),
    ir.BlockStart(0, "thinking"),
    *(ir.Delta(0, "thinking", t) for t in ["First", ",", " the"]),
]

GOLDEN = {
    "xai__text_stream": TEXT_STREAM_GOLDEN,
    "xai__tool_call_stream": TOOL_STREAM_GOLDEN,
}


@pytest.mark.parametrize("step", CHUNKINGS)
@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_stream_golden_events(name: str, step: int | None) -> None:
    assert decode(XAI, sse(name), step) == GOLDEN[name]


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(GOLDEN)), cuts=st.lists(st.integers(0, 5_000), max_size=20))
def test_stream_any_chunking(name: str, cuts: list[int]) -> None:
    data = sse(name)
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    decoder = XAI.stream_decoder(UpstreamRequest("POST", "u", {}, b""))
    events: list[ir.Event] = []
    for a, b in itertools.pairwise(bounds):
        events += decoder.feed(data[a:b])
    assert events + decoder.close() == GOLDEN[name]


@pytest.mark.parametrize("step", CHUNKINGS)
@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (b'{"code":503,"error":"The model is overloaded, try again later"}',
         ir.Error("overloaded", "The model is overloaded, try again later", 503)),
        (b'{"code":"Internal error","error":"Service temporarily unavailable"}',
         ir.Error("overloaded", "Service temporarily unavailable", 503)),
        (b'{"error":{"message":"boom","type":"server_error"}}', ir.Error("api_error", "boom", 500)),
    ],
)  # fmt: skip
def test_midstream_error(error: bytes, expected: ir.Error, step: int | None) -> None:
    assert decode(XAI, midstream_error_sse(error), step) == [*MIDSTREAM_HEAD, expected]


def test_fold_usage_counts_reasoning_as_output() -> None:
    resp = ir.fold(decode(XAI, sse("xai__tool_call_stream"), 7))
    assert resp.content == [
        ir.Thinking("First, the user is"),
        ir.ToolCall("call_55117580", "weather", '{"location":"San Francisco"}'),
    ]
    u = resp.usage
    assert (u.input, u.cache_read, u.output, u.reasoning) == (1, 290, 222, 196)
    assert u.prompt_total == 291  # nothing double-counted or dropped
    assert resp.stop_reason == "tool_use"


# ----------------------------------------------------------------------------- non-stream


def test_parse_text_response() -> None:
    body = recorded("xai__text")["response"]["body"]
    reasoning = body["choices"][0]["message"]["reasoning_content"]
    assert XAI.parse_response(orjson.dumps(body)) == [
        ir.Start("2af5c888-e886-6dcb-7844-95f8fe010b00", "grok-3-mini"),
        ir.BlockStart(0, "thinking"),
        ir.Delta(0, "thinking", reasoning),
        ir.BlockStop(0),
        ir.BlockStart(1, "text"),
        ir.Delta(1, "text", "Hello"),
        ir.BlockStop(1),
        ir.Usage(input=10, output=229, cache_read=2, reasoning=228),  # 12+1+228 = total 241
        ir.Finish("end_turn"),
    ]


def test_parse_tool_call_response_omits_empty_content() -> None:
    body = recorded("xai__tool_call")["response"]["body"]
    reasoning = body["choices"][0]["message"]["reasoning_content"]
    assert XAI.parse_response(orjson.dumps(body)) == [
        ir.Start("61c0468b-2a98-413e-f654-dbffcdbb62c1", "grok-3-mini"),
        ir.BlockStart(0, "thinking"),
        ir.Delta(0, "thinking", reasoning),
        ir.BlockStop(0),
        ir.BlockStart(1, "tool_call", tool_call_id="call_93562515", name="weather"),
        ir.Delta(1, "arguments", '{"location":"San Francisco"}'),
        ir.BlockStop(1),
        ir.Usage(input=47, output=215, cache_read=244, reasoning=189),
        ir.Finish("tool_use"),
    ]


# ----------------------------------------------------------------------------- requests


@pytest.mark.parametrize("name", ["xai__text_stream", "xai__tool_call_stream"])
def test_recorded_requests(name: str) -> None:
    rec = orjson.loads((REC / f"{name}.request.json").read_bytes())
    body = rec["body"]
    tools = [
        ir.Tool(t["function"]["name"], t["function"]["description"], t["function"]["parameters"])
        for t in body.get("tools", [])
    ]
    req = ir.Request(
        model=body["model"],
        messages=[ir.Message("user", [ir.Text(body["messages"][0]["content"])])],
        tools=tools,
        tool_choice=ir.ToolChoice("auto") if tools else None,
        stream=True,
    )
    call = XAI.build_request(req, body["model"], api_key="xai-k", base_url="https://api.x.ai/v1")
    assert call.url == rec["url"]
    assert call.headers["authorization"] == "Bearer xai-k"
    assert orjson.loads(call.body) == body


def reasoning_request(**overrides: Any) -> ir.Request:
    req = ir.Request(
        model="grok-3-mini",
        messages=[
            ir.Message("user", [ir.Text("Hi")]),
            ir.Message("assistant", [ir.Thinking("hmm", "sig"), ir.ToolCall("call_1", "f", "{}")]),
            ir.Message("user", [ir.ToolResult("call_1", [ir.Text("ok")])]),
        ],
        max_tokens=300,
        temperature=0.5,
        stop=["END"],
        thinking=ir.ThinkingConfig(enabled=True, effort="medium"),
        extras={"presence_penalty": 0.5, "frequency_penalty": 0.1, "seed": 3},
        extras_format="openai",
    )
    for key, value in overrides.items():
        setattr(req, key, value)
    return req


def test_reasoning_model_request() -> None:
    assert body_of(reasoning_request()) == {
        "model": "grok-3-mini",
        "messages": [
            {"role": "user", "content": "Hi"},
            # xAI has no field for replayed thinking: dropped
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        ],
        "max_tokens": 300,
        "temperature": 0.5,
        "seed": 3,
        "reasoning_effort": "high",  # grok-3-mini knows low|high only
    }


@pytest.mark.parametrize(
    ("model", "thinking", "effort"),
    [
        ("grok-3-mini", ir.ThinkingConfig(effort="low"), "low"),
        ("grok-3-mini", ir.ThinkingConfig(enabled=True, budget_tokens=1024), "low"),
        ("grok-3-mini", ir.ThinkingConfig(enabled=True, budget_tokens=20000), "high"),
        ("grok-4.3", ir.ThinkingConfig(effort="medium"), "medium"),
        ("grok-4.3", ir.ThinkingConfig(enabled=False), "none"),
        ("grok-4.3", ir.ThinkingConfig(effort="max"), "high"),
        ("grok-4", ir.ThinkingConfig(effort="high"), None),  # 400 on grok-4: never sent
        ("grok-4.20-reasoning", ir.ThinkingConfig(effort="high"), None),
        ("grok-3", ir.ThinkingConfig(effort="high"), None),
    ],
)
def test_reasoning_effort_only_where_allowed(
    model: str, thinking: ir.ThinkingConfig, effort: str | None
) -> None:
    req = reasoning_request(thinking=thinking)
    req.extras["reasoning_effort"] = "high"  # a client extra must not sneak past the rule
    assert body_of(req, model).get("reasoning_effort") == effort


@pytest.mark.parametrize(
    ("model", "reasoning"),
    [
        ("grok-3-mini", True),
        ("grok-4", True),
        ("grok-4.3", True),
        ("grok-4-1-fast-reasoning", True),
        ("grok-4.20-non-reasoning", False),
        ("grok-3", False),
    ],
)
def test_reasoning_models_drop_rejected_params(model: str, reasoning: bool) -> None:
    body = body_of(reasoning_request(), model)
    for key in ("stop", "presence_penalty", "frequency_penalty"):
        assert (key in body) is not reasoning
    assert body["max_tokens"] == 300 and "max_completion_tokens" not in body


# ----------------------------------------------------------------------------- errors


def test_recorded_invalid_key_is_the_gateways_problem() -> None:
    resp = recorded("xai__error_invalid_key")["response"]
    assert resp["status"] == 400
    err = XAI.parse_error(resp["status"], orjson.dumps(resp["body"]), resp["headers"])
    assert (err.kind, err.http_status) == ("api_error", 502)
    assert "xa***ED" not in err.message and "Incorrect API key" not in err.message


@pytest.mark.parametrize(
    ("status", "body", "kind", "client_status", "message"),
    [
        (400, {"code": "Client specified an invalid argument",
               "error": "This model's maximum prompt length is 131072 but the request contains "
                        "179111 tokens."},
         "invalid_request", 400, "This model's maximum prompt length is 131072"),
        (429, {"code": 429, "error": "You ran out of credits for team xyz."}, "api_error", 502,
         "The gateway's account"),
        (429, {"code": 429, "error": "Too many requests"}, "rate_limit", 429, "Too many requests"),
        (404, {"code": "Some requested entity was not found", "error": "The model grok-9 does not "
               "exist or your team does not have access to it."}, "not_found", 404, "The model"),
        (422, {"code": 422, "error": {"message": "Failed to deserialize the JSON body"}},
         "invalid_request", 400, "Failed to deserialize"),
        (401, {"code": 401, "error": "Missing API key xai-abcdef"}, "api_error", 502,
         "The upstream provider rejected"),
        (403, {"code": 403, "error": "Forbidden"}, "api_error", 502, "The upstream provider"),
        (503, {"code": 503, "error": "Service unavailable"}, "overloaded", 503, "Service"),
    ],
)  # fmt: skip
def test_error_shapes(
    status: int, body: dict[str, Any], kind: str, client_status: int, message: str
) -> None:
    err = XAI.parse_error(status, orjson.dumps(body), {"retry-after": "2"})
    assert (err.kind, err.http_status) == (kind, client_status)
    assert err.message.startswith(message)
    assert "xai-" not in err.message
    if kind == "rate_limit":
        assert err.retry_after == 2.0


def test_non_json_error_body() -> None:
    err = XAI.parse_error(500, b"upstream connect error", {})
    assert (err.kind, err.http_status) == ("api_error", 500)
