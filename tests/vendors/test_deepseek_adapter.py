"""DeepSeek adapter: recorded bytes → golden IR events (cache hits, usage on the finish chunk,
keep-alives), thinking knobs and reasoning_content replay, 402 → gateway problem."""

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
from tokenrelay.vendors.deepseek import CAPACITY_CUT, DEEPSEEK


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


def with_keepalives(data: bytes) -> bytes:
    """DeepSeek sends `: keep-alive` comment events while a request is queued or slow."""
    return b": keep-alive\n\n" + data.replace(b"\n\ndata: ", b"\n\n: keep-alive\n\ndata: ", 5)


def body_of(req: ir.Request, model: str | None = None) -> dict[str, Any]:
    url = "https://api.deepseek.com"
    call = DEEPSEEK.build_request(req, model or req.model, api_key="sk-d", base_url=url)
    return orjson.loads(call.body)


# ----------------------------------------------------------------------------- streams

REASONING_TEXT = (
    'We need to count the number of the letter "r" in the word "strawberry". The word is '
    'spelled: s-t-r-a-w-b-e-r-r-y. Let\'s list the letters and count the "r"s:\n\nPosition 1: '
    "s\n2: t\n3: r (first r)\n4: a\n5: w\n6: b\n7: e\n8: r (second r)\n9: r (third r)\n10: y\n\n"
    'So there are three "r"s. But wait, let\'s double-check: "strawberry" indeed has three '
    '"r"s: one after "t", and then two consecutive "r"s before "y". So the answer is 3.\n\n'
    "The question is straightforward. However, sometimes people might miscount. Let's ensure: "
    'The word has 10 letters. The "r"s are at positions 3, 8, and 9. So yes, 3.\n\nThus, the '
    "answer is 3."
)
ANSWER_TOKENS = ["The", " word", ' "', "st", "raw", "berry", '"', " contains", " three", ' "', "r",
                 '"s', "."]  # fmt: skip

TOOL_REASONING = (
    "The user is asking for the weather in San Francisco. I need to use the weather tool to get "
    'this information. Let me invoke the weather tool with the location parameter set to "San '
    'Francisco".'
)
TOOL_ARGS = ["{", '"', "location", '"', ": ", '"', "San", " Francisco", '"', "}"]


def split_runs(events: list[ir.Event]) -> list[ir.Event | tuple[int, str, list[str]]]:
    """Collapse each run of Deltas into (index, kind, [values]) so long streams stay readable
    in golden sequences while every single delta value is still compared."""
    out: list[ir.Event | tuple[int, str, list[str]]] = []
    for ev in events:
        last = out[-1] if out else None
        if isinstance(ev, ir.Delta):
            if isinstance(last, tuple) and last[:2] == (ev.index, ev.kind):
                last[2].append(ev.value)
            else:
                out.append((ev.index, ev.kind, [ev.value]))
        else:
            out.append(ev)
    return out


def check_reasoning_stream(events: list[ir.Event]) -> None:
    runs = split_runs(events)
    assert runs[:2] == [
        ir.Start("cac7192e-e619-40c6-96b0-ed4276bc03ac", "deepseek-reasoner"),
        ir.BlockStart(0, "thinking"),
    ]
    index, kind, values = runs[2]  # type: ignore[misc]
    assert (index, kind, len(values), "".join(values)) == (0, "thinking", 205, REASONING_TEXT)
    assert values[:3] == ["We", " need", " to"]
    assert runs[3:] == [
        ir.BlockStop(0),
        ir.BlockStart(1, "text"),
        (1, "text", ANSWER_TOKENS),
        ir.BlockStop(1),
        # usage rides on the finish chunk: emitted before the Finish of the same chunk
        ir.Usage(input=18, output=219, cache_read=0, reasoning=205),
        ir.Finish("end_turn"),
    ]


