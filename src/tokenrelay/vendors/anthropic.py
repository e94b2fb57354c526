"""Anthropic Messages API adapter: IR request → `/v1/messages` body, answers → IR events.

The IR is modelled on this API's block model, so most of the mapping is one to one. What needs
care (VENDORS.md §1, §6): tool_use `input` is an object, tool_result blocks lead their user
turn, empty text blocks are rejected, temperature tops out at 1.0, thinking needs a budget
below max_tokens, and the vendor rejecting *our* key is never the client's fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from tokenrelay import ir
from tokenrelay.sse import SSEEvent, SSEParser, encode
from tokenrelay.vendors import base
from tokenrelay.vendors.beta_policy import beta_headers, report_dropped

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
MIN_THINKING_BUDGET = 1024  # the API's floor for budget_tokens
EFFORT_BUDGETS = {
    "minimal": 1024, "low": 1024, "medium": 4096, "high": 16384, "xhigh": 24576, "max": 32000,
}  # fmt: skip

Json = dict[str, Any]

# --------------------------------------------------------------------------------------------
# Request body


def _text_block(part: ir.Text) -> Json:
    block: Json = {"type": "text", "text": part.text}
    if part.citations:
        block["citations"] = part.citations
    if part.cache_control:
        block["cache_control"] = part.cache_control
    return block


def _image_block(part: ir.Image) -> Json:
    if part.data is not None:
        source: Json = {
            "type": "base64",
            "media_type": part.media_type or "image/png",
            "data": part.data,
        }
    else:
        source = {"type": "url", "url": part.url or ""}
    block: Json = {"type": "image", "source": source}
    if part.cache_control:
        block["cache_control"] = part.cache_control
    return block


def _document_block(part: ir.Document) -> Json:
    if part.source_type == "url":
        source: Json = {"type": "url", "url": part.url or ""}
    else:
        default_type = "text/plain" if part.source_type == "text" else "application/pdf"
        source = {
            "type": part.source_type,
            "media_type": part.media_type or default_type,
            "data": part.data or "",
        }
    block: Json = {"type": "document", "source": source}
    if part.title:
        block["title"] = part.title
    block.update(part.extra)  # citations, context: Anthropic-only fields kept by the frontend
    if part.cache_control:
        block["cache_control"] = part.cache_control
    return block


def tool_input(arguments: str) -> Json:
    """JSON text → the object `input` must be. A model cut off mid-arguments leaves invalid
    JSON in history; the API would 400 on a string, so send `{}` (or wrap a non-object)."""
    try:
        value = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {"value": value}


def _tool_result_block(part: ir.ToolResult) -> Json:
    block: Json = {"type": "tool_result", "tool_use_id": part.tool_call_id}
    items = [p for p in part.content if not (isinstance(p, ir.Text) and not p.text)]
    if len(items) == 1 and isinstance(items[0], ir.Text) and not items[0].cache_control:
        block["content"] = items[0].text
    elif items:
        block["content"] = [
            _text_block(p) if isinstance(p, ir.Text) else _image_block(p) for p in items
        ]
    if part.is_error:
        block["is_error"] = True
    if part.cache_control:
        block["cache_control"] = part.cache_control
    return block


def _part_block(part: ir.Part) -> Json | None:
    """One content block, or None for parts the API would reject."""
    if isinstance(part, ir.Text):
        return _text_block(part) if part.text else None
    if isinstance(part, ir.ToolCall):
        block: Json = {
            "type": "tool_use",
            "id": part.id,
            "name": part.name,
            "input": tool_input(part.arguments),
        }
        if part.cache_control:
            block["cache_control"] = part.cache_control
        return block
    if isinstance(part, ir.ToolResult):
        return _tool_result_block(part)
    if isinstance(part, ir.Thinking):
        # Unsigned thinking (from another vendor) would fail signature validation: drop it.
        if not part.signature:
            return None
        return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    if isinstance(part, ir.RedactedThinking):
        return {"type": "redacted_thinking", "data": part.data}
    if isinstance(part, ir.Image):
        return _image_block(part)
    return _document_block(part)


def _messages(messages: list[ir.Message]) -> list[Json]:
    """Merge consecutive same-role turns (also those left adjacent by a dropped empty turn)
    and put tool_result blocks first in each user turn, as the API demands."""
    out: list[Json] = []
    for msg in messages:
        if msg.role == "system":
            continue  # the API refuses a "system" role: build_body folds them into `system`
        blocks = [b for b in map(_part_block, msg.parts) if b is not None]
        if not blocks:
            continue
        if out and out[-1]["role"] == msg.role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": msg.role, "content": blocks})
    for turn in out:
        if turn["role"] == "user":
            content = turn["content"]
            results = [b for b in content if b["type"] == "tool_result"]
            if results and len(results) < len(content):
                turn["content"] = results + [b for b in content if b["type"] != "tool_result"]
    return out


def _tool(tool: ir.Tool) -> Json:
    schema = tool.parameters or {}
    if schema.get("type") != "object":
        schema = {**schema, "type": "object"}
    out: Json = {"name": tool.name}
    if tool.description:
        out["description"] = tool.description
    out["input_schema"] = schema
    if tool.cache_control:
        out["cache_control"] = tool.cache_control
    return out


def _tool_choice(choice: ir.ToolChoice) -> Json:
    out: Json = {"type": choice.type}
    if choice.type == "tool":
        out["name"] = choice.name or ""
    if choice.disable_parallel and choice.type != "none":
        out["disable_parallel_tool_use"] = True
    return out


def _thinking(cfg: ir.ThinkingConfig | None, max_tokens: int | None) -> tuple[Json | None, int]:
    """The `thinking` object and the max_tokens to send with it.

    A budget that does not fit under the client's max_tokens is shrunk (max_tokens stays the
    cap the client, and the relay's reservation, agreed to); only when even the API's minimum
    budget does not fit is max_tokens raised, by that minimum."""
    limit = max_tokens or DEFAULT_MAX_TOKENS
    if cfg is None or cfg.enabled is False or cfg.effort == "none":
        return None, limit
    display = {"display": cfg.display} if cfg.display else {}
    if cfg.adaptive:
        return {"type": "adaptive", **display}, limit
    if cfg.budget_tokens is not None:
        budget = cfg.budget_tokens
    elif cfg.effort is not None:
        budget = EFFORT_BUDGETS.get(cfg.effort, EFFORT_BUDGETS["medium"])
    elif cfg.enabled:
        budget = EFFORT_BUDGETS["medium"]
    else:
        return None, limit
    if max_tokens is None:
        limit = budget + DEFAULT_MAX_TOKENS  # nobody set a cap: leave room for the answer
    budget = max(MIN_THINKING_BUDGET, min(budget, limit - 1))
    if budget >= limit:
        limit += budget
    return {"type": "enabled", "budget_tokens": budget, **display}, limit


def _merge_extras(body: Json, extras: Mapping[str, Any]) -> None:
    """Client fields the IR does not model pass through; IR-derived values win on conflict,
    nested objects (output_config) are merged key by key."""
    for key, value in extras.items():
        mine = body.get(key)
        if mine is None:
            body[key] = value
        elif isinstance(mine, dict) and isinstance(value, dict):
            body[key] = {**value, **mine}


def build_body(req: ir.Request, model: str) -> Json:
    body: Json = {"model": model}
    thinking, max_tokens = _thinking(req.thinking, req.max_tokens)
    body["max_tokens"] = max_tokens
    system = [_text_block(t) for t in ir.folded_system(req) if t.text]
    if system:
        body["system"] = system
    body["messages"] = _messages(req.messages)
    if req.tools:
        body["tools"] = [_tool(t) for t in req.tools]
    if req.tool_choice is not None:
        body["tool_choice"] = _tool_choice(req.tool_choice)
    if thinking is not None:
        body["thinking"] = thinking
        # The API requires temperature 1 and no top_k with thinking, top_p within [0.95, 1].
        if req.top_p is not None:
            body["top_p"] = min(max(req.top_p, 0.95), 1.0)
    else:
        if req.temperature is not None:
            body["temperature"] = min(max(req.temperature, 0.0), 1.0)
        if req.top_p is not None:
            body["top_p"] = req.top_p
        if req.top_k is not None:
            body["top_k"] = req.top_k
    if req.stop:
        body["stop_sequences"] = req.stop
    if req.user:
        body["metadata"] = {"user_id": req.user}
    fmt = req.response_format
    if fmt and fmt.get("type") == "json_schema" and fmt.get("schema") is not None:
        body["output_config"] = {"format": {"type": "json_schema", "schema": fmt["schema"]}}
    if req.extras_format == "anthropic" and req.thinking and req.thinking.effort:
        # output_config.effort as an Anthropic client sent it (Claude Code does, with adaptive
        # thinking); other clients' effort became a thinking budget above.
        body.setdefault("output_config", {})["effort"] = req.thinking.effort
    if req.stream:
        body["stream"] = True
    if req.extras_format == "anthropic" and req.extras:
        _merge_extras(body, req.extras)
    return body


def fold_system_messages(body: Json) -> Json:
    """The client's own body with its "system"-role messages (which the API refuses with
    `Unexpected role "system"`) appended, in order, to the top-level `system`."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not any(
        isinstance(m, dict) and m.get("role") == "system" for m in messages
    ):
        return body
    system = body.get("system") or []
    blocks: list[Any] = [{"type": "text", "text": system}] if isinstance(system, str) else system
    blocks = list(blocks)
    kept: list[Any] = []
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "system":
            content = m.get("content")
            if isinstance(content, str):
                content = [{"type": "text", "text": content}]
            # An empty text block is refused in `system` too.
            blocks.extend(b for b in content or () if not isinstance(b, dict) or b.get("text"))
        else:
            kept.append(m)
    return {**body, "system": blocks, "messages": kept}


