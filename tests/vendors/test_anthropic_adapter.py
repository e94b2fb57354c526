"""Anthropic adapter against the recorded vendor bytes (shared/fixtures/vendor-recordings)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paths import RECORDINGS
from tokenrelay import ir
from tokenrelay.ir import BlockStart, BlockStop, Delta, Finish, Start, Usage
from tokenrelay.vendors.anthropic import ANTHROPIC
from tokenrelay.vendors.base import UpstreamRequest

BASE = "https://api.anthropic.com"
KEY = "sk-ant-test-key"
STREAMS = sorted(p.name for p in RECORDINGS.glob("anthropic__*.sse"))


def recording(name: str) -> bytes:
    return (RECORDINGS / name).read_bytes()


def exchange(name: str) -> dict[str, Any]:
    return orjson.loads(recording(name))


def decode(data: bytes, sizes: list[int] | None = None) -> list[ir.Event]:
    """Feed `data` cut into pieces of the given sizes (cycled), then close."""
    decoder = ANTHROPIC.stream_decoder(UpstreamRequest("POST", BASE, {}, b""))
    events: list[ir.Event] = []
    pos, i = 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)] if sizes else len(data)
        events += decoder.feed(data[pos : pos + size])
        pos, i = pos + size, i + 1
    return events + decoder.close()


# --------------------------------------------------------------------------------------------
# Golden event sequences

THINKING_SIGNATURE = (
    "EvQBCkYICxgCKkAxhD4NUKFzudtZ6NzbZdEiBACIScTzqjPViM596iWLZIk4EFKYYBj3B6Ptl3b0dcQv/VeJBNbejNWIWR"
    "Bn+KPNEgz6HWtKx7p+QRgKsEoaDGjsiqfht7gTRFYHiyIwD1VSmNqHxv3wy8KEMP+LYb/TC4UH3H97tuoaADARFFcA0ph"
    "dfxnzKQxFnc9lwY+dKlzUsaKSUAFeu1bDL5ikZJ1vL0Fkz6JjoFke0L/wOJRIUDUlDUOFJ1tZ3ea7g6LGE/5hwuvWgLwe"
    "wdcm64d+43l7F57XrOmqNd6flI2K/oPr/4yzNgvi/EhT6Ca17BgB"
)

GOLDEN: dict[str, list[ir.Event]] = {
    "anthropic__text_stream.sse": [
        Start("msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK", "claude-3-opus-latest"),
        Usage(input=11),
        BlockStart(0, "text"),
        Delta(0, "text", "Hello"),
        Delta(0, "text", " there"),
        Delta(0, "text", "!"),
        BlockStop(0),
        Usage(output=6),
        Finish("end_turn"),
    ],
    "anthropic__tool_call_stream.sse": [
        Start("msg_019Q1hrJbZG26Fb9BQhrkHEr", "claude-sonnet-4-20250514"),
        Usage(input=377, cache_read=0, cache_write=0),
        BlockStart(0, "text"),
        Delta(0, "text", "I"),
        Delta(0, "text", "'ll check the current weather in Paris for you."),
        BlockStop(0),
        BlockStart(
            1, "tool_call", tool_call_id="toolu_01NRLabsLyVHZPKxbKvkfSMn", name="get_weather"
        ),
        Delta(1, "arguments", '{"locati'),  # the empty first fragment is skipped
        Delta(1, "arguments", 'on": "P'),
        Delta(1, "arguments", "ar"),
        Delta(1, "arguments", 'is"}'),
        BlockStop(1),
        Usage(output=65),
        Finish("tool_use"),
    ],
    "anthropic__thinking_stream.sse": [
        Start("msg_01Y6V41gqPaKWEw7iPouH7iW", "claude-sonnet-4-5-20250929"),
        Usage(input=69, cache_read=0, cache_write=0, cache_write_1h=0),
        BlockStart(0, "thinking"),
        *[
            Delta(0, "thinking", t)
            for t in (
                "The previous",
                " result",
                " was",
                " 925.",
                " Now",
                " I need to divide that",
                " by 5.\n\n925",
                " ÷ 5 ",
                "= 185",
            )
        ],
        Delta(0, "signature", THINKING_SIGNATURE),
        BlockStop(0),
        BlockStart(1, "text"),
        Delta(1, "text", "925"),
        Delta(1, "text", " ÷ 5 "),
        Delta(1, "text", "= 185"),
        BlockStop(1),
        Usage(input=69, output=53, cache_read=0, cache_write=0),
        Finish("end_turn"),
    ],
    "anthropic__midstream_error.sse": [
        Start("msg_01XFDUDYJgAACzvnptvVoYEL", "claude-sonnet-4-5-20250929"),
        Usage(input=21, cache_read=0, cache_write=0, cache_write_1h=0),
        BlockStart(0, "text"),
        Delta(0, "text", "Once upon a time"),
        Delta(0, "text", ", in a quiet village by the sea,"),
        Delta(0, "text", " there lived an old lighthouse keeper"),
        ir.Error("overloaded", "Overloaded", 529),
    ],
}


def test_every_stream_recording_has_a_golden_sequence() -> None:
    assert set(STREAMS) == set(GOLDEN)


@pytest.mark.parametrize("name", sorted(GOLDEN))
@pytest.mark.parametrize("sizes", [None, [1], [7], [3, 50, 1, 200]])
def test_stream_golden(name: str, sizes: list[int] | None) -> None:
    assert decode(recording(name), sizes) == GOLDEN[name]


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(STREAMS), sizes=st.lists(st.integers(1, 64), min_size=1, max_size=8))
def test_stream_any_chunking(name: str, sizes: list[int]) -> None:
    assert decode(recording(name), sizes) == GOLDEN[name]


def test_stream_folds() -> None:
    text = ir.fold(GOLDEN["anthropic__text_stream.sse"])
    assert text.content == [ir.Text("Hello there!")]
    assert (text.stop_reason, text.usage.input, text.usage.output) == ("end_turn", 11, 6)

    tool = ir.fold(decode(recording("anthropic__tool_call_stream.sse"), [5]))
    assert tool.stop_reason == "tool_use"
    call = tool.content[1]
    assert isinstance(call, ir.ToolCall)
    assert (call.id, call.name, orjson.loads(call.arguments)) == (
        "toolu_01NRLabsLyVHZPKxbKvkfSMn",
        "get_weather",
        {"location": "Paris"},
    )
    assert tool.usage.output == 65 and tool.usage.input == 377

    thinking = ir.fold(decode(recording("anthropic__thinking_stream.sse")))
    first, second = thinking.content
    assert isinstance(first, ir.Thinking) and first.signature == THINKING_SIGNATURE
    assert first.text.endswith("925 ÷ 5 = 185") and second == ir.Text("925 ÷ 5 = 185")

    broken = ir.fold(decode(recording("anthropic__midstream_error.sse"), [1]))
    assert broken.stop_reason is None and broken.error is not None
    assert broken.error.kind == "overloaded"
    assert broken.usage.input == 21 and broken.usage.output == 0  # placeholder not billed


FINAL_DELTA = b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"}}'


def test_nothing_after_a_midstream_error() -> None:
    data = recording("anthropic__midstream_error.sse")
    tail = b"event: message_delta\n" + FINAL_DELTA + b"\n\n"
    events = decode(data + tail)
    assert isinstance(events[-1], ir.Error)


# --------------------------------------------------------------------------------------------
# Non-stream bodies


def test_parse_text_response() -> None:
    body = orjson.dumps(exchange("anthropic__text.json")["response"]["body"])
    text = (
        "Hello! I'm doing well, thanks for asking. How are you doing today? "
        "Is there anything I can help you with?"
    )
    assert ANTHROPIC.parse_response(body) == [
        Start("msg_01VdEjxAP5ahtHKrrRdNBteQ", "claude-sonnet-4-5-20250929"),
        BlockStart(0, "text"),
        Delta(0, "text", text),
        BlockStop(0),
        Usage(input=12, output=29, cache_read=0, cache_write=0, cache_write_1h=0),
        Finish("end_turn"),
    ]


def test_parse_tool_call_response() -> None:
    body = orjson.dumps(exchange("anthropic__tool_call.json")["response"]["body"])
    resp = ir.fold(ANTHROPIC.parse_response(body))
    text, call = resp.content
    assert isinstance(text, ir.Text) and text.text.endswith("update the current issue list:")
    assert call == ir.ToolCall("toolu_01LRmxn9vGM1d2DZSDBowdZ1", "updateIssueList", "{}")
    assert (resp.stop_reason, resp.usage.input, resp.usage.output) == ("tool_use", 602, 93)


def _as_message(resp: ir.Response) -> dict[str, Any]:
    """An IR response as the vendor's non-stream body (what the stream would have been)."""
    content: list[dict[str, Any]] = []
    for p in resp.content:
        if isinstance(p, ir.Text):
            content.append({"type": "text", "text": p.text})
        elif isinstance(p, ir.Thinking):
            content.append({"type": "thinking", "thinking": p.text, "signature": p.signature})
        elif isinstance(p, ir.ToolCall):
            args = orjson.loads(p.arguments)
            content.append({"type": "tool_use", "id": p.id, "name": p.name, "input": args})
    u = resp.usage
    usage = {"input_tokens": u.input, "output_tokens": u.output}
    usage |= {"cache_read_input_tokens": u.cache_read, "cache_creation_input_tokens": u.cache_write}
    return {"id": resp.id, "model": resp.model, "content": content, "usage": usage}


