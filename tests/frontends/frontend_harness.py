"""Helpers for the frontend codec tests: official SDK clients served canned bytes in memory.

Both SDKs talk through `httpx2` (their own httpx fork), so the mock transport is httpx2's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anthropic
import httpx2
import openai
import orjson

from tokenrelay import ir
from tokenrelay.errors import GatewayError
from tokenrelay.frontends.base import StreamRenderer


def _transport(status: int, body: bytes, content_type: str) -> httpx2.MockTransport:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, content=body, headers={"content-type": content_type})

    return httpx2.MockTransport(handler)


def anthropic_client(
    body: bytes | dict[str, Any], status: int = 200, content_type: str | None = None
) -> anthropic.Anthropic:
    raw, ctype = _encode(body, content_type)
    return anthropic.Anthropic(
        api_key="x",
        base_url="http://t",
        max_retries=0,
        http_client=httpx2.Client(transport=_transport(status, raw, ctype)),
    )


def openai_client(
    body: bytes | dict[str, Any], status: int = 200, content_type: str | None = None
) -> openai.OpenAI:
    raw, ctype = _encode(body, content_type)
    return openai.OpenAI(
        api_key="x",
        base_url="http://t/v1",
        max_retries=0,
        http_client=httpx2.Client(transport=_transport(status, raw, ctype)),
    )


def _encode(body: bytes | dict[str, Any], content_type: str | None) -> tuple[bytes, str]:
    if isinstance(body, bytes):
        return body, content_type or "text/event-stream"
    return orjson.dumps(body), content_type or "application/json"


def render_stream(
    renderer: StreamRenderer,
    events: list[ir.Event],
    extra_usage: Mapping[str, Any] | None = None,
) -> bytes:
    """Render events as the relay does: a trailing ir.Error goes through `error`, otherwise
    the stream ends with `end(folded usage)`."""
    out = b""
    for ev in events:
        if isinstance(ev, ir.Error):
            return out + renderer.error(GatewayError.from_ir(ev))
        out += renderer.render(ev)
    return out + renderer.end(ir.fold(events).usage, extra_usage or {})


# ------------------------------------------------------------------------ event sequences


def text_events(msg_id: str = "msg_fixed", model: str = "m-1") -> list[ir.Event]:
    return [
        ir.Start(msg_id, model),
        ir.Usage(input=11, output=1, cache_read=3, cache_write=2),
        ir.BlockStart(0, "text"),
        ir.Delta(0, "text", "Hello"),
        ir.Delta(0, "text", ' "there"!'),
        ir.BlockStop(0),
        ir.Usage(output=6),
        ir.Finish("end_turn"),
    ]


def thinking_events(msg_id: str = "msg_think") -> list[ir.Event]:
    return [
        ir.Start(msg_id, "m-think"),
        ir.Usage(input=20),
        ir.BlockStart(0, "thinking"),
        ir.Delta(0, "thinking", "Let me "),
        ir.Delta(0, "thinking", "think."),
        ir.Delta(0, "signature", "SIG123=="),
        ir.BlockStop(0),
        ir.BlockStart(1, "redacted_thinking", data="REDACTED=="),
        ir.BlockStop(1),
        ir.BlockStart(2, "text"),
        ir.Delta(2, "text", "42"),
        ir.BlockStop(2),
        ir.Usage(output=30, reasoning=12),
        ir.Finish("end_turn"),
    ]


def tool_events(msg_id: str = "resp-123") -> list[ir.Event]:
    """Text then two parallel calls; IR indexes deliberately not contiguous, the second call
    carries a Gemini-style signature, arguments arrive in fragments."""
    return [
        ir.Start(msg_id, "m-tools"),
        ir.Usage(input=100, cache_read=50),
        ir.BlockStart(0, "text"),
        ir.Delta(0, "text", "Checking."),
        ir.BlockStop(0),
        ir.BlockStart(3, "tool_call", tool_call_id="call_a", name="get_weather"),
        ir.Delta(3, "arguments", ""),
        ir.Delta(3, "arguments", '{"city":'),
        ir.Delta(3, "arguments", '"Paris"}'),
        ir.BlockStop(3),
        ir.BlockStart(7, "tool_call", tool_call_id="call_b", name="get_time", data="gem-sig"),
        ir.Delta(7, "signature", "more-sig"),
        ir.Delta(7, "arguments", '{"tz":"Europe/'),
        ir.Delta(7, "arguments", 'Paris","fmt":24}'),
        ir.BlockStop(7),
        ir.Usage(output=40),
        ir.Finish("tool_use"),
    ]


def midstream_error_events() -> list[ir.Event]:
    return [
        ir.Start("msg_err", "m-1"),
        ir.Usage(input=5),
        ir.BlockStart(0, "text"),
        ir.Delta(0, "text", "Once upon"),
        ir.Error("overloaded", "Overloaded", 529),
    ]


ERROR_KINDS: list[ir.ErrorKind] = [
    "invalid_request",
    "authentication",
    "permission",
    "not_found",
    "request_too_large",
    "rate_limit",
    "billing",
    "overloaded",
    "timeout",
    "api_error",
]
