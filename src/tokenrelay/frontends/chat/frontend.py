"""The OpenAI Chat Completions frontend: request parsing (see openai_parse) and rendering of IR
events as `chat.completion.chunk` SSE, `chat.completion` JSON and error bodies.

Thinking is rendered as `reasoning_content` (the de-facto field DeepSeek and xAI use; the openai
SDK keeps it as an extra attribute). Signatures and redacted thinking have no Chat Completions
field and are dropped. Every chunk of a response shares one id and `created`; the renderer
pre-builds the chunk's byte prefix and suffix, so a streamed token costs one orjson string dump.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from tokenrelay import ir
from tokenrelay.errors import GatewayError
from tokenrelay.frontends.chat.parse import client_wants_usage, parse_chat_request
from tokenrelay.gateway.codec import ExtraUsage
from tokenrelay.sse import Framing

__all__ = ["OPENAI_FRONTEND", "OpenAIFrontend", "OpenAIStreamRenderer", "client_wants_usage"]

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# kind → (HTTP status; None = the error's own status, at least 500), error type, default code
_ERRORS: dict[ir.ErrorKind, tuple[int | None, str, str | None]] = {
    "invalid_request": (400, "invalid_request_error", None),
    "authentication": (401, "invalid_request_error", "invalid_api_key"),
    "permission": (403, "request_forbidden", None),
    "not_found": (404, "invalid_request_error", "model_not_found"),
    "request_too_large": (413, "invalid_request_error", "request_too_large"),
    "rate_limit": (429, "requests", "rate_limit_exceeded"),
    "billing": (402, "insufficient_quota", "insufficient_quota"),
    "overloaded": (503, "server_error", None),
    "timeout": (504, "server_error", "timeout"),
    "api_error": (None, "server_error", None),
}

_DONE = b"data: [DONE]\n\n"


def finish_reason(stop_reason: str | None) -> str:
    return _FINISH_REASONS.get(stop_reason or "end_turn", "stop")


def error_status_and_body(err: GatewayError) -> tuple[int, dict[str, Any]]:
    status, error_type, code = _ERRORS.get(err.kind, (None, "server_error", None))
    code = err.code or code
    if err.limit is not None and err.kind == "rate_limit":
        error_type = err.limit  # OpenAI's 429 type: "tokens" (TPM) or "requests" (RPM)
    error = {"message": err.message, "type": error_type, "param": err.param, "code": code}
    return (status if status is not None else max(err.status, 500)), {"error": error}


def _completion_id(upstream_id: str) -> str:
    return upstream_id if upstream_id.startswith("chatcmpl-") else "chatcmpl-" + uuid.uuid4().hex


def _usage(u: ir.UsageTotals, extra: Mapping[str, Any], *, thought: bool) -> dict[str, Any]:
    """`thought`: the answer had reasoning. A vendor that reasoned without counting it apart
    (Anthropic) reports 0 reasoning tokens; that means "unknown" then, so it is left out."""
    prompt = u.prompt_total
    details = {"reasoning_tokens": u.reasoning} if u.reasoning or not thought else {}
    return {
        "prompt_tokens": prompt,
        "completion_tokens": u.output,
        "total_tokens": prompt + u.output,
        "prompt_tokens_details": {"cached_tokens": u.cache_read},
        "completion_tokens_details": details,
        **extra,
    }


class OpenAIStreamRenderer:
    """IR events → chat.completion.chunk SSE for one response (one choice, index 0)."""

    usage_at_start = False

    __slots__ = (
        "_blocks",
        "_calls",
        "_created",
        "_finished",
        "_head",
        "_id",
        "_include_usage",
        "_model",
        "_role_sent",
        "_started",
        "_tail",
        "_thought",
    )

    def __init__(self, *, request_id: str, include_usage: bool, created: int | None = None) -> None:
        self._include_usage = include_usage
        self._created = int(time.time()) if created is None else created
        self._id = ""
        self._model = ""
        self._head = b""  # `data: {...,"choices":[{"index":0,"delta":` once Start is known
        self._tail = (
            b',"logprobs":null,"finish_reason":null}]'
            + (b',"usage":null' if include_usage else b"")
            + b"}\n\n"
        )
        self._started = False
        self._role_sent = False
        self._thought = False  # a reasoning block was rendered
        self._finished = False
        self._calls = 0  # tool_calls[].index: counts calls, independent of IR block indexes
        self._blocks: dict[int, tuple[bytes, bytes]] = {}  # IR index → delta prefix, suffix

    def render(self, ev: ir.Event) -> bytes:
        if isinstance(ev, ir.Delta):  # the hot path
            block = self._blocks.get(ev.index)
            if block is None or not ev.value or (ev.kind == "signature"):
                return b""
            return block[0] + orjson.dumps(ev.value) + block[1]
        if isinstance(ev, ir.Usage):
            return b""
        if isinstance(ev, ir.Error):
            return self.error(GatewayError.from_ir(ev))
        if isinstance(ev, ir.Start):
            return self._start(ev.id, ev.model)
        out = b"" if self._started else self._start("", "")
        if isinstance(ev, ir.BlockStart):
            return out + self._block_start(ev)
        if isinstance(ev, ir.BlockStop):
            self._blocks.pop(ev.index, None)
            return out
        return out + self._finish(ev.stop_reason)

    def end(self, usage: ir.UsageTotals, extra_usage: Mapping[str, Any]) -> bytes:
        out = b"" if self._started else self._start("", "")
        if not self._finished:
            out += self._finish("end_turn")
        if self._include_usage:
            chunk = {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._model,
                "choices": [],
                "usage": _usage(usage, extra_usage, thought=self._thought),
            }
            out += b"data: " + orjson.dumps(chunk) + b"\n\n"
        return out + _DONE

    def error(self, err: GatewayError) -> bytes:
        _, body = error_status_and_body(err)
        return b"data: " + orjson.dumps(body) + b"\n\n"

    def _start(self, upstream_id: str, model: str) -> bytes:
        if self._started:
            return b""
        self._started = True
        self._id, self._model = _completion_id(upstream_id), model
        self._head = (
            b'data: {"id":'
            + orjson.dumps(self._id)
            + b',"object":"chat.completion.chunk","created":'
            + str(self._created).encode()
            + b',"model":'
            + orjson.dumps(model)
            + b',"choices":[{"index":0,"delta":'
        )
        return b""

    def _role(self, first_kind: str | None) -> bytes:
        """The opening role chunk, sent with the first block: OpenAI opens a text answer with
        `content: ""` and a tool-call or reasoning answer with `content: null`, and SDKs keep
        that value when no text follows."""
        if self._role_sent:
            return b""
        self._role_sent = True
        if first_kind == "text":
            return self._head + b'{"role":"assistant","content":""}' + self._tail
        if first_kind == "thinking":
            delta = b'{"role":"assistant","content":null,"reasoning_content":""}'
            return self._head + delta + self._tail
        return self._head + b'{"role":"assistant","content":null}' + self._tail

    def _block_start(self, ev: ir.BlockStart) -> bytes:
        return self._role(ev.kind) + self._open_block(ev)

    def _open_block(self, ev: ir.BlockStart) -> bytes:
        if ev.kind == "text":
            self._blocks[ev.index] = (self._head + b'{"content":', b"}" + self._tail)
        elif ev.kind == "thinking":
            self._thought = True
            self._blocks[ev.index] = (self._head + b'{"reasoning_content":', b"}" + self._tail)
        elif ev.kind == "tool_call":
            k = self._calls
            self._calls += 1
            self._blocks[ev.index] = (
                self._head + b'{"tool_calls":[{"index":%d,"function":{"arguments":' % k,
                b"}}]}" + self._tail,
            )
            first = {
                "tool_calls": [
                    {
                        "index": k,
                        "id": ev.tool_call_id or "",
                        "type": "function",
                        "function": {"name": ev.name or "", "arguments": ""},
                    }
                ]
            }
            return self._head + orjson.dumps(first) + self._tail
        return b""  # redacted thinking: no Chat Completions field

    def _finish(self, stop_reason: str) -> bytes:
        self._finished = True
        reason = finish_reason(stop_reason).encode()
        usage = b',"usage":null' if self._include_usage else b""
        return (
            self._role(None)
            + self._head
            + b'{},"logprobs":null,"finish_reason":"'
            + reason
            + b'"}]'
            + usage
            + b"}\n\n"
        )


def _message(content: list[ir.Part]) -> dict[str, Any]:
    texts = [p.text for p in content if isinstance(p, ir.Text)]
    thoughts = [p.text for p in content if isinstance(p, ir.Thinking) and p.text]
    calls = [p for p in content if isinstance(p, ir.ToolCall)]
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments or "{}"},
            }
            for c in calls
        ]
    message["refusal"] = None
    return message


class OpenAIFrontend:
    name = "openai"

    def parse_request(self, body: Any, headers: Mapping[str, str]) -> ir.Request:
        return parse_chat_request(body, headers)

    def stream_renderer(
        self, *, request_id: str, include_usage: bool, echo: Any = None, framing: Framing = "sse"
    ) -> OpenAIStreamRenderer:
        return OpenAIStreamRenderer(request_id=request_id, include_usage=include_usage)

    def render_response(
        self, resp: ir.Response, *, request_id: str, extra_usage: ExtraUsage, echo: Any = None
    ) -> dict[str, Any]:
        return {
            "id": _completion_id(resp.id),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": resp.model,
            "choices": [
                {
                    "index": 0,
                    "message": _message(resp.content),
                    "logprobs": None,
                    "finish_reason": finish_reason(resp.stop_reason),
                }
            ],
            "usage": _usage(
                resp.usage,
                extra_usage,
                thought=any(isinstance(p, ir.Thinking) and p.text for p in resp.content),
            ),
        }

    def render_error(self, err: GatewayError) -> tuple[int, dict[str, Any]]:
        return error_status_and_body(err)


OPENAI_FRONTEND = OpenAIFrontend()