def _headers(req: ir.Request, api_key: str) -> dict[str, str]:
    headers = beta_headers(req.passthrough_headers)
    headers["x-api-key"] = api_key
    headers["anthropic-version"] = API_VERSION
    headers["content-type"] = "application/json"
    return headers


# --------------------------------------------------------------------------------------------
# Responses

ERROR_TYPES: dict[str, tuple[ir.ErrorKind, int]] = {
    "invalid_request_error": ("invalid_request", 400),
    "not_found_error": ("not_found", 404),
    "request_too_large": ("request_too_large", 413),
    "rate_limit_error": ("rate_limit", 429),
    "api_error": ("api_error", 500),
    "timeout_error": ("timeout", 504),
    "overloaded_error": ("overloaded", 529),
    # The vendor refusing the gateway's own key or account: a gateway fault (502).
    "authentication_error": ("api_error", 502),
    "permission_error": ("api_error", 502),
    "billing_error": ("api_error", 502),
}
# An overload keeps its own status, whatever the body's error type says (a 503 from a proxy in
# front of the API carries `api_error`): clients' retry logic and dashboards tell them apart.
OVERLOAD_STATUSES = frozenset({503, 529})
DELTA_FIELDS: dict[str, tuple[str, ir.DeltaKind]] = {
    "text_delta": ("text", "text"),
    "input_json_delta": ("partial_json", "arguments"),
    "thinking_delta": ("thinking", "thinking"),
    "signature_delta": ("signature", "signature"),
}
CREDENTIAL_STATUSES = {401: "credentials", 402: "billing account", 403: "credentials"}


