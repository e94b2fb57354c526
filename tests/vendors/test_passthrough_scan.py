"""The fast-path scan template (vendors/base.py PassthroughScan) over each same-format wire: the
client gets the vendor's bytes unchanged however the network cut them, the event with the final
usage is held until the settlement and then carries the cost where the client's SDK reads it,
and the usage billed is the vendor's."""

from __future__ import annotations

import itertools

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenrelay import ir
from tokenrelay.sse import SSEParser
from tokenrelay.vendors.anthropic import ANTHROPIC
from tokenrelay.vendors.base import PassthroughScan, Vendor
from tokenrelay.vendors.gemini import GEMINI
from tokenrelay.vendors.openai import OPENAI
from tokenrelay.vendors.openai_responses import RESPONSES

CHAT = (
    b'data: {"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}\n\n'
    b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
)
CHAT_USAGE = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2}}\n\n'
ANTHROPIC_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","usage":'
    b'{"input_tokens":7,"output_tokens":1}}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
    b'{"type":"text_delta","text":"Hi"}}\n\n'
)
ANTHROPIC_END = (
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
    b'"usage":{"output_tokens":2}}\n\n'
)
GEMINI_STREAM = (
    b'data: {"candidates":[{"content":{"parts":[{"text":"Hi"}]},"index":0}],'
    b'"usageMetadata":{"promptTokenCount":7,"candidatesTokenCount":1}}\n\n'
)
GEMINI_END = (
    b'data: {"candidates":[{"content":{"parts":[{"text":"!"}]},"finishReason":"STOP",'
    b'"index":0}],"usageMetadata":{"promptTokenCount":7,"candidatesTokenCount":2}}\n\n'
)
RESPONSES_STREAM = (
    b'event: response.created\ndata: {"type":"response.created","response":{"id":"r"}}\n\n'
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
    b'"delta":"Hi"}\n\n'
)
RESPONSES_END = (
    b'event: response.completed\ndata: {"type":"response.completed","response":{"id":"r",'
    b'"usage":{"input_tokens":7,"output_tokens":2}}}\n\n'
)

# vendor, what goes out before the settlement, the held end, where the client reads the cost
WIRES = {
    "chat": (OPENAI, CHAT, CHAT_USAGE + b"data: [DONE]\n\n", ("usage", "cost_usd")),
    "anthropic": (
        ANTHROPIC,
        ANTHROPIC_STREAM,
        ANTHROPIC_END + b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
        ("usage", "cost_usd"),
    ),
    "gemini": (GEMINI, GEMINI_STREAM, GEMINI_END, ("usageMetadata", "costUsd")),
    "responses": (RESPONSES, RESPONSES_STREAM, RESPONSES_END, ("response", "usage", "cost_usd")),
}


def _run(
    vendor: Vendor, wire: bytes, cuts: list[int], client_usage: bool = True
) -> tuple[PassthroughScan, bytes, list[ir.Usage]]:
    usages: list[ir.Usage] = []
    scan = vendor.passthrough_scan(usages.append, client_usage=client_usage)
    parser = SSEParser()
    out = b""
    bounds = [0, *sorted({c % (len(wire) + 1) for c in cuts}), len(wire)]
    for a, b in itertools.pairwise(bounds):
        out += scan.process(parser.feed(wire[a:b]))
    out += scan.process(parser.flush())
    return scan, out, usages


@pytest.mark.parametrize("name", WIRES)
@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_bytes_pass_unchanged_and_the_end_waits_for_the_settlement(
    name: str, cuts: list[int]
) -> None:
    vendor, head, end, path = WIRES[name]
    scan, out, usages = _run(vendor, head + end, cuts)
    assert out == head  # nothing of the end before the settlement
    assert scan.done and scan.failed is None
    assert scan.render_tail({}) == end  # no cost to add: the vendor's own bytes
    billed = ir.UsageTotals()
    for u in usages:
        billed.apply(u)
    assert (billed.input, billed.output) == (7, 2)
    final = scan.render_tail({"cost_usd": 0.25}).split(b"\n\n")[0]
    obj = orjson.loads(final.split(b"data: ", 1)[1])
    for key in path:
        obj = obj[key]
    assert obj == 0.25


def test_a_chat_client_that_did_not_ask_for_usage_does_not_get_the_usage_chunk() -> None:
    scan, out, usages = _run(OPENAI, CHAT + CHAT_USAGE + b"data: [DONE]\n\n", [], False)
    assert out == CHAT and scan.render_tail({"cost_usd": 1}) == b"data: [DONE]\n\n"
    assert [u.output for u in usages] == [2]


ERRORS = {
    "chat": b'data: {"error":{"type":"server_error","message":"busy"}}\n\n',
    "anthropic": b'event: error\ndata: {"type":"error","error":{"message":"busy"}}\n\n',
}


@pytest.mark.parametrize("name", ERRORS)
def test_an_error_after_the_final_usage_reaches_the_client_with_what_was_held(name: str) -> None:
    vendor, head, end, _ = WIRES[name]
    final = end.split(b"\n\n")[0] + b"\n\n"
    scan, out, _ = _run(vendor, head + final + ERRORS[name], [])
    assert out == head + final + ERRORS[name]
    assert scan.failed == "busy" and scan.error_forwarded and not scan.done


@pytest.mark.parametrize("name", WIRES)
def test_a_long_stream_cut_short_still_yields_every_word_that_reached_the_client(
    name: str,
) -> None:
    """What an unfinished stream is billed on (its estimate) is every word delivered, however
    long the stream ran: what went by is kept packed, not dropped."""
    vendor, head, _, _ = WIRES[name]
    words = [f"w{i} " for i in range(400)]  # ~40 KB of events: packed many times over
    template = next(ev + b"\n\n" for ev in head.split(b"\n\n") if b'"Hi"' in ev)
    wire = b"".join(template.replace(b'"Hi"', b'"%s"' % w.encode()) for w in words)
    scan, out, _ = _run(vendor, wire, list(range(0, len(wire), 997)))
    assert out == wire
    text = "".join(
        ev.value for ev in scan.generated() if isinstance(ev, ir.Delta) and ev.kind == "text"
    )
    assert text == "".join(words)