@pytest.mark.parametrize("name", [n for n in STREAMS if "error" not in n])
def test_stream_and_body_fold_alike(name: str) -> None:
    streamed = ir.fold(decode(recording(name), [9]))
    message = _as_message(streamed) | {"stop_reason": streamed.stop_reason, "stop_sequence": None}
    whole = ir.fold(ANTHROPIC.parse_response(orjson.dumps(message)))
    assert whole.content == [
        ir.ToolCall(p.id, p.name, orjson.dumps(orjson.loads(p.arguments)).decode())
        if isinstance(p, ir.ToolCall)
        else p
        for p in streamed.content
    ]
    assert (whole.usage, whole.stop_reason) == (streamed.usage, streamed.stop_reason)


def test_recorded_kinds_correspond() -> None:
    """The text and tool-call recordings of both modes agree in shape, stop and usage fields."""
    for body_name, stream_name in [
        ("anthropic__text.json", "anthropic__text_stream.sse"),
        ("anthropic__tool_call.json", "anthropic__tool_call_stream.sse"),
    ]:
        body = orjson.dumps(exchange(body_name)["response"]["body"])
        whole = ir.fold(ANTHROPIC.parse_response(body))
        streamed = ir.fold(decode(recording(stream_name), [13]))
        assert [type(p) for p in whole.content] == [type(p) for p in streamed.content]
        assert whole.stop_reason == streamed.stop_reason
        assert whole.usage.input > 0 and streamed.usage.input > 0
        assert whole.usage.output > 0 and streamed.usage.output > 0