def usage_from(u: Mapping[str, Any]) -> ir.Usage:
    """Anthropic usage → IR usage; absent fields stay None so they do not override."""
    cache_1h = None
    creation = u.get("cache_creation")
    if isinstance(creation, dict):
        cache_1h = creation.get("ephemeral_1h_input_tokens")
    details = u.get("output_tokens_details")
    reasoning = details.get("thinking_tokens") if isinstance(details, dict) else None
    return ir.Usage(
        input=u.get("input_tokens"),
        output=u.get("output_tokens"),
        cache_read=u.get("cache_read_input_tokens"),
        cache_write=u.get("cache_creation_input_tokens"),
        cache_write_1h=cache_1h,
        reasoning=reasoning,
    )


def error_from(err: Any, status: int | None = None) -> ir.Error:
    """An Anthropic `error` object (mid-stream or in an error body) → IR error."""
    etype = err.get("type") if isinstance(err, dict) else None
    message = err.get("message") if isinstance(err, dict) else None
    if not isinstance(message, str) or not message:
        message = f"anthropic error ({etype or status or 'unknown'})"
    kind, client_status = ERROR_TYPES.get(str(etype), ("api_error", 502))
    if status in OVERLOAD_STATUSES:
        kind, client_status = "overloaded", status
    elif status is not None and etype not in ERROR_TYPES:
        kind, client_status = base.status_error(status)
    limit = base.rate_limit_named(message) if kind == "rate_limit" else None
    return ir.Error(kind, message, client_status, limit=limit)


