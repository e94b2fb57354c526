"""The Anthropic Messages frontend: request parsing (see anthropic_parse) and rendering of IR
events as Anthropic SSE, message JSON and error bodies.

Rendering runs once per streamed token: per block the renderer pre-builds the byte prefix of its
`content_block_delta` events, so a delta costs one orjson string dump and two concatenations.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from tokenrelay import ir
from tokenrelay.errors import GatewayError
from tokenrelay.frontends.anthropic.parse import (
    parse_count_tokens_request,
    parse_messages_request,
)
from tokenrelay.gateway.codec import ExtraUsage
from tokenrelay.sse import Framing

# kind → (Anthropic error type, HTTP status; None = the error's own status, at least 500)
_ERRORS: dict[ir.ErrorKind, tuple[str, int | None]] = {
    "invalid_request": ("invalid_request_error", 400),
    "authentication": ("authentication_error", 401),
    "permission": ("permission_error", 403),
    "not_found": ("not_found_error", 404),
    "request_too_large": ("request_too_large", 413),
    "rate_limit": ("rate_limit_error", 429),
    "billing": ("billing_error", 402),
    "overloaded": ("overloaded_error", 529),
    "timeout": ("timeout_error", 504),
    "api_error": ("api_error", None),
}

_END = b"}}\n\n"
_BLOCK_STOP = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def _error_type_and_status(err: GatewayError) -> tuple[str, int]:
    error_type, status = _ERRORS.get(err.kind, ("api_error", None))
    if err.kind == "overloaded" and err.status == 503:
        return error_type, 503  # a 503 stays a 503; any other overload is Anthropic's 529
    return error_type, status if status is not None else max(err.status, 500)


def _message_id(upstream_id: str) -> str:
    return upstream_id if upstream_id.startswith("msg_") else "msg_" + uuid.uuid4().hex


def _usage(u: ir.UsageTotals, extra: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "input_tokens": u.input,
        "cache_creation_input_tokens": u.cache_write,
        "cache_read_input_tokens": u.cache_read,
        "output_tokens": u.output,
        **extra,
    }


def _event(name: bytes, payload: dict[str, Any]) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _delta_prefix(index: int, delta_type: str, field: str) -> bytes:
    return (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
        b'"delta":{"type":"%s","%s":' % (index, delta_type.encode(), field.encode())
    )


class AnthropicStreamRenderer:
    """IR events → Anthropic SSE for one response. Not thread-safe; one per stream."""

    usage_at_start = True

    __slots__ = (
        "_finish",
        "_id",
        "_model",
        "_next_index",
        "_open",
        "_prefixes",
        "_request_id",
        "_started",
        "_usage",
    )

    def __init__(self, *, request_id: str) -> None:
        self._request_id = request_id
        self._id = ""
        self._model = ""
        self._usage = ir.UsageTotals()
        self._started = False
        self._next_index = 0
        self._open: dict[int, int] = {}  # IR block index → client block index
        self._prefixes: dict[int, dict[str, bytes]] = {}  # IR index → delta kind → prefix
        self._finish: ir.Finish | None = None

    def render(self, ev: ir.Event) -> bytes:
        if isinstance(ev, ir.Delta):  # the hot path: the block is open, message_start sent
            prefix = self._prefixes.get(ev.index, {}).get(ev.kind)
            return b"" if prefix is None else prefix + orjson.dumps(ev.value) + _END
        if isinstance(ev, ir.Usage):
            self._usage.apply(ev)
            return b""
        if isinstance(ev, ir.Start):
            self._id, self._model = ev.id, ev.model
            return b""
        if isinstance(ev, ir.Finish):
            self._finish = ev
            return b""
        if isinstance(ev, ir.Error):
            return self.error(GatewayError.from_ir(ev))
        head = self._message_start()
        if isinstance(ev, ir.BlockStart):
            return head + self._block_start(ev)
        return head + self._block_stop(ev.index)

    def end(self, usage: ir.UsageTotals, extra_usage: Mapping[str, Any]) -> bytes:
        out = self._message_start()
        for ir_index in list(self._open):  # a cut-off block still gets its stop
            out += self._block_stop(ir_index)
        finish = self._finish or ir.Finish("end_turn")
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": finish.stop_reason, "stop_sequence": finish.stop_sequence},
            "usage": _usage(usage, extra_usage),
        }
        return out + _event(b"message_delta", delta) + _MESSAGE_STOP

    def error(self, err: GatewayError) -> bytes:
        error_type, _ = _error_type_and_status(err)
        payload = {
            "type": "error",
            "error": {"type": error_type, "message": err.message},
            "request_id": self._request_id,
        }
        return _event(b"error", payload)

    def _message_start(self) -> bytes:
        # Sent lazily so that the Usage right after Start (input and cache counts) is in it.
        if self._started:
            return b""
        self._started = True
        u = self._usage
        message: dict[str, Any] = {
            "id": _message_id(self._id),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": u.input,
                "cache_creation_input_tokens": u.cache_write,
                "cache_read_input_tokens": u.cache_read,
                "output_tokens": 1,
            },
        }
        return _event(b"message_start", {"type": "message_start", "message": message})

    def _block_start(self, ev: ir.BlockStart) -> bytes:
        index = self._next_index  # contiguous 0..n whatever the IR indexes are
        self._next_index += 1
        self._open[ev.index] = index
        block: dict[str, Any]
        if ev.kind == "text":
            block = {"type": "text", "text": ""}
            self._prefixes[ev.index] = {"text": _delta_prefix(index, "text_delta", "text")}
        elif ev.kind == "thinking":
            block = {"type": "thinking", "thinking": "", "signature": ""}
            self._prefixes[ev.index] = {
                "thinking": _delta_prefix(index, "thinking_delta", "thinking"),
                "signature": _delta_prefix(index, "signature_delta", "signature"),
            }
        elif ev.kind == "redacted_thinking":
            block = {"type": "redacted_thinking", "data": ev.data or ""}
        else:
            # A Gemini thoughtSignature (ev.data) has no place on an Anthropic tool_use: dropped.
            block = {
                "type": "tool_use",
                "id": ev.tool_call_id or "",
                "name": ev.name or "",
                "input": {},
            }
            self._prefixes[ev.index] = {
                "arguments": _delta_prefix(index, "input_json_delta", "partial_json")
            }
        payload = {"type": "content_block_start", "index": index, "content_block": block}
        return _event(b"content_block_start", payload)

    def _block_stop(self, ir_index: int) -> bytes:
        index = self._open.pop(ir_index, None)
        self._prefixes.pop(ir_index, None)
        return b"" if index is None else _BLOCK_STOP % index


# ------------------------------------------------------------------------------ non-stream


def _content_block(part: ir.Part) -> dict[str, Any] | None:
    if isinstance(part, ir.Text):
        return {"type": "text", "text": part.text}
    if isinstance(part, ir.Thinking):
        return {"type": "thinking", "thinking": part.text, "signature": part.signature or ""}
    if isinstance(part, ir.RedactedThinking):
        return {"type": "redacted_thinking", "data": part.data}
    if isinstance(part, ir.ToolCall):
        return {
            "type": "tool_use",
            "id": part.id,
            "name": part.name,
            "input": _tool_input(part.arguments),
        }
    return None


def _tool_input(arguments: str) -> dict[str, Any]:
    # Arguments cut off mid-JSON (max_tokens) or a model's invalid JSON: Anthropic's `input`
    # must be an object, so the client gets {} rather than an error.
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


class AnthropicFrontend:
    name = "anthropic"

    def parse_request(self, body: Any, headers: Mapping[str, str]) -> ir.Request:
        return parse_messages_request(body, headers)

    def parse_count_tokens(self, body: Any, headers: Mapping[str, str]) -> ir.Request:
        return parse_count_tokens_request(body, headers)

    def stream_renderer(
        self, *, request_id: str, include_usage: bool, echo: Any = None, framing: Framing = "sse"
    ) -> AnthropicStreamRenderer:
        # include_usage is an OpenAI notion: Anthropic streams always carry usage.
        return AnthropicStreamRenderer(request_id=request_id)

    def render_response(
        self, resp: ir.Response, *, request_id: str, extra_usage: ExtraUsage, echo: Any = None
    ) -> dict[str, Any]:
        content = [block for part in resp.content if (block := _content_block(part)) is not None]
        usage = _usage(resp.usage, {})
        usage["cache_creation"] = {
            "ephemeral_5m_input_tokens": resp.usage.cache_write - resp.usage.cache_write_1h,
            "ephemeral_1h_input_tokens": resp.usage.cache_write_1h,
        }
        usage.update(extra_usage)
        return {
            "id": _message_id(resp.id),
            "type": "message",
            "role": "assistant",
            "model": resp.model,
            "content": content,
            "stop_reason": resp.stop_reason or "end_turn",
            "stop_sequence": resp.stop_sequence,
            "usage": usage,
        }

    def render_error(self, err: GatewayError) -> tuple[int, dict[str, Any]]:
        error_type, status = _error_type_and_status(err)
        return status, {"type": "error", "error": {"type": error_type, "message": err.message}}


ANTHROPIC_FRONTEND = AnthropicFrontend()
