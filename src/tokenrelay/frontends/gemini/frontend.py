"""The Gemini `generateContent` frontend: request parsing (see gemini_parse), the route (model,
method and key from the URL) and rendering of IR events as Gemini SSE chunks, a
`GenerateContentResponse` body and Gemini errors (`{"error": {code, message, status}}`).

Rendering choices worth knowing:
- Thinking becomes `thought: true` parts; a thinking signature (Anthropic's) rides on them as
  `thoughtSignature`, and a tool call's on its functionCall part, so a client that sends its
  history back returns what the vendor needs. The signature is wrapped in base64
  (`wrap_signature`): the SDKs hold `thoughtSignature` as bytes and refuse (or re-pad) anything
  that is not canonical base64, which another vendor's signature need not be. Anthropic's
  redacted thinking is such a part too, its data in the (prefixed) signature.
- A function call carries the vendor's call id as `functionCall.id`; clients echo it on the
  functionResponse, which is how the next turn finds its call (and its reasoning state).
- Usage comes once, on the last chunk, with the settled cost added to `usageMetadata`
  (`costUsd`, which the SDKs ignore).
- A stream without `alt=sse` is Gemini's JSON array: the route says so (`route_payload`) and
  the renderer frames its chunks that way (`GeminiArrayStreamRenderer`).
- Insufficient balance: HTTP 402 with status FAILED_PRECONDITION (Google's status for "fix the
  account first, retrying will not help"; not RESOURCE_EXHAUSTED, which clients retry).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tokenrelay import ir
from tokenrelay.errors import GatewayError, invalid
from tokenrelay.frontends.gemini.parse import (
    REDACTED,
    parse_count_tokens,
    parse_generate_request,
    wrap_signature,
)
from tokenrelay.gateway.codec import ExtraUsage
from tokenrelay.sse import Framing, JsonArrayFrame

__all__ = [
    "GEMINI_FRONTEND",
    "PREFIXES",
    "GeminiFrontend",
    "GeminiRoute",
    "route",
    "route_payload",
    "status_body",
]

# Gemini's API version in the path: v1beta (Gemini CLI, the REST docs) or v1 (google-genai's
# default since 2.x). Both reach the same handler; the vendor is always called on v1beta.
PREFIXES = ("/api/proxy/v1beta/models/", "/api/proxy/v1/models/")

_FINISH = {
    "max_tokens": "MAX_TOKENS",
    "model_context_window_exceeded": "MAX_TOKENS",
    "refusal": "SAFETY",
}
# kind → (HTTP status; None = the error's own status, at least 500), Google status name
_ERRORS: dict[ir.ErrorKind, tuple[int | None, str]] = {
    "invalid_request": (400, "INVALID_ARGUMENT"),
    "authentication": (401, "UNAUTHENTICATED"),
    "permission": (403, "PERMISSION_DENIED"),
    "not_found": (404, "NOT_FOUND"),
    "request_too_large": (400, "INVALID_ARGUMENT"),  # Gemini's "payload size exceeds the limit"
    "rate_limit": (429, "RESOURCE_EXHAUSTED"),
    "billing": (402, "FAILED_PRECONDITION"),
    "overloaded": (503, "UNAVAILABLE"),
    "timeout": (504, "DEADLINE_EXCEEDED"),
    "api_error": (None, "INTERNAL"),
}
_SERVER_STATUS = {503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED", 502: "UNAVAILABLE"}
_METHODS = {"generateContent": False, "streamGenerateContent": True}
EMBED_METHODS = ("embedContent", "batchEmbedContents")


@dataclass(frozen=True, slots=True)
class GeminiRoute:
    model: str
    method: str  # generateContent | streamGenerateContent | countTokens | EMBED_METHODS


def route(path: str) -> GeminiRoute | None:
    """`/api/proxy/v1beta/models/{model}:{method}` (the model may repeat `models/`)."""
    rest = path.split("/models/", 1)[1] if "/models/" in path else ""
    model, sep, method = rest.rpartition(":")
    if not sep or not model or method not in ("countTokens", *_METHODS, *EMBED_METHODS):
        return None
    return GeminiRoute(model.removeprefix("models/"), method)


def route_payload(r: GeminiRoute, query: Mapping[str, str]) -> dict[str, Any]:
    """What the URL says that a body of another API would: the model, and streaming; and how
    a stream is framed (without `alt=sse`, Gemini sends it as one JSON array)."""
    alt = query.get("alt")
    if alt not in (None, "sse", "json"):
        raise invalid("alt: expected 'sse' or 'json'", "alt")
    stream = _METHODS.get(r.method, False)
    framing: Framing = "sse" if alt == "sse" or not stream else "json_array"
    return {"model": r.model, "stream": stream, "framing": framing}


def error_body(err: GatewayError) -> tuple[int, dict[str, Any]]:
    status, name = _ERRORS.get(err.kind, (None, "INTERNAL"))
    if status is None:
        status = max(err.status, 500)
        name = _SERVER_STATUS.get(status, name)
    return status, {"error": {"code": status, "message": err.message, "status": name}}


_NAMES_BY_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
}


def status_body(status: int, message: str) -> dict[str, Any]:
    """A Gemini error body for an HTTP status the gateway's router answers (404, 405)."""
    name = _NAMES_BY_STATUS.get(status, "INTERNAL")
    return {"error": {"code": status, "message": message, "status": name}}