def test_parse_response_usage_details_and_unknown_blocks() -> None:
    body = {
        "id": "msg_1",
        "model": "m",
        "content": [
            {"type": "redacted_thinking", "data": "EmwK"},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
            {"type": "text", "text": "Hi"},
        ],
        "stop_reason": "stop_sequence",
        "stop_sequence": "END",
        "usage": {
            "input_tokens": 5,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 40,
            "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 30},
            "output_tokens": 50,
            "output_tokens_details": {"thinking_tokens": 20},
        },
    }
    assert ANTHROPIC.parse_response(orjson.dumps(body)) == [
        Start("msg_1", "m"),
        BlockStart(0, "redacted_thinking", data="EmwK"),
        BlockStop(0),
        BlockStart(2, "text"),
        Delta(2, "text", "Hi"),
        BlockStop(2),
        Usage(input=5, output=50, cache_read=100, cache_write=40, cache_write_1h=30, reasoning=20),
        Finish("stop_sequence", "END"),
    ]


def test_stream_skips_unknown_blocks_and_events() -> None:
    sse = b"".join(
        b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        for name, data in [
            ("message_start", {"type": "message_start", "message": {"id": "m1", "model": "x"}}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "server_tool_use", "id": "s"},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": "{}"},
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("brand_new_event", {"type": "brand_new_event"}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 1,
                    "content_block": {"type": "redacted_thinking", "data": "D"},
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 1}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "usage": {"output_tokens": 3},
                    "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                },
            ),
        ]
    )
    assert decode(sse, [4]) == [
        Start("m1", "x"),
        Usage(),
        BlockStart(1, "redacted_thinking", data="D"),
        BlockStop(1),
        Usage(output=3),
        Finish("max_tokens"),
    ]


