"""OpenAI Chat Completions: IR request → body, JSON body / SSE stream → IR events, errors → IR.

`OpenAICompatible` is written for reuse: xAI and DeepSeek speak the same wire format, and
their differences (max-tokens field name, reasoning knobs, usage semantics, reasoning replay,
extra finish reasons, error wording) are class attributes and hook methods overridden in
`xai.py` / `deepseek.py`. Wire format: shared/VENDORS.md §2, §4, §5 and the hazards in §6.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tokenrelay import ir
from tokenrelay.errors import invalid
from tokenrelay.reasoning.cache import ReasoningCache
from tokenrelay.sse import SSEEvent, SSEParser, encode
from tokenrelay.vendors import base
from tokenrelay.vendors.beta_policy import report_dropped

JSON = dict[str, Any]

log = logging.getLogger(__name__)

# finish_reason → IR stop reason (Anthropic vocabulary). Unknown values end the turn normally:
# the docs promise new values may appear and a client is better served by a finished reply.
FINISH_REASONS: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

CREDENTIALS_REJECTED = (
    "The upstream provider rejected the gateway's credentials. This is a gateway configuration "
    "problem, not a problem with your API key."
)
UPSTREAM_ACCOUNT = (
    "The gateway's account with the upstream provider cannot serve requests right now (quota or "
    "balance exhausted). This is not a problem with your account."
)
MALFORMED = "The upstream provider sent a malformed response."

# Budget → effort thresholds (VENDORS.md §6.1 #16: low≈1k, medium≈4–8k, high beyond).
_LOW_BUDGET = 2048
_MEDIUM_BUDGET = 8192
_OPENAI_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh"})

# Extras never forwarded: `metadata` needs `store` on OpenAI and is rejected by the others;
# `stream_options` is built by us (include_usage must stay on for billing).
_BLOCKED_EXTRAS = frozenset({"metadata", "stream_options"})

# Vendors echo partial keys ("xa***ED", "sk-abc...xyz") and the operator's organization id
# ("org-...", in OpenAI rate-limit messages) in messages; never pass them on.
_KEY_LIKE = re.compile(r"\b(?:sk|xai)-\S+|\borg-\w+|\S*\*{3,}\S*")


def effort_level(cfg: ir.ThinkingConfig | None) -> str | None:
    """The effort a ThinkingConfig asks for: its `effort`, else one derived from the budget."""
    if cfg is None:
        return None
    if cfg.effort:
        return cfg.effort
    if cfg.budget_tokens is not None:
        if cfg.budget_tokens <= _LOW_BUDGET:
            return "low"
        return "medium" if cfg.budget_tokens <= _MEDIUM_BUDGET else "high"
    return None


def bare_model(model: str) -> str:
    """`openai/gpt-5` → `gpt-5`: catalogs sometimes keep a vendor prefix."""
    return model.rsplit("/", 1)[-1].lower()


@dataclass(slots=True)
class ErrorInfo:
    """The fields of a vendor error body, whatever its shape (OpenAI object, xAI string)."""

    message: str | None = None
    type: str | None = None
    code: str | None = None
    param: str | None = None

    @classmethod
    def from_json(cls, obj: object) -> ErrorInfo:
        if not isinstance(obj, dict):
            return cls()
        err = obj.get("error")
        if isinstance(err, dict):  # OpenAI / DeepSeek: {"error": {message, type, param, code}}
            src, message = err, err.get("message")
        elif isinstance(err, str):  # xAI: {"code": "..." | 429, "error": "message"}
            src, message = obj, err
        else:
            src, message = obj, obj.get("message")
        return cls(
            _opt_str(message),
            _opt_str(src.get("type")),
            _opt_str(src.get("code")),
            _opt_str(src.get("param")),
        )

    @classmethod
    def from_body(cls, body: bytes) -> ErrorInfo:
        try:
            return cls.from_json(orjson.loads(body))
        except orjson.JSONDecodeError:  # an HTML page from a proxy, an empty body, ...
            return cls()

    def lowered(self) -> str:
        return " ".join(filter(None, (self.type, self.code, self.message))).lower()


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def scrub(message: str) -> str:
    return _KEY_LIKE.sub("[redacted]", message)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms` (OpenAI) or `retry-after` (seconds; HTTP dates ignored)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name) or headers.get(name.title())
        if value:
            try:
                return float(value) * scale
            except ValueError:
                continue
    return None


def choice_count(body: JSON) -> int:
    """How many completions the body asks for (`n`): each is billed up to the output cap."""
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1


def _has_usage(data: bytes) -> bool:
    # One search on most chunks; DeepSeek's carry `"usage":null` until the last.
    return b'"usage"' in data and (b'"usage":{' in data or b'"usage": {' in data)


class ChatScan(base.PassthroughScan):
    """Usage rides on the last chunk (`choices: []` on OpenAI and xAI, the finish chunk on
    DeepSeek); `[DONE]` ends the stream. Billing always asks for the usage chunk; a client that
    did not ask does not get the usage-only one."""

    def __init__(
        self,
        decode: Callable[[bytes], list[ir.Event]],
        on_usage: base.UsageSink,
        client_usage: bool,
    ) -> None:
        super().__init__(decode, on_usage)
        self.client_usage = client_usage

    def seen(self, ev: SSEEvent) -> base.Seen:
        data = ev.data
        if not _has_usage(data):
            if data == b"[DONE]":
                return base.Seen.END
            return base.Seen.ERROR if data.startswith(b'{"error"') else base.Seen.PLAIN
        usage_only = b'"choices":[]' in data or b'"choices": []' in data
        return base.Seen.FINAL_HIDDEN if usage_only and not self.client_usage else base.Seen.FINAL

    def add_cost(self, ev: SSEEvent, extra_usage: Mapping[str, Any]) -> bytes:
        chunk = orjson.loads(ev.data)
        chunk["usage"].update(extra_usage)
        return encode(orjson.dumps(chunk))


class OpenAICompatible:
    """The OpenAI Chat Completions adapter; subclass attributes/hooks for compatible vendors."""

    name = "openai"
    native_format = "openai"
    request_id_header = "x-request-id"
    remembers_reasoning = False
    # gpt-4o-mini bills a 2048×2048 image as 2,833 + 4 × 5,667 tokens: the dearest known.
    max_image_tokens = 25_600
    url_media_bounded = True
    # OpenAI reasoning models reject the legacy `max_tokens` (openai__error_unsupported_parameter).
    max_tokens_field = "max_completion_tokens"
    # xAI reports reasoning tokens outside completion_tokens (VENDORS.md §4); the others inside.
    reasoning_in_completion = True

    def __init__(self, *, name: str | None = None, max_tokens_field: str | None = None) -> None:
        """Defaults are the class's; an operator's compatible upstream sets its own name (and
        the output-cap field, where its server does not take OpenAI's)."""
        if name is not None:
            self.name = name
        if max_tokens_field is not None:
            self.max_tokens_field = max_tokens_field

    # ---------------------------------------------------------------- request

    def build_request(
        self, req: ir.Request, upstream_model: str, *, api_key: str, base_url: str
    ) -> base.UpstreamRequest:
        body = self.build_body(req, upstream_model)
        report_dropped(self.name, "openai", req)  # Chat Completions' fields
        return base.UpstreamRequest(
            method="POST",
            url=base_url.rstrip("/") + "/chat/completions",
            headers={"authorization": f"Bearer {api_key}", "content-type": "application/json"},
            body=orjson.dumps(body),
            max_output=req.max_tokens,
            choices=choice_count(body),
        )

    def enforces_stop(self, model: str) -> bool:
        return True

    def finalize(self, req: ir.Request, default_max_tokens: int) -> None:
        """Nothing to decide: the vendor defaults the output cap to the model's limit."""

    def passthrough(self, client_format: str) -> base.Vendor | None:
        return self if client_format == self.native_format else None

    def passthrough_request(
        self, body: JSON, req: ir.Request, via: base.Passthrough
    ) -> base.UpstreamRequest:
        body = {**body, "model": req.model}
        if body.get("stream") is True:
            opts = body.get("stream_options")
            body["stream_options"] = {
                **(opts if isinstance(opts, dict) else {}),
                "include_usage": True,
            }
        self.passthrough_body(body, req, via.reasoning)
        return base.UpstreamRequest(
            "POST",
            via.base_url.rstrip("/") + "/chat/completions",
            {"authorization": "Bearer " + via.api_key, "content-type": "application/json"},
            orjson.dumps(body),
            max_output=req.max_tokens,
            choices=choice_count(body),
        )

    def passthrough_body(self, body: JSON, req: ir.Request, reasoning: ReasoningCache) -> None:
        """Hook: what this vendor needs added to a same-format body."""

    def passthrough_scan(
        self, on_usage: base.UsageSink, *, client_usage: bool, choices: int = 1
    ) -> base.PassthroughScan:  # the usage chunk comes after every choice
        decoder = self.stream_decoder
        return ChatScan(lambda raw: decoder(_NO_CALL).feed(raw), on_usage, client_usage)

    def build_body(self, req: ir.Request, model: str) -> JSON:
        body: JSON = {"model": model, "messages": self.build_messages(req)}
        if req.tools:
            body["tools"] = [_tool(t) for t in req.tools]
            _apply_tool_choice(body, req.tool_choice)
        if req.max_tokens is not None:
            body[self.max_tokens_field] = req.max_tokens
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if req.top_p is not None:
            body["top_p"] = req.top_p
        if req.stop:
            body["stop"] = req.stop[:4]  # the API's limit; Anthropic clients may send more
        if req.user:
            body["user"] = req.user
        if req.response_format:
            body["response_format"] = _response_format(req.response_format)
        client_stream_options: JSON = {}
        if req.extras_format == "openai":
            for key, value in req.extras.items():
                if key not in _BLOCKED_EXTRAS:
                    body.setdefault(key, value)
            if isinstance(req.extras.get("stream_options"), dict):
                client_stream_options = req.extras["stream_options"]
        if req.stream:
            body["stream"] = True
            # Always: billing needs the usage chunk; the frontend hides it from clients that
            # did not ask for it.
            body["stream_options"] = {**client_stream_options, "include_usage": True}
        self.adjust_for_model(body, req, bare_model(model))
        return body

    def adjust_for_model(self, body: JSON, req: ir.Request, model: str) -> None:
        """Hook: reasoning knobs and parameters the model rejects. OpenAI reasoning models
        (o-series, gpt-5) take `reasoning_effort` and accept only default sampling."""
        if not _openai_reasoning_model(model):
            return
        body.pop("temperature", None)
        body.pop("top_p", None)
        level = effort_level(req.thinking)
        if level == "max":
            level = "high"  # the top level every reasoning model accepts
        if level in _OPENAI_EFFORTS:
            body["reasoning_effort"] = level

    def build_messages(self, req: ir.Request) -> list[JSON]:
        messages: list[JSON] = []
        if req.system:
            messages.append({"role": "system", "content": "\n\n".join(t.text for t in req.system)})
        for msg in req.messages:
            if msg.role == "assistant":
                messages.append(self.assistant_message(msg))
            elif msg.role == "system":  # instructions given mid-conversation stay in place
                text = "\n\n".join(p.text for p in msg.parts if isinstance(p, ir.Text))
                messages.append({"role": "system", "content": text})
            else:
                messages.extend(self.user_messages(msg))
        return messages

    def user_messages(self, msg: ir.Message) -> list[JSON]:
        """Tool results become `tool` messages first (they must directly follow the assistant's
        tool_calls); the rest of the turn becomes one user message after them."""
        out: list[JSON] = []
        parts: list[JSON] = []
        for part in msg.parts:
            if isinstance(part, ir.ToolResult):
                out.append(_tool_message(part))
                # Tool messages carry text only: images a tool returned go to the user message.
                parts.extend(_image(p) for p in part.content if isinstance(p, ir.Image))
            else:
                content = _user_part(part)
                if content is not None:
                    parts.append(content)
        if parts:
            user: JSON = {"role": "user", "content": _simplify(parts)}
            if msg.name:
                user["name"] = msg.name
            out.append(user)
        return out

    def assistant_message(self, msg: ir.Message) -> JSON:
        texts: list[str] = []
        calls: list[JSON] = []
        thinking: list[str] = []
        for part in msg.parts:
            if isinstance(part, ir.Text):
                texts.append(part.text)
            elif isinstance(part, ir.ToolCall):
                calls.append(
                    {
                        "id": part.id,
                        "type": "function",
                        "function": {"name": part.name, "arguments": part.arguments or "{}"},
                    }
                )
            elif isinstance(part, ir.Thinking):
                thinking.append(part.text)
            # RedactedThinking / signatures: Chat Completions has no field for them.
        message: JSON = {"role": "assistant", "content": "".join(texts) if texts else None}
        if calls:
            message["tool_calls"] = calls
        elif message["content"] is None:
            message["content"] = ""
        if msg.name:
            message["name"] = msg.name
        self.replay_reasoning(message, thinking)
        return message

    def replay_reasoning(self, message: JSON, thinking: list[str]) -> None:
        """Hook: put the turn's reasoning back on the assistant message. OpenAI has no field."""

    # ---------------------------------------------------------------- responses

    def parse_response(self, body: bytes, *, content: bool = True) -> list[ir.Event]:
        try:
            obj = orjson.loads(body)  # leading blank lines (DeepSeek keep-alive) are whitespace
        except orjson.JSONDecodeError:
            return [ir.Error("api_error", MALFORMED, 502)]
        if not isinstance(obj, dict):
            return [ir.Error("api_error", MALFORMED, 502)]
        if obj.get("error") is not None:
            return [self.stream_error(obj)]
        events: list[ir.Event] = [ir.Start(str(obj.get("id") or ""), str(obj.get("model") or ""))]
        choices = obj.get("choices") or [{}]
        choice = choices[0] if isinstance(choices[0], dict) else {}
        message = choice.get("message") or {}
        refusal = message.get("refusal")
        if content:
            self._content_events(message, refusal, events)
        if isinstance(obj.get("usage"), dict):
            events.append(self.usage(obj["usage"]))
        reason = choice.get("finish_reason")
        if reason:
            events.append(self.finish(reason, refused=bool(refusal)))
        return events

    def _content_events(self, message: JSON, refusal: Any, events: list[ir.Event]) -> None:
        blocks: list[tuple[ir.BlockStart, str | None]] = []
        if message.get("reasoning_content"):
            blocks.append((ir.BlockStart(0, "thinking"), message["reasoning_content"]))
        text = _text_content(message.get("content"))
        if text:
            blocks.append((ir.BlockStart(0, "text"), text))
        if refusal:
            blocks.append((ir.BlockStart(0, "text"), refusal))
        for call in message.get("tool_calls") or ():
            fn = call.get("function") or {}
            start = ir.BlockStart(
                0, "tool_call", tool_call_id=call.get("id") or "", name=fn.get("name") or ""
            )
            blocks.append((start, fn.get("arguments")))
        for index, (start, value) in enumerate(blocks):
            start.index = index
            events.append(start)
            if value:
                kind = "arguments" if start.kind == "tool_call" else start.kind
                events.append(ir.Delta(index, kind, value))  # type: ignore[arg-type]
            events.append(ir.BlockStop(index))

    def stream_decoder(self, upstream: base.UpstreamRequest) -> ChatStreamDecoder:
        return ChatStreamDecoder(self)

    def usage(self, raw: JSON) -> ir.Usage:
        """Vendor usage → IR. prompt_tokens includes the cached part; IR input excludes it."""
        prompt = _int(raw.get("prompt_tokens"))
        cached = self.cached_tokens(raw)
        completion = _int(raw.get("completion_tokens"))
        details = raw.get("completion_tokens_details")
        reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
        output = completion if self.reasoning_in_completion else completion + (reasoning or 0)
        return ir.Usage(
            input=max(prompt - cached, 0), output=output, cache_read=cached, reasoning=reasoning
        )

    def cached_tokens(self, raw: JSON) -> int:
        """Hook: the cache-read part of prompt_tokens."""
        details = raw.get("prompt_tokens_details")
        return _int(details.get("cached_tokens")) if isinstance(details, dict) else 0

    def finish(self, reason: str, *, refused: bool = False) -> ir.Finish | ir.Error:
        """Hook: finish_reason → Finish, or Error when the vendor cut the answer itself."""
        stop = FINISH_REASONS.get(reason, "end_turn")
        if refused and stop == "end_turn":
            stop = "refusal"  # structured-output refusals finish with "stop"
        return ir.Finish(stop)

    def stream_error(self, obj: JSON) -> ir.Error:
        """A `{"error": ...}` event after the 200: classify by its type/code."""
        info = ErrorInfo.from_json(obj)
        message = scrub(info.message or "The upstream provider reported an error.")
        if info.code and info.code.isdigit():  # xAI puts the HTTP status in `code`
            return self.classify(int(info.code), info, None)
        text = info.lowered()
        if "overloaded" in text or "unavailable" in text:
            return ir.Error("overloaded", message, 503)
        if "rate_limit" in text or info.type in ("tokens", "requests"):
            return ir.Error(
                "rate_limit", message, 429, limit=base.rate_limit_named(info.type, message)
            )
        if "timeout" in text:
            return ir.Error("timeout", message, 504)
        if info.type == "invalid_request_error":
            return ir.Error("invalid_request", message, 400)
        return ir.Error("api_error", message, 500)

    # ---------------------------------------------------------------- errors

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> ir.Error:
        return self.classify(status, ErrorInfo.from_body(body), retry_after(headers))

    def classify(self, status: int, info: ErrorInfo, wait: float | None) -> ir.Error:
        """The client-facing error for a vendor status + body. The gateway's own key or account
        failing is never the client's fault: api_error 502 without the vendor's wording."""
        if self.credentials_rejected(status, info):
            return ir.Error("api_error", CREDENTIALS_REJECTED, 502, code=ir.UPSTREAM_ACCOUNT_ERROR)
        if self.account_exhausted(status, info):
            return ir.Error("api_error", UPSTREAM_ACCOUNT, 502, code=ir.UPSTREAM_ACCOUNT_ERROR)
        message = scrub(info.message or f"The upstream provider answered HTTP {status}.")
        kind, client_status = base.status_error(status)
        if kind == "rate_limit":
            limit: ir.RateLimit | None = (
                "tokens"
                if info.type == "tokens"
                else "requests"
                if info.type == "requests"
                else None
            )
            limit = limit or base.rate_limit_named(info.message)
            return ir.Error("rate_limit", message, 429, wait, limit=limit)
        if kind == "invalid_request":  # the request as sent was not acceptable
            return ir.Error(kind, message, 400, param=info.param, code=info.code)
        return ir.Error(kind, message, client_status, None if kind == "not_found" else wait)

    def credentials_rejected(self, status: int, info: ErrorInfo) -> bool:
        """Hook. Some vendors (xAI) answer a bad key with HTTP 400, so look at the body too."""
        if status in (401, 403) or info.code == "invalid_api_key":
            return True
        text = (info.message or "").lower()
        return "incorrect api key" in text or "invalid api key" in text

    def account_exhausted(self, status: int, info: ErrorInfo) -> bool:
        """Hook. OpenAI 429 `insufficient_quota` means the gateway's account is out of credit:
        retrying (what a 429 tells the client) will not help, so it is a 502, not a 429."""
        return status == 402 or "insufficient_quota" in (info.code, info.type)

    # ---------------------------------------------------------------- embeddings

    embeds_token_arrays = True

    def build_embeddings(
        self, req: ir.EmbeddingRequest, upstream_model: str, *, api_key: str, base_url: str
    ) -> base.UpstreamRequest:
        body: JSON = {"model": upstream_model, "input": req.inputs, "encoding_format": "float"}
        if req.dimensions is not None:
            body["dimensions"] = req.dimensions
        return base.UpstreamRequest(
            method="POST",
            url=base_url.rstrip("/") + "/embeddings",
            headers={"authorization": f"Bearer {api_key}", "content-type": "application/json"},
            body=orjson.dumps(body),
            max_output=0,
        )

    def parse_embeddings(self, body: bytes) -> ir.Embeddings:
        data = orjson.loads(body)
        items = sorted(data.get("data") or [], key=lambda d: d.get("index", 0))
        usage = data.get("usage") or {}
        tokens = usage.get("prompt_tokens")
        return ir.Embeddings(
            [list(d["embedding"]) for d in items], int(tokens) if tokens is not None else None
        )

    # ---------------------------------------------------------------- token counting

    def build_count_tokens(
        self, req: ir.Request, upstream_model: str, *, api_key: str, base_url: str
    ) -> base.UpstreamRequest | None:
        return None  # no counting endpoint: the relay estimates locally

    def parse_count_tokens(self, body: bytes) -> int:
        raise NotImplementedError(f"{self.name} has no token-counting endpoint")


class ChatStreamDecoder:
    """Chat Completions chunks → sequential IR blocks.

    The vendor interleaves nothing within a choice in practice, but the IR wants strict
    BlockStart/Delta/BlockStop runs, so a change of content kind (reasoning → text → tool call
    i → tool call j) closes the open block and opens the next. Only choice 0 is decoded: the IR
    carries one choice (n > 1 must be refused or fanned out before it reaches an adapter).

    A tool call's block stays open until the next call starts or the choice finishes: text and
    reasoning that arrive meanwhile (DeepSeek may send a call's id and name, then reasoning,
    then its arguments) are held and follow the call, so no argument byte is lost whatever the
    order. A fragment of a call whose block has closed (parallel calls interleaved, which no
    known vendor does: OpenAI sends call 0 whole, then call 1) cannot be placed and is dropped
    with a warning.
    """

    __slots__ = (
        "_calls",
        "_done",
        "_held",
        "_next",
        "_open",
        "_open_key",
        "_out",
        "_parser",
        "_refused",
        "_response_id",
        "_started",
        "_vendor",
    )

    def __init__(self, vendor: OpenAICompatible) -> None:
        self._vendor = vendor
        self._parser = SSEParser()
        self._out: list[ir.Event] = []
        self._started = False
        self._done = False
        self._response_id = ""
        self._next = 0  # the next IR block index
        self._open: int | None = None  # the open IR block index
        self._open_key: str | int | None = None  # "text" | "thinking" | tool call index
        self._calls: dict[int, int] = {}  # vendor tool call index → IR block index
        self._held: list[tuple[ir.DeltaKind, str]] = []  # text/reasoning behind an open call
        self._refused = False

    def feed(self, chunk: bytes) -> list[ir.Event]:
        if self._done:
            return []
        out = self._out = []
        for event in self._parser.feed(chunk):
            self._on_data(event.data)
            if self._done:
                break
        return out

    def close(self) -> list[ir.Event]:
        """Flush a last event that lacked its blank line; never invent a BlockStop/Finish."""
        if self._done:
            return []
        out = self._out = []
        for event in self._parser.flush():
            self._on_data(event.data)
            if self._done:
                break
        return out

    def _on_data(self, data: bytes) -> None:
        if data == b"[DONE]":
            self._done = True
            return
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._fail(ir.Error("api_error", MALFORMED, 502))
            return
        if not isinstance(obj, dict):
            return
        if obj.get("error") is not None:
            self._fail(self._vendor.stream_error(obj))
            return
        if not self._started:
            self._started = True
            self._response_id = str(obj.get("id") or "")
            self._out.append(ir.Start(self._response_id, str(obj.get("model") or "")))
        reason: str | None = None
        for choice in obj.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if delta:
                self._on_delta(delta)
            reason = choice.get("finish_reason") or reason
        if reason is not None:
            self._close_open()
            self._release_held()
        usage = obj.get("usage")
        if usage:  # OpenAI/xAI: a final `choices: []` chunk; DeepSeek: with finish_reason
            self._out.append(self._vendor.usage(usage))
        if reason is not None:
            outcome = self._vendor.finish(reason, refused=self._refused)
            if isinstance(outcome, ir.Error):
                self._fail(outcome)
            else:
                self._out.append(outcome)

    def _on_delta(self, delta: JSON) -> None:
        reasoning = delta.get("reasoning_content")
        if reasoning:
            self._text("thinking", reasoning)
        content = delta.get("content")
        if content:
            self._text("text", content)
        refusal = delta.get("refusal")
        if refusal:
            self._refused = True
            self._text("text", refusal)
        calls = delta.get("tool_calls")
        if calls:
            for fragment in calls:
                self._tool_fragment(fragment)

    def _text(self, kind: ir.DeltaKind, value: str) -> None:
        if isinstance(self._open_key, int):  # a tool call is open: its arguments may follow
            self._held.append((kind, value))
            return
        if self._open_key != kind:
            self._open_block(kind, ir.BlockStart(self._next, kind))  # type: ignore[arg-type]
        self._out.append(ir.Delta(self._next - 1, kind, value))

    def _tool_fragment(self, fragment: JSON) -> None:
        call = fragment.get("index")
        if not isinstance(call, int):  # not sent by the known vendors; be lenient
            call = len(self._calls) if fragment.get("id") else max(len(self._calls) - 1, 0)
        fn = fragment.get("function") or {}
        block = self._calls.get(call)
        if block is None:
            if self._held:  # text held behind the previous call goes before this one
                self._close_open()
                self._release_held()
            block = self._calls[call] = self._next
            call_id = fragment.get("id") or f"call_{self._response_id}_{call}"
            self._open_block(
                call,
                ir.BlockStart(block, "tool_call", tool_call_id=call_id, name=fn.get("name") or ""),
            )
        elif block != self._open:
            log.warning("dropped a fragment of closed tool call %d (interleaved stream)", call)
            return
        arguments = fn.get("arguments")
        if arguments:
            self._out.append(ir.Delta(block, "arguments", arguments))

    def _open_block(self, key: str | int, start: ir.BlockStart) -> None:
        self._close_open()
        self._out.append(start)
        self._open, self._open_key = start.index, key
        self._next = start.index + 1

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for kind, value in held:
            self._text(kind, value)

    def _close_open(self) -> None:
        if self._open is not None:
            self._out.append(ir.BlockStop(self._open))
            self._open = self._open_key = None

    def _fail(self, error: ir.Error) -> None:
        self._out.append(error)
        self._done = True


# -------------------------------------------------------------------- request helpers


def _openai_reasoning_model(model: str) -> bool:
    if model.startswith(("o1", "o3", "o4")):
        return True
    return model.startswith("gpt-5") and not model.startswith("gpt-5-chat")


def _tool(tool: ir.Tool) -> JSON:
    fn: JSON = {"name": tool.name}
    if tool.description is not None:
        fn["description"] = tool.description
    fn["parameters"] = tool.parameters
    if tool.strict is not None:
        fn["strict"] = tool.strict
    return {"type": "function", "function": fn}


def _apply_tool_choice(body: JSON, choice: ir.ToolChoice | None) -> None:
    if choice is None:
        return
    if choice.type == "tool" and choice.name:
        body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    else:
        body["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}.get(
            choice.type, "auto"
        )
    if choice.disable_parallel:
        body["parallel_tool_calls"] = False


def _response_format(fmt: JSON) -> JSON:
    if fmt.get("type") != "json_schema":
        return {"type": fmt.get("type", "text")}
    schema: JSON = {"name": fmt.get("name") or "response", "schema": fmt.get("schema", {})}
    if fmt.get("strict") is not None:
        schema["strict"] = fmt["strict"]
    if fmt.get("description"):
        schema["description"] = fmt["description"]
    return {"type": "json_schema", "json_schema": schema}


def _image(image: ir.Image) -> JSON:
    url = image.url or f"data:{image.media_type or 'image/png'};base64,{image.data or ''}"
    return {"type": "image_url", "image_url": {"url": url}}


def _user_part(part: ir.Part) -> JSON | None:
    if isinstance(part, ir.Text):
        return {"type": "text", "text": part.text}
    if isinstance(part, ir.Image):
        return _image(part)
    if isinstance(part, ir.Document):
        return _document(part)
    return None  # thinking / tool calls have no place in a user message


def _document(doc: ir.Document) -> JSON:
    if doc.source_type == "text":
        return {"type": "text", "text": doc.data or ""}
    if doc.source_type == "base64":
        file: JSON = {"file_data": f"data:{doc.media_type or 'application/pdf'};base64,{doc.data}"}
        file["filename"] = doc.filename or doc.title or "document.pdf"
        return {"type": "file", "file": file}
    # Chat Completions takes files inline or by Files-API id only; fetching URLs is not our job.
    raise invalid("Documents given by URL are not supported for this model; send them inline.")


def _tool_message(result: ir.ToolResult) -> JSON:
    # OpenAI has no is_error flag: the text itself has to say what went wrong.
    text = "\n\n".join(p.text for p in result.content if isinstance(p, ir.Text))
    return {"role": "tool", "tool_call_id": result.tool_call_id, "content": text}


def _simplify(parts: list[JSON]) -> str | list[JSON]:
    """Text-only content as a plain string: every compatible vendor accepts that form."""
    if all(p["type"] == "text" for p in parts):
        return "\n\n".join(p["text"] for p in parts)
    return parts


def _text_content(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # some compatible servers answer with text parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


OPENAI = OpenAICompatible()


_NO_CALL = base.UpstreamRequest("POST", "", {}, b"")


# --------------------------------------------------------------------------------------------
# The Batch API: the lines as a JSONL file (POST /files, purpose batch), POST /batches on it,
# polled until it ends; the output file holds the lines that answered, the error file the rest
# (`response.status_code` not 200, or `error.code` batch_cancelled / batch_expired).

_ENDED = ("completed", "failed", "expired", "cancelled")
_NOT_RUN = {"batch_cancelled": "cancelled", "batch_expired": "expired"}


class OpenAIBatches:
    def _headers(
        self, link: base.BatchLink, content_type: str = "application/json"
    ) -> dict[str, str]:
        return {"authorization": f"Bearer {link.api_key}", "content-type": content_type}

    def group(self, call: base.UpstreamRequest) -> str:
        """The call's endpoint as the Batch API names it: one endpoint per batch."""
        return "/v1/" + call.url.rpartition("/v1/")[2]

    async def submit(self, link: base.BatchLink, group: str, items: list[base.BatchItem]) -> str:
        lines = [
            orjson.dumps(
                {
                    "custom_id": it.custom_id,
                    "method": "POST",
                    "url": group,
                    "body": base.unstreamed(it.call),
                }
            )
            for it in items
        ]
        boundary = "tokenrelay-" + orjson.dumps(len(lines)).decode() + "-batch"
        form = b"".join(
            [
                f'--{boundary}\r\ncontent-disposition: form-data; name="purpose"\r\n\r\n'
                "batch\r\n".encode(),
                f'--{boundary}\r\ncontent-disposition: form-data; name="file"; '
                'filename="batch.jsonl"\r\ncontent-type: application/jsonl\r\n\r\n'.encode(),
                b"\n".join(lines),
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        root = link.base_url.rstrip("/")
        multipart = self._headers(link, f"multipart/form-data; boundary={boundary}")
        file_id = orjson.loads(await link.call("POST", root + "/files", multipart, form))["id"]
        create = orjson.dumps(
            {"input_file_id": file_id, "endpoint": group, "completion_window": "24h"}
        )
        got = await link.call("POST", root + "/batches", self._headers(link), create)
        return str(orjson.loads(got)["id"])

    async def poll(self, link: base.BatchLink, batch_id: str) -> base.BatchPoll:
        url = f"{link.base_url.rstrip('/')}/batches/{batch_id}"
        got = orjson.loads(await link.call("GET", url, self._headers(link)))
        files = {k: got.get(k) for k in ("output_file_id", "error_file_id")}
        status = got.get("status")
        unanswered = {"cancelled": "cancelled", "expired": "expired"}.get(status, "errored")
        return base.BatchPoll(status in _ENDED, {**files, "status": status}, unanswered)

    async def results(
        self, link: base.BatchLink, batch_id: str, poll: base.BatchPoll
    ) -> list[base.BatchOutcome]:
        out: list[base.BatchOutcome] = []
        for key in ("output_file_id", "error_file_id"):
            file_id = poll.handle.get(key)
            if not file_id:
                continue
            url = f"{link.base_url.rstrip('/')}/files/{file_id}/content"
            data = await link.call("GET", url, self._headers(link))
            for raw in data.splitlines():
                if raw.strip():
                    out.append(_outcome(orjson.loads(raw)))
        return out

    async def cancel(self, link: base.BatchLink, batch_id: str) -> None:
        url = f"{link.base_url.rstrip('/')}/batches/{batch_id}/cancel"
        await link.call("POST", url, self._headers(link))


def _outcome(line: JSON) -> base.BatchOutcome:
    cid = str(line.get("custom_id"))
    response = line.get("response")
    if isinstance(response, dict):
        status = int(response.get("status_code") or 500)
        body = orjson.dumps(response.get("body"))
        return base.BatchOutcome(cid, "succeeded" if status == 200 else "errored", status, body)
    code = str((line.get("error") or {}).get("code"))
    if code in _NOT_RUN:
        return base.BatchOutcome(cid, _NOT_RUN[code], 0)
    return base.BatchOutcome(cid, "errored", 500, orjson.dumps({"error": line.get("error")}))


OPENAI_BATCHES = OpenAIBatches()