def finish_reason(stop_reason: str | None) -> str:
    return _FINISH.get(stop_reason or "end_turn", "STOP")


def usage_metadata(u: ir.UsageTotals, extra: Mapping[str, Any]) -> dict[str, Any]:
    prompt = u.prompt_total
    meta: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": u.output - u.reasoning,
        "totalTokenCount": prompt + u.output,
    }
    if u.cache_read:
        meta["cachedContentTokenCount"] = u.cache_read
    if u.reasoning:
        meta["thoughtsTokenCount"] = u.reasoning
    for key, value in extra.items():  # cost_usd → costUsd: Gemini's JSON is camelCase
        head, *rest = key.split("_")
        meta[head + "".join(w.title() for w in rest)] = value
    return meta


def _response_id(upstream_id: str) -> str:
    return upstream_id or uuid.uuid4().hex[:22]


def _call_part(call_id: str, name: str, arguments: str, signature: str | None) -> dict[str, Any]:
    try:
        args = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:  # cut off by the output cap: the SDKs need an object
        args = {}
    part: dict[str, Any] = {
        "functionCall": {
            "id": call_id,
            "name": name,
            "args": args if isinstance(args, dict) else {"value": args},
        }
    }
    if signature:
        part["thoughtSignature"] = wrap_signature(signature)
    return part


def _redacted_part(data: str) -> dict[str, Any]:
    return {"text": "", "thought": True, "thoughtSignature": wrap_signature(REDACTED + data)}