def test_close_flushes_an_event_without_final_blank_line() -> None:
    data = b"event: message_delta\n" + FINAL_DELTA
    decoder = ANTHROPIC.stream_decoder(UpstreamRequest("POST", BASE, {}, b""))
    assert decoder.feed(data) == []
    assert decoder.close() == [Usage(), Finish("end_turn")]


# --------------------------------------------------------------------------------------------
# Request building


def _normalise(body: dict[str, Any]) -> dict[str, Any]:
    """Recorded bodies use the string shorthand for content; we always send blocks."""
    out = dict(body)
    out["messages"] = [
        {**m, "content": [{"type": "text", "text": m["content"]}]}
        if isinstance(m["content"], str)
        else m
        for m in body["messages"]
    ]
    return out


def _built(req: ir.Request, model: str) -> tuple[UpstreamRequest, dict[str, Any]]:
    up = ANTHROPIC.build_request(req, model, api_key=KEY, base_url=BASE)
    return up, orjson.loads(up.body)


def _user(text: str) -> ir.Message:
    return ir.Message("user", [ir.Text(text)])


def test_recorded_text_stream_request() -> None:
    rec = exchange("anthropic__text_stream.request.json")
    req = ir.Request("claude-3-opus-latest", [_user("Say hello there!")], max_tokens=1024)
    req.stream = True
    up, body = _built(req, "claude-3-opus-latest")
    assert body == _normalise(rec["body"])
    assert (up.method, up.url) == ("POST", rec["url"])
    assert up.headers == {**rec["headers"], "x-api-key": KEY}
    assert b'": ' not in up.body and b', "' not in up.body  # compact JSON


def test_recorded_tool_call_requests() -> None:
    rec = exchange("anthropic__tool_call_stream.request.json")["body"]
    tool = rec["tools"][0]
    req = ir.Request(
        "x",
        [_user("What is the weather in Paris?")],
        tools=[ir.Tool(tool["name"], tool["description"], tool["input_schema"])],
        max_tokens=1024,
        stream=True,
    )
    assert _built(req, rec["model"])[1] == _normalise(rec)

    rec = exchange("anthropic__tool_call.json")["request"]["body"]
    tool = rec["tools"][0]
    req = ir.Request(
        "x",
        [_user("Update the issue list")],
        tools=[ir.Tool(tool["name"], tool["description"], tool["input_schema"])],
        tool_choice=ir.ToolChoice("auto"),
        max_tokens=4096,
    )
    assert _built(req, rec["model"])[1] == rec