def check_tool_call_stream(events: list[ir.Event]) -> None:
    runs = split_runs(events)
    assert runs[:2] == [
        ir.Start("cca85624-4056-401f-b220-d77601d1f70d", "deepseek-reasoner"),
        ir.BlockStart(0, "thinking"),
    ]
    index, kind, values = runs[2]  # type: ignore[misc]
    assert (index, kind, len(values), "".join(values)) == (0, "thinking", 39, TOOL_REASONING)
    assert runs[3:] == [
        ir.BlockStop(0),
        ir.BlockStart(
            1, "tool_call", tool_call_id="call_00_ioIn7yN9p1ZOMNpDLwd4MgAF", name="weather"
        ),
        (1, "arguments", TOOL_ARGS),  # the empty first fragment is not an event
        ir.BlockStop(1),
        ir.Usage(input=19, output=83, cache_read=320, reasoning=39),  # cache hits 320 of 339
        ir.Finish("tool_use"),
    ]


def check_text_stream(events: list[ir.Event]) -> None:
    runs = split_runs(events)
    assert runs[:2] == [
        ir.Start("f6117a0b-129d-46fa-b239-78f01c2c5df9", "deepseek-chat"),
        ir.BlockStart(0, "text"),
    ]
    index, kind, values = runs[2]  # type: ignore[misc]
    text = "".join(values)
    assert (index, kind, len(values)) == (0, "text", 400)
    assert values[:4] == ["##", " **", "H", "olid"]
    assert text.startswith("## **Holiday Name:** Starlight Remembrance\n\n**Date:**")
    assert text.endswith("observe 15 minutes of silent looking at")
    assert runs[3:] == [
        ir.BlockStop(0),
        ir.Usage(input=13, output=400, cache_read=0, reasoning=None),
        ir.Finish("max_tokens"),
    ]


CHECKS = {
    "deepseek__reasoning_stream": check_reasoning_stream,
    "deepseek__tool_call_stream": check_tool_call_stream,
    "deepseek__text_stream": check_text_stream,
}


@pytest.mark.parametrize("keepalive", [False, True])
@pytest.mark.parametrize("step", CHUNKINGS)
@pytest.mark.parametrize("name", sorted(CHECKS))
def test_stream_golden_events(name: str, step: int | None, keepalive: bool) -> None:
    data = with_keepalives(sse(name)) if keepalive else sse(name)
    CHECKS[name](decode(DEEPSEEK, data, step))


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(sorted(CHECKS)), cuts=st.lists(st.integers(0, 200_000), max_size=40))
def test_stream_any_chunking(name: str, cuts: list[int]) -> None:
    data = with_keepalives(sse(name))
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    decoder = DEEPSEEK.stream_decoder(UpstreamRequest("POST", "u", {}, b""))
    events: list[ir.Event] = []
    for a, b in itertools.pairwise(bounds):
        events += decoder.feed(data[a:b])
    CHECKS[name](events + decoder.close())


def test_fold_tool_call_stream() -> None:
    resp = ir.fold(decode(DEEPSEEK, sse("deepseek__tool_call_stream"), 7))
    assert resp.content == [
        ir.Thinking(TOOL_REASONING),
        ir.ToolCall("call_00_ioIn7yN9p1ZOMNpDLwd4MgAF", "weather", '{"location": "San Francisco"}'),
    ]
    u = resp.usage
    assert (u.input, u.cache_read, u.output, u.reasoning, u.prompt_total) == (19, 320, 83, 39, 339)


def head_chunks(n: int) -> bytes:
    events = sse("deepseek__text_stream").split(b"\n\n")
    return b"".join(e + b"\n\n" for e in events[:n])


MIDSTREAM_HEAD: list[ir.Event] = [
    ir.Start("f6117a0b-129d-46fa-b239-78f01c2c5df9", "deepseek-chat"),
    ir.BlockStart(0, "text"),
    ir.Delta(0, "text", "##"),
    ir.Delta(0, "text", " **"),
]