def _block_events(index: int, block: Mapping[str, Any], *, stream: bool = False) -> list[ir.Event]:
    """A whole content block as events. In a stream only the start is used, and tool_use
    `input` there is an `{}` placeholder that the input_json_delta fragments replace."""
    btype = block.get("type")
    if btype == "text":
        events: list[ir.Event] = [ir.BlockStart(index, "text")]
        if block.get("text"):
            events.append(ir.Delta(index, "text", block["text"]))
    elif btype == "thinking":
        events = [ir.BlockStart(index, "thinking")]
        if block.get("thinking"):
            events.append(ir.Delta(index, "thinking", block["thinking"]))
        if block.get("signature"):
            events.append(ir.Delta(index, "signature", block["signature"]))
    elif btype == "redacted_thinking":
        events = [ir.BlockStart(index, "redacted_thinking", data=block.get("data", ""))]
    elif btype == "tool_use":
        events = [
            ir.BlockStart(index, "tool_call", tool_call_id=block.get("id"), name=block.get("name"))
        ]
        if not stream:
            args = orjson.dumps(block.get("input") or {}).decode()
            events.append(ir.Delta(index, "arguments", args))
    else:  # server-tool blocks and future types have no IR counterpart
        return []
    events.append(ir.BlockStop(index))
    return events


def parse_message(msg: Mapping[str, Any], *, content: bool = True) -> list[ir.Event]:
    events: list[ir.Event] = [ir.Start(msg.get("id", ""), msg.get("model", ""))]
    for index, block in enumerate(msg.get("content") or () if content else ()):
        events += _block_events(index, block)
    events.append(usage_from(msg.get("usage") or {}))
    if msg.get("stop_reason"):
        events.append(ir.Finish(msg["stop_reason"], msg.get("stop_sequence")))
    return events


class AnthropicStreamDecoder:
    """Anthropic SSE → IR events. Block indexes are Anthropic's own; blocks of types the IR
    does not know are skipped with all their events."""

    __slots__ = ("_done", "_parser", "_skipped")

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._done = False
        self._skipped: set[int] = set()

    def feed(self, chunk: bytes) -> list[ir.Event]:
        if self._done:
            return []
        return self._decode(self._parser.feed(chunk))

    def close(self) -> list[ir.Event]:
        if self._done:
            return []
        return self._decode(self._parser.flush())

    def _decode(self, sse_events: list[SSEEvent]) -> list[ir.Event]:
        out: list[ir.Event] = []
        for sse in sse_events:
            if not sse.data:
                continue
            try:
                data = orjson.loads(sse.data)
            except orjson.JSONDecodeError:
                continue  # not ours to judge; the SDK skips unparseable events too
            if not isinstance(data, dict):
                continue
            self._event(data, out)
            if self._done:
                break
        return out

    def _event(self, data: Json, out: list[ir.Event]) -> None:
        etype = data.get("type")
        if etype == "content_block_delta":
            self._delta(data, out)
        elif etype == "content_block_start":
            index = data.get("index", 0)
            events = _block_events(index, data.get("content_block") or {}, stream=True)
            if events:
                out += events[:-1]  # the BlockStop comes with content_block_stop
            else:
                self._skipped.add(index)
        elif etype == "content_block_stop":
            index = data.get("index", 0)
            if index not in self._skipped:
                out.append(ir.BlockStop(index))
        elif etype == "message_start":
            msg = data.get("message") or {}
            out.append(ir.Start(msg.get("id", ""), msg.get("model", "")))
            usage = usage_from(msg.get("usage") or {})
            usage.output = None  # a placeholder (1-2); the real total comes with message_delta
            out.append(usage)
        elif etype == "message_delta":
            out.append(usage_from(data.get("usage") or {}))
            delta = data.get("delta") or {}
            if delta.get("stop_reason"):
                out.append(ir.Finish(delta["stop_reason"], delta.get("stop_sequence")))
        elif etype == "error":
            out.append(error_from(data.get("error")))
            self._done = True

    def _delta(self, data: Json, out: list[ir.Event]) -> None:
        index = data.get("index", 0)
        if index in self._skipped:
            return
        delta = data.get("delta") or {}
        spec = DELTA_FIELDS.get(delta.get("type", ""))
        if spec is None:  # citations_delta and future types
            return
        value = delta.get(spec[0])
        if value:  # the first input_json_delta is often "", thinking ends with an empty one
            out.append(ir.Delta(index, spec[1], value))


