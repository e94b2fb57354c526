"""Gemini adapter against the recorded vendor bytes (CRLF SSE, byte-exact recordings)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paths import RECORDINGS
from tokenrelay import ir
from tokenrelay.ir import BlockStart, BlockStop, Delta, Finish, Start, Usage
from tokenrelay.vendors.base import UpstreamRequest
from tokenrelay.vendors.gemini import GEMINI
from tokenrelay.vendors.gemini_schema import clean_schema

BASE = "https://generativelanguage.googleapis.com"
KEY = "AIza-test-key"
STREAMS = sorted(p.name for p in RECORDINGS.glob("gemini__*.sse"))


def recording(name: str) -> bytes:
    return (RECORDINGS / name).read_bytes()


def exchange(name: str) -> dict[str, Any]:
    return orjson.loads(recording(name))


def decode(data: bytes, sizes: list[int] | None = None) -> list[ir.Event]:
    """Feed `data` cut into pieces of the given sizes (cycled), then close."""
    decoder = GEMINI.stream_decoder(UpstreamRequest("POST", BASE, {}, b""))
    events: list[ir.Event] = []
    pos, i = 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)] if sizes else len(data)
        events += decoder.feed(data[pos : pos + size])
        pos, i = pos + size, i + 1
    return events + decoder.close()


def sse(*chunks: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(c) + b"\r\n\r\n" for c in chunks)


# --------------------------------------------------------------------------------------------
# Golden event sequences

TOOL_SIGNATURE = (
    "EqUCCqICAb4+9vsh8Pd5taZVoPzSvjWWwzBrvhEQWBLCGa7IdY8FBMm7Z6dCKFU3Ft0la1"
    "5gF7RaHe1NlPRygQec0bFwPDfMwGcUOMNiJiNIKxusCs4ejCZRuouNYQ4etEIt7CujEUHiILLfZXSJZYhs4UCrD2bL"
    "qPq0sE0lWgYJnzHkkKUOnMsA2hKffAhtF4DWn5INYj8pPssvch/2VpDFW2F9XSE04zLDzkIWF2eztJX50Y0lTehRZC"
    "3FW7fOrXCzGx+PwdataD6eXlF5O1zn+86XtmktOs2DEp4o1PMvXFFAXe8GGvPt8Idf3UtHMq7AsapwMW9sjiKj+FJk"
    "54m+9LMTSaj7C86smfvoQryYBEHTVazr1bEnpl4bPG5JUtm2yAMkHj4="
)
THOUGHT_1 = (
    '**Counting the letters**\n\nI\'m spelling out "strawberry" letter by letter to count the '
    "r's: s-t-r-a-w-b-e-r-r-y. I see one r after the t and a double r before the y.\n\n\n"
)
THOUGHT_2 = (
    "**Confirming the total**\n\nThat gives three r's in total. I'll answer with the count and "
    "show where they are.\n\n\n"
)


def gusage(prompt: int, candidates: int, thoughts: int) -> Usage:
    return Usage(input=prompt, output=candidates + thoughts, cache_read=0, reasoning=thoughts)


# Each chunk's usageMetadata comes before its parts: counts are cumulative, and the prompt size
# must be known by the time a renderer opens the message (Anthropic message_start).
GOLDEN: dict[str, list[ir.Event]] = {
    "gemini__text_stream.sse": [
        Start("bH6LaZW8Fp_3nsEPqtaSwQ4", "gemini-3-pro-preview"),
        gusage(9, 5, 185),
        BlockStart(0, "text"),
        Delta(0, "text", "There are **3**"),
        gusage(9, 23, 185),
        Delta(0, "text", ' "r"s in strawberry.\n\nst**r**awbe**rr**y'),
        # the last chunk's empty text part carries only a thoughtSignature: no event
        gusage(9, 23, 185),
        BlockStop(0),
        Finish("end_turn"),
    ],
    "gemini__tool_call_stream.sse": [
        Start("b36LacjwM668nsEP2tbsgQQ", "gemini-3-pro-preview"),
        gusage(29, 15, 45),
        BlockStart(
            0,
            "tool_call",
            tool_call_id="call_b36LacjwM668nsEP2tbsgQQ_0",
            name="weather",
            data=TOOL_SIGNATURE,
        ),
        Delta(0, "arguments", '{"location":"San Francisco"}'),
        BlockStop(0),
        gusage(29, 15, 45),
        Finish("tool_use"),  # Gemini says STOP; the functionCall makes it tool_use
    ],
    "gemini__thinking_stream.sse": [
        Start("kTsLaf3xK4-o1MkPzJ2R8Qs", "gemini-2.5-flash"),
        gusage(12, 0, 214),
        BlockStart(0, "thinking"),
        Delta(0, "thinking", THOUGHT_1),
        gusage(12, 0, 389),
        Delta(0, "thinking", THOUGHT_2),
        gusage(12, 9, 389),
        BlockStop(0),
        BlockStart(1, "text"),
        Delta(1, "text", 'There are **3** r\'s in the word "strawberry"'),
        gusage(12, 21, 389),
        Delta(1, "text", ": st**r**awbe**rr**y."),
        BlockStop(1),
        Finish("end_turn"),
    ],
    "gemini__midstream_error.sse": [
        Start("p9QLacTq7Lz2xN8PlYKt0Ak", "gemini-2.5-flash"),
        gusage(11, 14, 198),
        BlockStart(0, "text"),
        Delta(0, "text", "Once upon a time, on a rocky point above a restless sea,"),
        gusage(11, 25, 198),
        Delta(0, "text", " there lived an old lighthouse keeper named Elias who"),
        ir.Error("overloaded", "The model is overloaded. Please try again later.", 503),
    ],
}


def test_every_stream_recording_has_a_golden_sequence() -> None:
    assert set(STREAMS) == set(GOLDEN)
    assert all(b"\r\n\r\n" in recording(n) for n in STREAMS)  # the CRLF framing is exercised


@pytest.mark.parametrize("name", sorted(GOLDEN))
@pytest.mark.parametrize("sizes", [None, [1], [7], [2, 90, 1, 300]])
def test_stream_golden(name: str, sizes: list[int] | None) -> None:
    assert decode(recording(name), sizes) == GOLDEN[name]


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(STREAMS), sizes=st.lists(st.integers(1, 64), min_size=1, max_size=8))
def test_stream_any_chunking(name: str, sizes: list[int]) -> None:
    assert decode(recording(name), sizes) == GOLDEN[name]


def test_stream_folds() -> None:
    text = ir.fold(decode(recording("gemini__text_stream.sse"), [3]))
    assert text.content == [ir.Text('There are **3** "r"s in strawberry.\n\nst**r**awbe**rr**y')]
    assert text.stop_reason == "end_turn"
    assert (text.usage.input, text.usage.output, text.usage.reasoning) == (9, 208, 185)

    thinking = ir.fold(decode(recording("gemini__thinking_stream.sse")))
    assert thinking.content == [
        ir.Thinking(THOUGHT_1 + THOUGHT_2),
        ir.Text('There are **3** r\'s in the word "strawberry": st**r**awbe**rr**y.'),
    ]
    assert (thinking.usage.output, thinking.usage.reasoning) == (410, 389)

    broken = ir.fold(decode(recording("gemini__midstream_error.sse"), [1]))
    assert broken.error is not None and broken.error.kind == "overloaded"
    assert broken.stop_reason is None  # never a silent truncated "success"
    assert (broken.usage.input, broken.usage.output) == (11, 223)


def test_stream_and_body_of_the_same_tool_call_agree() -> None:
    body = orjson.dumps(exchange("gemini__tool_call.json")["response"]["body"])
    whole = ir.fold(GEMINI.parse_response(body))
    streamed = ir.fold(decode(recording("gemini__tool_call_stream.sse"), [11]))
    for resp in (whole, streamed):
        (call,) = resp.content
        assert isinstance(call, ir.ToolCall)
        assert (call.name, orjson.loads(call.arguments)) == (
            "weather",
            {"location": "San Francisco"},
        )
        assert call.id == f"call_{resp.id}_0" and call.signature
        assert resp.stop_reason == "tool_use" and resp.usage.input == 29
    assert whole.usage.output == 15 + 893 and streamed.usage.output == 15 + 45


def test_parse_text_response() -> None:
    body = orjson.dumps(exchange("gemini__text.json")["response"]["body"])
    assert GEMINI.parse_response(body) == [
        Start("Un6LacrVMcjUxs0PmJfWoQc", "gemini-3-pro-preview"),
        gusage(9, 28, 244),
        BlockStart(0, "text"),
        Delta(
            0,
            "text",
            "There are **3** r's in strawberry.\n\nHere is the breakdown: st**r**awbe**rr**y.",
        ),
        BlockStop(0),
        Finish("end_turn"),
    ]


def test_body_and_stream_decode_alike() -> None:
    """A whole body and the same JSON as one stream chunk give the same events."""
    for name in ("gemini__text.json", "gemini__tool_call.json"):
        body = orjson.dumps(exchange(name)["response"]["body"])
        assert GEMINI.parse_response(body) == decode(b"data: " + body + b"\r\n\r\n")


def test_parts_grouping_and_parallel_calls() -> None:
    chunk = {
        "responseId": "r1",
        "modelVersion": "gemini-x",
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "think ", "thought": True},
                        {"text": "more", "thought": True, "thoughtSignature": "T"},
                        {"text": "", "thoughtSignature": "S"},
                        {"text": "Calling."},
                        {"functionCall": {"name": "a", "args": {"x": 1}}, "thoughtSignature": "F"},
                        {"functionCall": {"name": "b"}},
                        {"functionCall": {"id": "own-id", "name": "c", "args": {}}},
                        {"executableCode": {"language": "PYTHON", "code": "1"}},
                        {"text": "after"},
                    ],
                },
                "finishReason": "MAX_TOKENS",
            }
        ],
    }
    assert GEMINI.parse_response(orjson.dumps(chunk)) == [
        Start("r1", "gemini-x"),
        BlockStart(0, "thinking"),
        Delta(0, "thinking", "think "),
        Delta(0, "thinking", "more"),
        BlockStop(0),
        BlockStart(1, "text"),
        Delta(1, "text", "Calling."),
        BlockStop(1),
        BlockStart(2, "tool_call", tool_call_id="call_r1_0", name="a", data="F"),
        Delta(2, "arguments", '{"x":1}'),
        BlockStop(2),
        BlockStart(3, "tool_call", tool_call_id="call_r1_1", name="b"),
        Delta(3, "arguments", "{}"),
        BlockStop(3),
        BlockStart(4, "tool_call", tool_call_id="own-id", name="c"),
        Delta(4, "arguments", "{}"),
        BlockStop(4),
        BlockStart(5, "text"),
        Delta(5, "text", "after"),
        BlockStop(5),
        Finish("max_tokens"),
    ]


def test_calls_across_chunks_keep_counting() -> None:
    call = {"content": {"parts": [{"functionCall": {"name": "f", "args": {}}}]}}
    events = decode(
        sse(
            {"responseId": "R", "candidates": [call]},
            {"responseId": "R", "candidates": [{**call, "finishReason": "STOP"}]},
        )
    )
    ids = [e.tool_call_id for e in events if isinstance(e, BlockStart)]
    assert ids == ["call_R_0", "call_R_1"]
    assert events[-1] == Finish("tool_use")


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("STOP", "end_turn"),
        ("MAX_TOKENS", "max_tokens"),
        ("SAFETY", "refusal"),
        ("RECITATION", "refusal"),
        ("PROHIBITED_CONTENT", "refusal"),
        ("BLOCKLIST", "refusal"),
        ("SPII", "refusal"),
        ("IMAGE_SAFETY", "refusal"),
        ("MALFORMED_FUNCTION_CALL", "end_turn"),
        ("OTHER", "end_turn"),
        ("SOMETHING_NEW", "end_turn"),
    ],
)
def test_finish_reasons(reason: str, expected: str) -> None:
    body = {"responseId": "r", "candidates": [{"content": {"parts": []}, "finishReason": reason}]}
    assert GEMINI.parse_response(orjson.dumps(body))[-1] == Finish(expected)


def test_prompt_blocked_is_a_well_formed_refusal() -> None:
    body = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "blk",
    }
    expected = [
        Start("blk", "gemini-2.5-flash"),
        Usage(input=7, output=0, cache_read=0, reasoning=0),
        Finish("refusal"),
    ]
    assert GEMINI.parse_response(orjson.dumps(body)) == expected
    assert decode(sse(body), [5]) == expected
    resp = ir.fold(expected)
    assert resp.content == [] and resp.stop_reason == "refusal"


def test_cached_and_tool_prompt_usage() -> None:
    body = {
        "responseId": "u",
        "candidates": [{"content": {"parts": [{"text": "hi"}]}, "finishReason": "STOP"}],
        "usageMetadata": {
            "promptTokenCount": 1000,
            "cachedContentTokenCount": 800,
            "toolUsePromptTokenCount": 5,
            "candidatesTokenCount": 2,
            "thoughtsTokenCount": 10,
        },
    }
    usage = ir.fold(GEMINI.parse_response(orjson.dumps(body))).usage
    assert (usage.input, usage.cache_read, usage.output, usage.reasoning) == (205, 800, 12, 10)
    assert usage.prompt_total == 1005


def test_error_chunk_first_and_nothing_after() -> None:
    err = {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}
    text = {"responseId": "x", "candidates": [{"content": {"parts": [{"text": "late"}]}}]}
    assert decode(sse(err, text)) == [ir.Error("rate_limit", "quota", 429)]


def test_close_flushes_a_chunk_without_final_blank_line() -> None:
    decoder = GEMINI.stream_decoder(UpstreamRequest("POST", BASE, {}, b""))
    chunk = {"responseId": "z", "candidates": [{"content": {"parts": [{"text": "a"}]}}]}
    assert decoder.feed(b"data: " + orjson.dumps(chunk)) == []
    assert decoder.close() == [Start("z", ""), BlockStart(0, "text"), Delta(0, "text", "a")]


# --------------------------------------------------------------------------------------------
# Request building


def _built(req: ir.Request, model: str) -> tuple[UpstreamRequest, dict[str, Any]]:
    up = GEMINI.build_request(req, model, api_key=KEY, base_url=BASE)
    return up, orjson.loads(up.body)


def _user(text: str) -> ir.Message:
    return ir.Message("user", [ir.Text(text)])


def _recorded_tool(body: dict[str, Any]) -> ir.Tool:
    decl = body["tools"][0]["functionDeclarations"][0]
    return ir.Tool(decl["name"], decl["description"], decl["parameters"])


def test_recorded_stream_requests() -> None:
    for name, thinking in [
        ("gemini__text_stream.request.json", None),
        ("gemini__thinking_stream.request.json", ir.ThinkingConfig(budget_tokens=1024)),
        ("gemini__midstream_error.request.json", None),
    ]:
        rec = exchange(name)
        text = rec["body"]["contents"][0]["parts"][0]["text"]
        req = ir.Request("x", [_user(text)], stream=True, thinking=thinking)
        model = rec["url"].split("/models/")[1].split(":")[0]
        up, body = _built(req, model)
        assert body == rec["body"]
        assert (up.method, up.url) == ("POST", rec["url"])
        assert up.headers == {**rec["headers"], "x-goog-api-key": KEY}


def test_recorded_tool_requests() -> None:
    rec = exchange("gemini__tool_call_stream.request.json")
    req = ir.Request(
        "x",
        [_user("What is the weather in San Francisco?")],
        tools=[_recorded_tool(rec["body"])],
        stream=True,
    )
    up, body = _built(req, "gemini-3-pro-preview")
    assert (body, up.url) == (rec["body"], rec["url"])

    rec = exchange("gemini__tool_call.json")["request"]
    req.stream, req.tool_choice = False, ir.ToolChoice("auto")
    up, body = _built(req, "models/gemini-3-pro-preview")
    assert (body, up.url) == (rec["body"], rec["url"])


SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "title": "Args",
    "$defs": {
        "Unit": {"type": "string", "enum": ["c", "f"], "default": "c"},
        "Place": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "near": {"$ref": "#/$defs/Place"}},
            "required": ["name", "ghost"],
            "additionalProperties": False,
        },
    },
    "properties": {
        "city": {"type": "string", "default": "Paris", "examples": ["Rome"], "format": "uri"},
        "unit": {"$ref": "#/$defs/Unit", "description": "Units"},
        "place": {"allOf": [{"$ref": "#/$defs/Place"}], "description": "Where"},
        "when": {"type": ["string", "null"], "format": "date-time"},
        "mode": {"const": "fast"},
        "days": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]},
        "tags": {"type": "array"},
        "default": {"type": "boolean"},  # a property *named* like a keyword stays
    },
    "required": ["city", "default"],
    "additionalProperties": False,
}
CLEAN_SCHEMA = {
    "type": "object",
    "title": "Args",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["c", "f"], "description": "Units"},
        "place": {
            "type": "object",
            "description": "Where",
            "properties": {"name": {"type": "string"}, "near": {"type": "object"}},
            "required": ["name"],
        },
        "when": {"type": "string", "nullable": True, "format": "date-time"},
        "mode": {"type": "string", "enum": ["fast"]},
        "days": {"type": "integer", "minimum": 1, "nullable": True},
        "tags": {"type": "array", "items": {"type": "string"}},
        "default": {"type": "boolean"},
    },
    "required": ["city", "default"],
}


def test_schema_cleaner() -> None:
    assert clean_schema(SCHEMA) == CLEAN_SCHEMA
    assert "$defs" in SCHEMA and SCHEMA["properties"]["city"]["default"] == "Paris"  # untouched
    assert clean_schema({"type": "object", "properties": {}}) == {"type": "object"}
    assert clean_schema({"oneOf": [{"type": "string"}, {"type": "integer"}]}) == {
        "anyOf": [{"type": "string"}, {"type": "integer"}]
    }


def test_full_request_body() -> None:
    req = ir.Request(
        "gemini",
        [
            ir.Message(
                "user",
                [
                    ir.Text("Weather here?"),
                    ir.Image("image/png", data="iVBOR"),
                    ir.Image(url="https://example.com/photo.webp?size=2"),
                    ir.Image(url="data:image/gif;base64,R0lG"),
                ],
            ),
            ir.Message("user", [ir.Document("base64", "application/pdf", data="JVBER")]),
            ir.Message(
                "assistant",
                [
                    ir.Thinking("I should call the tool.", "sig"),
                    ir.Text(""),
                    ir.ToolCall("call_r_0", "get_weather", '{"city":"Paris"}', signature="Sig1"),
                    ir.ToolCall("call_r_1", "get_time", '{"tz":'),  # cut off: invalid JSON
                ],
            ),
            ir.Message(
                "user",
                [
                    ir.ToolResult("call_r_0", [ir.Text("18C")]),
                    ir.ToolResult("call_r_1", [ir.Text("bad tz")], is_error=True),
                    ir.ToolResult("other", [ir.Text("x")], name="named"),
                ],
            ),
            ir.Message("assistant", [ir.RedactedThinking("EmwK")]),  # no parts: dropped
            _user("Thanks"),
        ],
        system=[ir.Text("Be brief."), ir.Text("Use metric.")],
        tools=[ir.Tool("get_weather", "Weather by city", SCHEMA), ir.Tool("get_time")],
        tool_choice=ir.ToolChoice("tool", name="get_weather"),
        max_tokens=2048,
        temperature=0.3,
        top_p=0.9,
        top_k=20,
        stop=["a", "b", "c", "d", "e", "f"],
        thinking=ir.ThinkingConfig(effort="high"),
        response_format={"type": "json_schema", "name": "w", "schema": {"type": "object"}},
    )
    up, body = _built(req, "gemini-2.5-flash")
    assert up.url == f"{BASE}/v1beta/models/gemini-2.5-flash:generateContent"
    assert body == {
        "systemInstruction": {"parts": [{"text": "Be brief.\n\nUse metric."}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Weather here?"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}},
                    {
                        "fileData": {
                            "mimeType": "image/webp",
                            "fileUri": "https://example.com/photo.webp?size=2",
                        }
                    },
                    {"inlineData": {"mimeType": "image/gif", "data": "R0lG"}},
                    {"inlineData": {"mimeType": "application/pdf", "data": "JVBER"}},
                ],
            },
            {
                "role": "model",
                "parts": [
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": "Sig1",
                    },
                    {"functionCall": {"name": "get_time", "args": {}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"result": "18C"}}},
                    {"functionResponse": {"name": "get_time", "response": {"error": "bad tz"}}},
                    {"functionResponse": {"name": "named", "response": {"result": "x"}}},
                    {"text": "Thanks"},
                ],
            },
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Weather by city",
                        "parameters": CLEAN_SCHEMA,
                    },
                    {"name": "get_time"},
                ]
            }
        ],
        "toolConfig": {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
        },
        "generationConfig": {
            "temperature": 0.3,
            "topP": 0.9,
            "topK": 20,
            "maxOutputTokens": 2048,
            "stopSequences": ["a", "b", "c", "d", "e"],
            "thinkingConfig": {"thinkingBudget": 24576, "includeThoughts": True},
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object"},
        },
    }


@pytest.mark.parametrize(
    ("thinking", "expected"),
    [
        (ir.ThinkingConfig(effort="low"), {"thinkingBudget": 1024, "includeThoughts": True}),
        (ir.ThinkingConfig(effort="medium"), {"thinkingBudget": 8192, "includeThoughts": True}),
        (ir.ThinkingConfig(effort="high"), {"thinkingBudget": 24576, "includeThoughts": True}),
        (ir.ThinkingConfig(budget_tokens=300), {"thinkingBudget": 300, "includeThoughts": True}),
        (ir.ThinkingConfig(adaptive=True), {"thinkingBudget": -1, "includeThoughts": True}),
        (ir.ThinkingConfig(enabled=True), {"includeThoughts": True}),
        (ir.ThinkingConfig(enabled=False, budget_tokens=500), {"thinkingBudget": 0}),
        (ir.ThinkingConfig(effort="none"), {"thinkingBudget": 0}),
        (ir.ThinkingConfig(), None),
        (None, None),
    ],
)
def test_thinking_config(thinking: ir.ThinkingConfig | None, expected: Any) -> None:
    body = _built(ir.Request("m", [_user("hi")], thinking=thinking), "m")[1]
    assert body.get("generationConfig", {}).get("thinkingConfig") == expected


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        (ir.ToolChoice("auto"), {"mode": "AUTO"}),
        (ir.ToolChoice("any"), {"mode": "ANY"}),
        (ir.ToolChoice("none"), {"mode": "NONE"}),
    ],
)
def test_tool_choice(choice: ir.ToolChoice, config: dict[str, Any]) -> None:
    req = ir.Request("m", [_user("hi")], tools=[ir.Tool("t")], tool_choice=choice)
    assert _built(req, "m")[1]["toolConfig"] == {"functionCallingConfig": config}


def test_json_object_and_extras() -> None:
    req = ir.Request(
        "m",
        [_user("hi")],
        response_format={"type": "json_object"},
        extras={"safetySettings": [], "generationConfig": {"seed": 7, "responseMimeType": "x"}},
        extras_format="gemini",
    )
    body = _built(req, "m")[1]
    assert body["generationConfig"] == {"responseMimeType": "application/json", "seed": 7}
    assert body["safetySettings"] == []
    req.extras_format = "openai"
    assert "safetySettings" not in _built(req, "m")[1]


def test_count_tokens() -> None:
    req = ir.Request("m", [_user("hello")], max_tokens=5)
    up = GEMINI.build_count_tokens(req, "gemini-2.5-flash", api_key=KEY, base_url=BASE + "/")
    assert up.url == f"{BASE}/v1beta/models/gemini-2.5-flash:countTokens"
    assert orjson.loads(up.body) == {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}
    assert up.headers["x-goog-api-key"] == KEY

    req.system = [ir.Text("sys")]
    up = GEMINI.build_count_tokens(req, "gemini-2.5-flash", api_key=KEY, base_url=BASE)
    assert orjson.loads(up.body) == {
        "generateContentRequest": {
            "model": "models/gemini-2.5-flash",
            "contents": [{"role": "user", "parts": [{"text": "hello"}]}],
            "systemInstruction": {"parts": [{"text": "sys"}]},
        }
    }
    assert GEMINI.parse_count_tokens(b'{"totalTokens": 31, "promptTokensDetails": []}') == 31


# --------------------------------------------------------------------------------------------
# Errors


def test_recorded_429() -> None:
    resp = exchange("gemini__error_429.json")["response"]
    err = GEMINI.parse_error(429, orjson.dumps(resp["body"]), resp["headers"])
    assert err == ir.Error(
        "rate_limit",
        "You exceeded your current quota, please check your plan.",
        429,
        34.4,
        limit="requests",  # its quota id: GenerateRequestsPerMinute...
    )


def test_recorded_invalid_argument() -> None:
    resp = exchange("gemini__error_invalid_argument.json")["response"]
    err = GEMINI.parse_error(400, orjson.dumps(resp["body"]), resp["headers"])
    assert (err.kind, err.http_status) == ("invalid_request", 400)
    assert "temperature: must be in the range [0.0, 2.0]" in err.message


API_KEY_INVALID = {
    "error": {
        "code": 400,
        "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
            }
        ],
    }
}


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, API_KEY_INVALID),
        (403, {"error": {"code": 403, "message": "no", "status": "PERMISSION_DENIED"}}),
        (401, {"error": {"code": 401, "message": "no", "status": "UNAUTHENTICATED"}}),
        (401, "<html>unauthorized</html>"),
    ],
)
def test_gateway_key_problems_are_502(status: int, body: Any) -> None:
    raw = body.encode() if isinstance(body, str) else orjson.dumps(body)
    err = GEMINI.parse_error(status, raw, {})
    assert (err.kind, err.http_status) == ("api_error", 502)
    assert "gateway" in err.message and KEY not in err.message


@pytest.mark.parametrize(
    ("status", "name", "kind", "client_status"),
    [
        (400, "FAILED_PRECONDITION", "invalid_request", 400),
        (404, "NOT_FOUND", "not_found", 404),
        (500, "INTERNAL", "api_error", 500),
        (503, "UNAVAILABLE", "overloaded", 503),
        (504, "DEADLINE_EXCEEDED", "timeout", 504),
        (409, "ABORTED", "invalid_request", 400),
        (502, "", "api_error", 502),
    ],
)
def test_error_status_mapping(status: int, name: str, kind: str, client_status: int) -> None:
    body = orjson.dumps({"error": {"code": status, "message": "msg", "status": name}})
    err = GEMINI.parse_error(status, body, {})
    assert (err.kind, err.http_status, err.message) == (kind, client_status, "msg")


@pytest.mark.parametrize("body", [b"<html>oops</html>", b"", b'[{"error": {"code": 503}}]'])
def test_odd_error_bodies(body: bytes) -> None:
    err = GEMINI.parse_error(503, body, {"retry-after": "3"})
    assert (err.kind, err.http_status, err.retry_after) == ("overloaded", 503, 3.0)
    assert "html" not in err.message


@pytest.mark.parametrize("body", [b"<html>", b"[]", b"", b"42"])
def test_unreadable_200_body_is_an_error_not_a_crash(body: bytes) -> None:
    (err,) = GEMINI.parse_response(body)
    assert isinstance(err, ir.Error) and err.http_status == 502


@pytest.mark.parametrize("newline", [b"\n", b"\r"])
@pytest.mark.parametrize("sizes", [None, [1], [5]])
def test_other_line_endings(newline: bytes, sizes: list[int] | None) -> None:
    name = "gemini__thinking_stream.sse"
    data = recording(name).replace(b"\r\n", newline)
    assert decode(data, sizes) == GOLDEN[name]