def test_recorded_thinking_request_with_extras_and_beta_header() -> None:
    rec = exchange("anthropic__thinking_stream.request.json")
    prior = rec["body"]["messages"][1]["content"]
    req = ir.Request(
        "x",
        [
            _user("What is 37 * 25?"),
            ir.Message(
                "assistant",
                [
                    ir.Thinking(prior[0]["thinking"], prior[0]["signature"]),
                    ir.Text(prior[1]["text"]),
                ],
            ),
            _user("Now divide that by 5."),
        ],
        max_tokens=2048,
        stream=True,
        thinking=ir.ThinkingConfig(enabled=True, budget_tokens=1024),
        extras={"context_management": rec["body"]["context_management"]},
        extras_format="anthropic",
        passthrough_headers={"anthropic-beta": "context-management-2025-06-27"},
    )
    up, body = _built(req, "claude-sonnet-4-5-20250929")
    assert body == _normalise(rec["body"])
    assert up.headers == {**rec["headers"], "x-api-key": KEY}


def test_full_request_body() -> None:
    schema = {
        "type": "object",
        "$defs": {"Unit": {"type": "string", "enum": ["c", "f"]}},
        "properties": {
            "city": {"type": "string", "default": "Paris"},
            "unit": {"$ref": "#/$defs/Unit"},
        },
        "additionalProperties": False,
    }
    req = ir.Request(
        "claude",
        [
            ir.Message("user", [ir.Text("Weather?", cache_control={"type": "ephemeral"})]),
            ir.Message(
                "user", [ir.Image("image/png", data="iVBOR"), ir.Image(url="https://x/a.jpg")]
            ),
            ir.Message(
                "assistant",
                [
                    ir.Thinking("Need a tool.", "sig1"),
                    ir.Thinking("unsigned text from another vendor"),
                    ir.Text(""),
                    ir.ToolCall("toolu_1", "get_weather", '{"city":"Paris"}'),
                    ir.ToolCall("toolu_2", "get_weather", '{"city":'),  # cut off: invalid JSON
                ],
            ),
            ir.Message(
                "user",
                [
                    ir.Text("and quickly"),
                    ir.ToolResult("toolu_1", [ir.Text("18C")]),
                    ir.ToolResult("toolu_2", [ir.Text("boom")], is_error=True),
                ],
            ),
            ir.Message("assistant", [ir.RedactedThinking("EmwK"), ir.Text("Done.")]),
        ],
        system=[ir.Text("Be brief.", cache_control={"type": "ephemeral"}), ir.Text("")],
        tools=[ir.Tool("get_weather", "Weather by city", schema)],
        tool_choice=ir.ToolChoice("any", disable_parallel=True),
        max_tokens=8000,
        temperature=0.3,  # dropped: thinking is on
        top_k=5,  # dropped too
        stop=["END"],
        thinking=ir.ThinkingConfig(effort="high"),
        user="user-42",
        response_format={"type": "json_schema", "name": "w", "schema": {"type": "object"}},
    )
    assert _built(req, "claude-sonnet-4-5")[1] == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 8000,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather?", "cache_control": {"type": "ephemeral"}},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x/a.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Need a tool.", "signature": "sig1"},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": "boom",
                        "is_error": True,
                    },
                    {"type": "text", "text": "and quickly"},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "redacted_thinking", "data": "EmwK"},
                    {"type": "text", "text": "Done."},
                ],
            },
        ],
        "tools": [
            {"name": "get_weather", "description": "Weather by city", "input_schema": schema}
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "thinking": {"type": "enabled", "budget_tokens": 7999},
        "stop_sequences": ["END"],
        "metadata": {"user_id": "user-42"},
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
    }


