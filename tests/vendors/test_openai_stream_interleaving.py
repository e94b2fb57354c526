"""OpenAI-compatible streams may interleave a tool call's chunks with reasoning and text
(DeepSeek sends a call's id and name, then `reasoning_content`, then the arguments). Whatever
the order, every argument byte and every reasoning and text byte reaches the IR."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenrelay import ir
from tokenrelay.vendors.base import UpstreamRequest
from tokenrelay.vendors.deepseek import DEEPSEEK
from tokenrelay.vendors.openai import OPENAI
from tokenrelay.vendors.xai import XAI


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    obj = {
        "id": "c1",
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(obj) + b"\n\n"


@st.composite
def interleaved_streams(draw: st.DrawFn) -> tuple[list[bytes], dict[str, str], str, str]:
    """Chunks of sequential tool calls (id+name first, arguments in pieces), with reasoning and
    text deltas dropped in anywhere; returns the chunks and what they add up to."""
    calls = draw(
        st.lists(
            st.text(st.characters(codec="utf-8"), min_size=1, max_size=40), min_size=1, max_size=3
        )
    )
    call_chunks: list[dict[str, Any]] = []
    for i, args in enumerate(calls):
        call_chunks.append(
            {
                "tool_calls": [
                    {
                        "index": i,
                        "id": f"call_{i}",
                        "type": "function",
                        "function": {"name": f"f{i}", "arguments": ""},
                    }
                ]
            }
        )
        cuts = sorted(draw(st.lists(st.integers(0, len(args)), max_size=4)))
        for a, b in zip([0, *cuts], [*cuts, len(args)], strict=True):
            if a < b:
                call_chunks.append(
                    {"tool_calls": [{"index": i, "function": {"arguments": args[a:b]}}]}
                )
    extras = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["reasoning_content", "content"]), st.text(min_size=1, max_size=8)
            ),
            max_size=8,
        )
    )
    chunks = list(call_chunks)
    for kind, value in extras:
        chunks.insert(draw(st.integers(0, len(chunks))), {kind: value})
    data = b"".join(_chunk(d) for d in chunks) + _chunk({}, "tool_calls") + b"data: [DONE]\n\n"
    step = draw(st.integers(1, 64))
    pieces = [data[i : i + step] for i in range(0, len(data), step)]
    reasoning = "".join(d.get("reasoning_content", "") for d in chunks)
    text = "".join(d.get("content", "") for d in chunks)
    return pieces, {f"call_{i}": a for i, a in enumerate(calls)}, reasoning, text


@settings(max_examples=300, deadline=None)
@given(stream=interleaved_streams(), vendor=st.sampled_from([DEEPSEEK, OPENAI, XAI]))
def test_no_byte_of_an_interleaved_stream_is_lost(
    stream: tuple[list[bytes], dict[str, str], str, str], vendor: Any
) -> None:
    pieces, arguments, reasoning, text = stream
    decoder = vendor.stream_decoder(UpstreamRequest("POST", "u", {}, b""))
    events: list[ir.Event] = []
    for piece in pieces:
        events += decoder.feed(piece)
    events += decoder.close()
    folded = ir.fold(events)
    calls = {p.id: p.arguments for p in folded.content if isinstance(p, ir.ToolCall)}
    assert calls == arguments
    assert "".join(p.text for p in folded.content if isinstance(p, ir.Thinking)) == reasoning
    assert "".join(p.text for p in folded.content if isinstance(p, ir.Text)) == text
    assert folded.stop_reason == "tool_use"