class GeminiStreamRenderer:
    """IR events → `data: GenerateContentResponse` SSE chunks, one candidate."""

    usage_at_start = False

    __slots__ = ("_calls", "_finish", "_head", "_id", "_model", "_tail")
    _PREFIX = b"data: "  # and _END: an SSE event's framing around each chunk
    _END = b"\r\n\r\n"

    def __init__(self) -> None:
        self._id = ""
        self._model = ""
        self._head = self._PREFIX + b'{"candidates":[{"content":{"parts":['
        self._tail = b""
        self._finish: str | None = None
        self._calls: dict[int, list[Any]] = {}  # open tool-call block → [id, name, sig, args]

    def render(self, ev: ir.Event) -> bytes:
        if isinstance(ev, ir.Delta):  # the hot path
            if not ev.value:
                return b""
            if ev.kind == "text":
                return self._chunk(b'{"text":' + orjson.dumps(ev.value) + b"}")
            if ev.kind == "thinking":
                return self._chunk(b'{"text":' + orjson.dumps(ev.value) + b',"thought":true}')
            call = self._calls.get(ev.index)
            if call is not None:  # a tool call goes out whole, at its BlockStop
                if ev.kind == "signature":
                    call[2] = (call[2] or "") + ev.value
                else:
                    call[3].append(ev.value)
                return b""
            if ev.kind == "signature":
                part = {"text": "", "thought": True, "thoughtSignature": wrap_signature(ev.value)}
                return self._chunk(orjson.dumps(part))
            return b""
        if isinstance(ev, ir.Start):
            self._start(ev.id, ev.model)
        elif isinstance(ev, ir.BlockStart) and ev.kind == "tool_call":
            self._calls[ev.index] = [ev.tool_call_id or "", ev.name or "", ev.data, []]
        elif isinstance(ev, ir.BlockStart) and ev.kind == "redacted_thinking":
            return self._chunk(orjson.dumps(_redacted_part(ev.data or "")))
        elif isinstance(ev, ir.BlockStop):
            call = self._calls.pop(ev.index, None)
            if call is not None:
                part = _call_part(call[0], call[1], "".join(call[3]), call[2])
                return self._chunk(orjson.dumps(part))
        elif isinstance(ev, ir.Finish):
            self._finish = finish_reason(ev.stop_reason)
        elif isinstance(ev, ir.Error):
            return self.error(GatewayError.from_ir(ev))
        return b""

    def end(self, usage: ir.UsageTotals, extra_usage: Mapping[str, Any]) -> bytes:
        if not self._tail:
            self._start("", "")
        chunk = {
            "candidates": [
                {
                    "content": {"parts": [{"text": ""}], "role": "model"},
                    "finishReason": self._finish or "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": usage_metadata(usage, extra_usage),
            "modelVersion": self._model,
            "responseId": self._id,
        }
        return self._last_event(orjson.dumps(chunk))

    def error(self, err: GatewayError) -> bytes:
        _, body = error_body(err)
        return self._last_event(orjson.dumps(body))

    def _last_event(self, data: bytes) -> bytes:
        return self._PREFIX + data + self._END

    def _start(self, upstream_id: str, model: str) -> None:
        self._id, self._model = _response_id(upstream_id), model
        self._tail = (
            b'],"role":"model"},"index":0}],"modelVersion":'
            + orjson.dumps(model)
            + b',"responseId":'
            + orjson.dumps(self._id)
            + b"}"
            + self._END
        )

    def _chunk(self, part: bytes) -> bytes:
        if not self._tail:
            self._start("", "")
        return self._head + part + self._tail


class GeminiArrayStreamRenderer(GeminiStreamRenderer):
    """The same chunks as one JSON array (a stream asked for without `alt=sse`): `[` chunk,
    `,` CRLF chunk ..., `]` after the last chunk or the error that ends it."""

    __slots__ = ("_array",)
    _PREFIX = b""
    _END = b""

    def __init__(self) -> None:
        super().__init__()
        self._array = JsonArrayFrame()

    def _chunk(self, part: bytes) -> bytes:
        return self._array.item(super()._chunk(part))

    def _last_event(self, data: bytes) -> bytes:
        return self._array.item(data) + self._array.close()


def _parts(content: list[ir.Part]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for p in content:
        if isinstance(p, ir.Text):
            parts.append({"text": p.text})
        elif isinstance(p, ir.Thinking):
            part: dict[str, Any] = {"text": p.text, "thought": True}
            if p.signature:
                part["thoughtSignature"] = wrap_signature(p.signature)
            parts.append(part)
        elif isinstance(p, ir.ToolCall):
            parts.append(_call_part(p.id, p.name, p.arguments, p.signature))
        elif isinstance(p, ir.RedactedThinking):
            parts.append(_redacted_part(p.data))
    return parts or [{"text": ""}]


class GeminiFrontend:
    name = "gemini"

    def parse_request(self, body: Any, headers: Mapping[str, str]) -> ir.Request:
        return parse_generate_request(body, headers)

    def parse_count_tokens(self, body: Any, headers: Mapping[str, str]) -> ir.Request:
        return parse_count_tokens(body, headers)

    def stream_renderer(
        self, *, request_id: str, include_usage: bool, echo: Any = None, framing: Framing = "sse"
    ) -> GeminiStreamRenderer:
        return GeminiArrayStreamRenderer() if framing == "json_array" else GeminiStreamRenderer()

    def render_response(
        self, resp: ir.Response, *, request_id: str, extra_usage: ExtraUsage, echo: Any = None
    ) -> dict[str, Any]:
        return {
            "candidates": [
                {
                    "content": {"parts": _parts(resp.content), "role": "model"},
                    "finishReason": finish_reason(resp.stop_reason),
                    "index": 0,
                }
            ],
            "usageMetadata": usage_metadata(resp.usage, extra_usage),
            "modelVersion": resp.model,
            "responseId": _response_id(resp.id),
        }

    def render_error(self, err: GatewayError) -> tuple[int, dict[str, Any]]:
        return error_body(err)


GEMINI_FRONTEND = GeminiFrontend()