@pytest.mark.parametrize(
    ("thinking", "max_tokens", "expected_thinking", "expected_max"),
    [
        (ir.ThinkingConfig(effort="low"), 4096, {"type": "enabled", "budget_tokens": 1024}, 4096),
        (
            ir.ThinkingConfig(effort="medium"),
            None,
            {"type": "enabled", "budget_tokens": 4096},
            8192,
        ),
        (
            ir.ThinkingConfig(effort="high"),
            32000,
            {"type": "enabled", "budget_tokens": 16384},
            32000,
        ),
        (
            ir.ThinkingConfig(effort="max"),
            64000,
            {"type": "enabled", "budget_tokens": 32000},
            64000,
        ),
        (ir.ThinkingConfig(effort="high"), 500, {"type": "enabled", "budget_tokens": 1024}, 1524),
        (
            ir.ThinkingConfig(budget_tokens=2000),
            1024,
            {"type": "enabled", "budget_tokens": 1024},
            2048,
        ),
        (
            ir.ThinkingConfig(adaptive=True, display="omitted"),
            900,
            {"type": "adaptive", "display": "omitted"},
            900,
        ),
        (ir.ThinkingConfig(enabled=False, budget_tokens=2000), 900, None, 900),
        (ir.ThinkingConfig(effort="none"), 900, None, 900),
        (None, None, None, 4096),
    ],
)
def test_thinking_budget(
    thinking: ir.ThinkingConfig | None,
    max_tokens: int | None,
    expected_thinking: dict[str, Any] | None,
    expected_max: int,
) -> None:
    req = ir.Request("m", [_user("hi")], max_tokens=max_tokens, thinking=thinking)
    req.temperature = 0.5
    body = _built(req, "m")[1]
    assert body.get("thinking") == expected_thinking
    assert body["max_tokens"] == expected_max
    if expected_thinking is None:
        assert body["temperature"] == 0.5
    else:
        assert "temperature" not in body and body["thinking"].get("budget_tokens", 0) < expected_max


def test_sampling_and_tool_choice_details() -> None:
    req = ir.Request(
        "m",
        [_user("hi"), ir.Message("assistant", [ir.Text("")]), _user("again")],
        temperature=1.7,
        top_p=0.9,
        top_k=40,
        tools=[ir.Tool("t", parameters={"properties": {}})],
        tool_choice=ir.ToolChoice("tool", name="t"),
        extras={"service_tier": "auto", "max_tokens": 1},  # IR values win over extras
        extras_format="openai",  # not ours: ignored
    )
    body = _built(req, "m")[1]
    assert body["temperature"] == 1.0  # clamped to Anthropic's range
    assert (body["top_p"], body["top_k"]) == (0.9, 40)
    assert body["tool_choice"] == {"type": "tool", "name": "t"}
    assert body["tools"] == [{"name": "t", "input_schema": {"properties": {}, "type": "object"}}]
    # the empty assistant turn vanished and the user turns around it merged
    assert body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "again"}],
        }
    ]
    assert "service_tier" not in body

    req.extras_format = "anthropic"
    body = _built(req, "m")[1]
    assert body["service_tier"] == "auto" and body["max_tokens"] == 4096


def test_tool_result_with_image_and_documents() -> None:
    req = ir.Request(
        "m",
        [
            ir.Message(
                "user",
                [
                    ir.ToolResult("t1", [ir.Text("see"), ir.Image("image/jpeg", data="AAA")]),
                    ir.ToolResult("t2", []),
                    ir.Document("base64", "application/pdf", data="JVBER", title="Doc"),
                    ir.Document("text", data="plain words", extra={"citations": {"enabled": True}}),
                    ir.Document("url", url="https://x/y.pdf"),
                ],
            )
        ],
    )
    assert _built(req, "m")[1]["messages"][0]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "t1",
            "content": [
                {"type": "text", "text": "see"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAA"},
                },
            ],
        },
        {"type": "tool_result", "tool_use_id": "t2"},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"},
            "title": "Doc",
        },
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "plain words"},
            "citations": {"enabled": True},
        },
        {"type": "document", "source": {"type": "url", "url": "https://x/y.pdf"}},
    ]