# --------------------------------------------------------------------------------------------
# The adapter


_SEEN = {
    "message_start": base.Seen.USAGE,
    "message_delta": base.Seen.FINAL,
    "message_stop": base.Seen.END,
    "error": base.Seen.ERROR,
}


class AnthropicScan(base.PassthroughScan):
    """Usage rides on `message_start` (input) and `message_delta` (output, final); the stream
    ends with `message_stop`, or an `error` event. Every event is named on its `event:` line."""

    def seen(self, ev: SSEEvent) -> base.Seen:
        return _SEEN.get(ev.event or "", base.Seen.PLAIN)

    def add_cost(self, ev: SSEEvent, extra_usage: Mapping[str, Any]) -> bytes:
        msg = orjson.loads(ev.data)
        msg.setdefault("usage", {}).update(extra_usage)
        return encode(orjson.dumps(msg), "message_delta")


class AnthropicVendor:
    name = "anthropic"
    native_format = "anthropic"
    request_id_header = "request-id"
    remembers_reasoning = False  # same-format clients replay their own signed thinking
    # Images are scaled to fit ~1.15 MP (≈1,600 tokens); newer models read up to ~3.75 MP.
    max_image_tokens = 5_000
    url_media_bounded = True

    def build_request(
        self, req: ir.Request, upstream_model: str, *, api_key: str, base_url: str
    ) -> base.UpstreamRequest:
        body = build_body(req, upstream_model)
        report_dropped(self.name, self.native_format, req)
        return base.UpstreamRequest(
            "POST",
            base_url.rstrip("/") + "/v1/messages",
            _headers(req, api_key),
            orjson.dumps(body),
            max_output=body["max_tokens"],  # thinking may have raised it above the client's
        )

    def enforces_stop(self, model: str) -> bool:
        return True

    def finalize(self, req: ir.Request, default_max_tokens: int) -> None:
        """max_tokens is required; a thinking budget below the API's floor raises it."""
        if req.max_tokens is None:
            req.max_tokens = default_max_tokens
        thinking, req.max_tokens = _thinking(req.thinking, req.max_tokens)
        if thinking is not None and req.thinking is not None and "budget_tokens" in thinking:
            req.thinking.budget_tokens = thinking["budget_tokens"]

    def passthrough(self, client_format: str) -> AnthropicVendor | None:
        return self if client_format == self.native_format else None

    def passthrough_request(
        self, body: Json, req: ir.Request, via: base.Passthrough
    ) -> base.UpstreamRequest:
        headers = {
            **beta_headers(req.passthrough_headers),
            "x-api-key": via.api_key,
            "anthropic-version": via.client_headers.get("anthropic-version", API_VERSION),
            "content-type": "application/json",
        }
        return base.UpstreamRequest(
            "POST",
            via.base_url.rstrip("/") + "/v1/messages",
            headers,
            orjson.dumps({**fold_system_messages(body), "model": req.model}),
            max_output=req.max_tokens,
        )

    def passthrough_scan(
        self, on_usage: base.UsageSink, *, client_usage: bool, choices: int = 1
    ) -> AnthropicScan:
        decoder = self.stream_decoder
        return AnthropicScan(lambda raw: decoder(_NO_CALL).feed(raw), on_usage)

    def parse_response(self, body: bytes, *, content: bool = True) -> list[ir.Event]:
        try:
            msg = orjson.loads(body)
        except orjson.JSONDecodeError:
            msg = None
        if not isinstance(msg, dict):
            return [ir.Error("api_error", "anthropic sent an unreadable response body", 502)]
        if msg.get("type") == "error":
            return [error_from(msg.get("error"))]
        return parse_message(msg, content=content)

    def stream_decoder(self, upstream: base.UpstreamRequest) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder()

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> ir.Error:
        if status in CREDENTIAL_STATUSES:
            what = CREDENTIAL_STATUSES[status]
            return ir.Error(
                "api_error",
                f"The gateway's upstream {what} for vendor anthropic were rejected "
                f"(HTTP {status}); this is not a problem with your request or key.",
                502,
                code=ir.UPSTREAM_ACCOUNT_ERROR,
            )
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict):
            result = error_from(err, status)
        else:
            result = error_from(None, status)
            result.message = f"anthropic returned HTTP {status}"
        result.retry_after = _retry_after(headers)
        return result

    def build_count_tokens(
        self, req: ir.Request, upstream_model: str, *, api_key: str, base_url: str
    ) -> base.UpstreamRequest:
        full = build_body(req, upstream_model)
        keys = ("model", "system", "messages", "tools", "tool_choice", "thinking")
        body = {k: full[k] for k in keys if k in full}
        return base.UpstreamRequest(
            "POST",
            base_url.rstrip("/") + "/v1/messages/count_tokens",
            _headers(req, api_key),
            orjson.dumps(body),
        )

    def parse_count_tokens(self, body: bytes) -> int:
        return int(orjson.loads(body)["input_tokens"])


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after") or headers.get("Retry-After")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: rare from this vendor, and the SDKs back off anyway