@pytest.mark.parametrize("step", CHUNKINGS)
def test_midstream_error_event(step: int | None) -> None:
    """Not recorded for DeepSeek: real chunks, a keep-alive, then an OpenAI-shaped error."""
    error = b'{"error":{"message":"Service is too busy","type":"server_error","code":"503"}}'
    data = head_chunks(3) + b": keep-alive\n\ndata: " + error + b"\n\n" + head_chunks(5)
    assert decode(DEEPSEEK, data, step) == [
        *MIDSTREAM_HEAD,
        ir.Error("overloaded", "Service is too busy", 503),
    ]


@pytest.mark.parametrize("step", CHUNKINGS)
def test_insufficient_system_resource_is_an_error_after_the_output(step: int | None) -> None:
    final = (
        b'data: {"id":"f6117a0b-129d-46fa-b239-78f01c2c5df9","choices":[{"index":0,"delta":'
        b'{"content":""},"finish_reason":"insufficient_system_resource"}],"usage":'
        b'{"prompt_tokens":13,"completion_tokens":2,"prompt_cache_hit_tokens":0}}\n\n'
        b"data: [DONE]\n\n"
    )
    assert decode(DEEPSEEK, head_chunks(3) + final, step) == [
        *MIDSTREAM_HEAD,
        ir.BlockStop(0),
        ir.Usage(input=13, output=2, cache_read=0, reasoning=None),
        ir.Error("overloaded", CAPACITY_CUT, 503),
    ]


# ----------------------------------------------------------------------------- non-stream


def test_parse_text_response_with_leading_keepalive_lines() -> None:
    body = recorded("deepseek__text")["response"]["body"]
    text = body["choices"][0]["message"]["content"]
    raw = b"\n\n\n" + orjson.dumps(body)  # DeepSeek's non-stream keep-alive: blank lines
    assert DEEPSEEK.parse_response(raw) == [
        ir.Start("00f10ecd-60b3-4707-b5db-e4bcadf7aea1", "deepseek-chat"),
        ir.BlockStart(0, "text"),
        ir.Delta(0, "text", text),
        ir.BlockStop(0),
        ir.Usage(input=13, output=300, cache_read=0, reasoning=None),
        ir.Finish("max_tokens"),
    ]


def test_parse_reasoning_response() -> None:
    body = recorded("deepseek__reasoning")["response"]["body"]
    message = body["choices"][0]["message"]
    assert DEEPSEEK.parse_response(orjson.dumps(body)) == [
        ir.Start("945bb10c-9bf3-47ff-a2a2-43bbe9705c72", "deepseek-reasoner"),
        ir.BlockStart(0, "thinking"),
        ir.Delta(0, "thinking", message["reasoning_content"]),
        ir.BlockStop(0),
        ir.BlockStart(1, "text"),
        ir.Delta(1, "text", message["content"]),
        ir.BlockStop(1),
        ir.Usage(input=18, output=345, cache_read=0, reasoning=315),
        ir.Finish("end_turn"),
    ]


def test_parse_tool_call_response() -> None:
    body = recorded("deepseek__tool_call")["response"]["body"]
    message = body["choices"][0]["message"]
    assert DEEPSEEK.parse_response(orjson.dumps(body)) == [
        ir.Start("7a630f5b-b7e6-4878-82f8-d77db164d42b", "deepseek-reasoner"),
        ir.BlockStart(0, "thinking"),
        ir.Delta(0, "thinking", message["reasoning_content"]),
        ir.BlockStop(0),
        ir.BlockStart(
            1, "tool_call", tool_call_id="call_00_9V0vrf86Pc9aelHCJMZqnJBo", name="weather"
        ),
        ir.Delta(1, "arguments", '{"location": "San Francisco"}'),
        ir.BlockStop(1),
        ir.Usage(input=19, output=92, cache_read=320, reasoning=48),
        ir.Finish("tool_use"),
    ]


# ----------------------------------------------------------------------------- requests


@pytest.mark.parametrize(
    "name", ["deepseek__text_stream", "deepseek__reasoning_stream", "deepseek__tool_call_stream"]
)
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
    call = DEEPSEEK.build_request(
        req, body["model"], api_key="sk-d", base_url="https://api.deepseek.com"
    )
    assert call.url == rec["url"]
    assert orjson.loads(call.body) == body