def test_count_tokens() -> None:
    req = ir.Request(
        "m",
        [_user("hello")],
        system=[ir.Text("sys")],
        max_tokens=100,
        temperature=0.2,
        stream=True,
        tools=[ir.Tool("t")],
    )
    up = ANTHROPIC.build_count_tokens(req, "claude-x", api_key=KEY, base_url=BASE + "/")
    assert up.url == "https://api.anthropic.com/v1/messages/count_tokens"
    assert orjson.loads(up.body) == {
        "model": "claude-x",
        "system": [{"type": "text", "text": "sys"}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
        "tools": [{"name": "t", "input_schema": {"type": "object", "properties": {}}}],
    }
    assert up.headers["x-api-key"] == KEY
    assert ANTHROPIC.parse_count_tokens(b'{"input_tokens": 14}') == 14


# --------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "anthropic__error_invalid_request.json",
            ir.Error("invalid_request", "max_tokens: Field required", 400),
        ),
        ("anthropic__error_overloaded.json", ir.Error("overloaded", "Overloaded", 529)),
    ],
)
def test_recorded_errors(name: str, expected: ir.Error) -> None:
    resp = exchange(name)["response"]
    assert ANTHROPIC.parse_error(resp["status"], orjson.dumps(resp["body"]), resp["headers"]) == (
        expected
    )


def _error_body(etype: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": etype, "message": message}})


@pytest.mark.parametrize(
    ("status", "etype", "kind", "client_status"),
    [
        (404, "not_found_error", "not_found", 404),
        (413, "request_too_large", "request_too_large", 413),
        (500, "api_error", "api_error", 500),
        (504, "timeout_error", "timeout", 504),
        (529, "overloaded_error", "overloaded", 529),
        (409, "something_new", "invalid_request", 400),
        (502, "something_new", "api_error", 502),
    ],
)
def test_error_status_mapping(status: int, etype: str, kind: str, client_status: int) -> None:
    err = ANTHROPIC.parse_error(status, _error_body(etype, "msg"), {})
    assert (err.kind, err.http_status, err.message) == (kind, client_status, "msg")


def test_rate_limit_retry_after() -> None:
    err = ANTHROPIC.parse_error(
        429, _error_body("rate_limit_error", "slow down"), {"retry-after": "7"}
    )
    assert err == ir.Error("rate_limit", "slow down", 429, retry_after=7.0)


@pytest.mark.parametrize(
    ("status", "etype"),
    [(401, "authentication_error"), (403, "permission_error"), (402, "billing_error")],
)
def test_gateway_credentials_are_not_the_clients_fault(status: int, etype: str) -> None:
    body = _error_body(etype, f"invalid x-api-key {KEY}")
    err = ANTHROPIC.parse_error(status, body, {})
    assert (err.kind, err.http_status) == ("api_error", 502)
    assert "gateway" in err.message and KEY not in err.message


@pytest.mark.parametrize("body", [b"<html>Bad Gateway</html>", b"", b"[1,2]", b'{"error": "x"}'])
def test_non_json_error_bodies(body: bytes) -> None:
    err = ANTHROPIC.parse_error(502, body, {})
    assert (err.kind, err.http_status) == ("api_error", 502)
    assert "502" in err.message and b"html" not in err.message.encode()


@pytest.mark.parametrize(
    ("etype", "kind", "status"),
    [
        ("overloaded_error", "overloaded", 529),
        ("api_error", "api_error", 500),
        ("rate_limit_error", "rate_limit", 429),
        ("weird_new_error", "api_error", 502),
    ],
)
def test_midstream_error_kinds(etype: str, kind: str, status: int) -> None:
    sse = b"event: error\ndata: " + _error_body(etype, "m") + b"\n\n"
    assert decode(sse) == [ir.Error(kind, "m", status)]  # type: ignore[arg-type]


@pytest.mark.parametrize("body", [b"<html>", b"[]", b""])
def test_unreadable_200_body_is_an_error_not_a_crash(body: bytes) -> None:
    (err,) = ANTHROPIC.parse_response(body)
    assert isinstance(err, ir.Error) and err.http_status == 502