_NO_CALL = base.UpstreamRequest("POST", "", {}, b"")
ANTHROPIC = AnthropicVendor()


# --------------------------------------------------------------------------------------------
# Message Batches: POST /v1/messages/batches {requests: [{custom_id, params}]}, polled until
# `processing_status: ended`, results as JSONL from `results_url`.

_BATCH_STATES = {"succeeded": "succeeded", "errored": "errored", "canceled": "cancelled"}


class AnthropicBatches:
    def _headers(self, link: base.BatchLink) -> dict[str, str]:
        return {
            "x-api-key": link.api_key,
            "anthropic-version": API_VERSION,
            "content-type": "application/json",
        }

    def _url(self, link: base.BatchLink, tail: str = "") -> str:
        return f"{link.base_url.rstrip('/')}/v1/messages/batches{tail}"

    def group(self, call: base.UpstreamRequest) -> str:
        return "messages"  # a batch may mix models

    async def submit(self, link: base.BatchLink, group: str, items: list[base.BatchItem]) -> str:
        requests = [{"custom_id": it.custom_id, "params": base.unstreamed(it.call)} for it in items]
        body = orjson.dumps({"requests": requests})
        got = await link.call("POST", self._url(link), self._headers(link), body)
        return str(orjson.loads(got)["id"])

    async def poll(self, link: base.BatchLink, batch_id: str) -> base.BatchPoll:
        url = self._url(link, "/" + batch_id)
        got = orjson.loads(await link.call("GET", url, self._headers(link)))
        return base.BatchPoll(
            got.get("processing_status") == "ended", {"url": got.get("results_url")}
        )

    async def results(
        self, link: base.BatchLink, batch_id: str, poll: base.BatchPoll
    ) -> list[base.BatchOutcome]:
        url = poll.handle.get("url") or self._url(link, f"/{batch_id}/results")
        out = []
        for raw in (await link.call("GET", url, self._headers(link))).splitlines():
            if not raw.strip():
                continue
            line = orjson.loads(raw)
            result = line.get("result") or {}
            kind = result.get("type")
            cid = str(line.get("custom_id"))
            if kind == "succeeded":
                out.append(
                    base.BatchOutcome(cid, "succeeded", 200, orjson.dumps(result["message"]))
                )
            elif kind == "errored":
                err: Json = result.get("error") or {}
                nested = err.get("error")
                inner: Json = nested if isinstance(nested, dict) else err
                status = ERROR_TYPES.get(str(inner.get("type")), ("api_error", 500))[1]
                out.append(base.BatchOutcome(cid, "errored", status, orjson.dumps(err)))
            else:
                out.append(base.BatchOutcome(cid, _BATCH_STATES.get(str(kind), "expired"), 0))
        return out

    async def cancel(self, link: base.BatchLink, batch_id: str) -> None:
        await link.call("POST", self._url(link, f"/{batch_id}/cancel"), self._headers(link))


ANTHROPIC_BATCHES = AnthropicBatches()