def conversation(thinking: ir.ThinkingConfig | None = None) -> ir.Request:
    return ir.Request(
        model="deepseek-v4-pro",
        system=[ir.Text("Be brief.")],
        messages=[
            ir.Message("user", [ir.Text("Weather in SF?")]),
            ir.Message("assistant", [
                ir.Thinking("Need the tool."),
                ir.ToolCall("call_00_a", "weather", '{"location":"SF"}'),
            ]),
            ir.Message("user", [ir.ToolResult("call_00_a", [ir.Text("15°C")])]),
            ir.Message("assistant", [ir.Thinking("Easy."), ir.Text("15°C in SF.")]),
            ir.Message("user", [ir.Text("Thanks")]),
        ],
        max_tokens=1000,
        thinking=thinking,
    )  # fmt: skip


def test_reasoning_content_only_on_tool_call_turns() -> None:
    assert body_of(conversation(ir.ThinkingConfig(enabled=True, effort="medium"))) == {
        "model": "deepseek-v4-pro",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in SF?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_00_a",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"location":"SF"}'},
                    }
                ],
                "reasoning_content": "Need the tool.",
            },
            {"role": "tool", "tool_call_id": "call_00_a", "content": "15°C"},
            {"role": "assistant", "content": "15°C in SF."},  # stripped: no tool calls
            {"role": "user", "content": "Thanks"},
        ],
        "max_tokens": 1000,
        "thinking": {"type": "enabled"},
        "reasoning_effort": "high",  # low/medium → high
    }


@pytest.mark.parametrize(
    ("thinking", "expected"),
    [
        (None, {}),
        (ir.ThinkingConfig(enabled=False), {"thinking": {"type": "disabled"}}),
        (ir.ThinkingConfig(enabled=True, budget_tokens=4096), {"thinking": {"type": "enabled"}}),
        (ir.ThinkingConfig(effort="max"), {"reasoning_effort": "max"}),
        (ir.ThinkingConfig(enabled=True, effort="xhigh"),
         {"thinking": {"type": "enabled"}, "reasoning_effort": "max"}),
        (ir.ThinkingConfig(effort="none"), {"thinking": {"type": "disabled"}}),
        (ir.ThinkingConfig(enabled=False, effort="high"), {"thinking": {"type": "disabled"}}),
    ],
)  # fmt: skip
def test_thinking_knobs(thinking: ir.ThinkingConfig | None, expected: dict[str, Any]) -> None:
    body = body_of(conversation(thinking))
    assert {k: body[k] for k in ("thinking", "reasoning_effort") if k in body} == expected
    assert body["max_tokens"] == 1000 and "max_completion_tokens" not in body


# ----------------------------------------------------------------------------- errors


def test_recorded_insufficient_balance_is_the_gateways_problem() -> None:
    resp = recorded("deepseek__error_insufficient_balance")["response"]
    err = DEEPSEEK.parse_error(resp["status"], orjson.dumps(resp["body"]), resp["headers"])
    assert (err.kind, err.http_status) == ("api_error", 502)
    assert "Insufficient Balance" not in err.message  # not the customer's balance


@pytest.mark.parametrize(
    ("status", "message", "kind", "client_status"),
    [
        (401, "Authentication Fails, Your api key: ****abcd is invalid", "api_error", 502),
        (400, "Invalid format", "invalid_request", 400),
        (422, "Invalid parameters: top_logprobs", "invalid_request", 400),
        (429, "Rate limit reached", "rate_limit", 429),
        (500, "Server error", "api_error", 500),
        (503, "Server overloaded", "overloaded", 503),
    ],
)
def test_error_statuses(status: int, message: str, kind: str, client_status: int) -> None:
    body = orjson.dumps(
        {"error": {"message": message, "type": "x", "param": None, "code": "invalid_request_error"}}
    )
    err = DEEPSEEK.parse_error(status, body, {})
    assert (err.kind, err.http_status) == (kind, client_status)
    assert "****" not in err.message
