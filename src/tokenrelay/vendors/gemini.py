"""Gemini native API adapter (`generateContent` / `streamGenerateContent?alt=sse`).

What differs from the IR's block model (VENDORS.md §3, §6): roles are user/model, tool calls
have no ids (we synthesise `call_{responseId}_{n}`) and results are matched by name, `args`
and `response` are objects, thoughts are text parts flagged `thought`, a stream chunk holds
only new parts (grouped into IR blocks here), usage is cumulative on every chunk with thinking
outside `candidatesTokenCount`, tool calls end with `STOP`, and errors may arrive as a stream
event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import orjson

from tokenrelay import ir
from tokenrelay.sse import SSEEvent, SSEParser
from tokenrelay.vendors import base
from tokenrelay.vendors.beta_policy import report_dropped
from tokenrelay.vendors.gemini_schema import clean_schema

Json = dict[str, Any]
TextKind = Literal["text", "thinking"]  # the part kinds that stream into one open block

EFFORT_BUDGETS = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 24576}
EFFORT_BUDGETS["max"] = 24576  # the Flash ceiling; Pro goes higher but this fits every model
MAX_STOP_SEQUENCES = 5
MIME_BY_EXTENSION = {
    "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
    "webp": "image/webp", "heic": "image/heic", "heif": "image/heif",
    "pdf": "application/pdf", "txt": "text/plain",
}  # fmt: skip

# --------------------------------------------------------------------------------------------
# Request body


def _args_object(arguments: str) -> Json:
    """`args` must be an object; invalid JSON (a call cut off by max_tokens) becomes {}."""
    try:
        value = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {"value": value}


def _guess_mime(url: str, default: str) -> str:
    path = url.split("?", 1)[0].split("#", 1)[0]
    ext = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    return MIME_BY_EXTENSION.get(ext, default)


def _media_part(media_type: str | None, data: str | None, url: str | None, default: str) -> Json:
    if data is not None:
        return {"inlineData": {"mimeType": media_type or default, "data": data}}
    url = url or ""
    if url.startswith("data:") and ";base64," in url:
        header, payload = url[5:].split(";base64,", 1)
        return {"inlineData": {"mimeType": header or media_type or default, "data": payload}}
    # fileData wants a Files-API/GCS URI; other URLs are passed as given (see module report).
    return {"fileData": {"mimeType": media_type or _guess_mime(url, default), "fileUri": url}}


def _tool_result_parts(part: ir.ToolResult, names: Mapping[str, str]) -> list[Json]:
    name = part.name or names.get(part.tool_call_id) or part.tool_call_id
    text = "\n".join(p.text for p in part.content if isinstance(p, ir.Text))
    response = {"error" if part.is_error else "result": text}
    parts: list[Json] = [{"functionResponse": {"name": name, "response": response}}]
    for p in part.content:  # images a tool returned ride along as inline parts of the turn
        if isinstance(p, ir.Image):
            parts.append(_media_part(p.media_type, p.data, p.url, "image/jpeg"))
    return parts


def _parts(part: ir.Part, names: dict[str, str]) -> list[Json]:
    """Gemini parts for one IR part; `names` maps tool-call ids seen so far to names."""
    if isinstance(part, ir.Text):
        return [{"text": part.text}] if part.text else []
    if isinstance(part, ir.ToolCall):
        names[part.id] = part.name
        out: Json = {"functionCall": {"name": part.name, "args": _args_object(part.arguments)}}
        if part.signature:
            out["thoughtSignature"] = part.signature
        return [out]
    if isinstance(part, ir.ToolResult):
        return _tool_result_parts(part, names)
    if isinstance(part, ir.Image):
        return [_media_part(part.media_type, part.data, part.url, "image/jpeg")]
    if isinstance(part, ir.Document):
        if part.source_type == "text":
            return [{"text": part.data}] if part.data else []
        return [_media_part(part.media_type, part.data, part.url, "application/pdf")]
    return []  # Thinking / RedactedThinking: Gemini does not take thought text back


def contents(messages: list[ir.Message]) -> list[Json]:
    """user/model turns; consecutive same-role turns merged, none left without parts."""
    names: dict[str, str] = {}
    out: list[Json] = []
    for msg in messages:
        if msg.role == "system":
            continue  # in systemInstruction (build_body)
        parts = [p for part in msg.parts for p in _parts(part, names)]
        if not parts:
            continue
        role = "model" if msg.role == "assistant" else "user"
        if out and out[-1]["role"] == role:
            out[-1]["parts"].extend(parts)
        else:
            out.append({"role": role, "parts": parts})
    return out


def _declaration(tool: ir.Tool) -> Json:
    out: Json = {"name": tool.name}
    if tool.description:
        out["description"] = tool.description
    params = clean_schema(tool.parameters or {})
    if params.get("properties"):  # an OBJECT with empty properties → 400; omit instead
        out["parameters"] = params
    return out


def _calling_config(choice: ir.ToolChoice) -> Json:
    if choice.type == "tool":
        return {"mode": "ANY", "allowedFunctionNames": [choice.name or ""]}
    return {"mode": {"auto": "AUTO", "any": "ANY", "none": "NONE"}[choice.type]}


def _thinking_config(cfg: ir.ThinkingConfig | None) -> Json | None:
    if cfg is None:
        return None
    if cfg.enabled is False or cfg.effort == "none":
        return {"thinkingBudget": 0}
    if cfg.adaptive:
        budget: int | None = -1  # dynamic
    elif cfg.budget_tokens is not None:
        budget = cfg.budget_tokens
    elif cfg.effort is not None:
        budget = EFFORT_BUDGETS.get(cfg.effort, EFFORT_BUDGETS["medium"])
    elif cfg.enabled:
        budget = None  # the model's default budget
    else:
        return None
    # includeThoughts so thought summaries reach clients as thinking blocks.
    if budget is None:
        return {"includeThoughts": True}
    return {"thinkingBudget": budget, "includeThoughts": True}


def _present(**fields: Any) -> Json:
    """The fields the request sets: Gemini's own defaults stand for the rest."""
    return {name: value for name, value in fields.items() if value is not None}


def _generation_config(req: ir.Request) -> Json:
    gen = _present(
        temperature=req.temperature,
        topP=req.top_p,
        topK=req.top_k,
        maxOutputTokens=req.max_tokens,
    )
    if req.stop:
        gen["stopSequences"] = req.stop[:MAX_STOP_SEQUENCES]
    thinking = _thinking_config(req.thinking)
    if thinking is not None:
        gen["thinkingConfig"] = thinking
    fmt = req.response_format or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        gen["responseMimeType"] = "application/json"
        if fmt.get("schema") is not None:
            gen["responseJsonSchema"] = fmt["schema"]  # full JSON Schema: no cleaning needed
    return gen


def build_body(req: ir.Request) -> Json:
    body: Json = {}
    # Gemini has no system turn: mid-conversation system text joins systemInstruction.
    system = "\n\n".join(t.text for t in ir.folded_system(req) if t.text)
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    body["contents"] = contents(req.messages)
    if req.tools:
        body["tools"] = [{"functionDeclarations": [_declaration(t) for t in req.tools]}]
    if req.tool_choice is not None:
        body["toolConfig"] = {"functionCallingConfig": _calling_config(req.tool_choice)}
    gen = _generation_config(req)
    if gen:
        body["generationConfig"] = gen
    if req.extras_format == "gemini":
        for key, value in req.extras.items():
            mine = body.get(key)
            if mine is None:
                body[key] = value
            elif isinstance(mine, dict) and isinstance(value, dict):
                body[key] = {**value, **mine}
    return body


def _model_url(base_url: str, model: str, method: str) -> str:
    model = model.removeprefix("models/")
    return f"{base_url.rstrip('/')}/v1beta/models/{model}:{method}"


def _headers(api_key: str) -> dict[str, str]:
    return {"x-goog-api-key": api_key, "content-type": "application/json"}


# --------------------------------------------------------------------------------------------
# Responses

REFUSAL_REASONS = frozenset((
    "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
    "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
))  # fmt: skip
STATUS_NAMES: dict[str, tuple[ir.ErrorKind, int]] = {
    "INVALID_ARGUMENT": ("invalid_request", 400),
    "FAILED_PRECONDITION": ("invalid_request", 400),
    "OUT_OF_RANGE": ("invalid_request", 400),
    "NOT_FOUND": ("not_found", 404),
    "RESOURCE_EXHAUSTED": ("rate_limit", 429),
    "INTERNAL": ("api_error", 500),
    "UNAVAILABLE": ("overloaded", 503),
    "DEADLINE_EXCEEDED": ("timeout", 504),
}
CREDENTIAL_STATUSES = frozenset({"PERMISSION_DENIED", "UNAUTHENTICATED"})


def stop_reason(finish_reason: str, had_tool_call: bool) -> str:
    """Gemini finishReason → IR stop reason.

    MALFORMED_FUNCTION_CALL, UNEXPECTED_TOOL_CALL, OTHER, LANGUAGE and unknown values end the
    turn normally (end_turn): the HTTP exchange succeeded and its usage is billable; an error
    here would hide the partial answer and still cost the client a retry."""
    if finish_reason == "MAX_TOKENS":
        return "max_tokens"
    if finish_reason in REFUSAL_REASONS:
        return "refusal"
    return "tool_use" if had_tool_call else "end_turn"


def usage_from(u: Mapping[str, Any]) -> ir.Usage:
    """Cached tokens are inside promptTokenCount, thoughts outside candidatesTokenCount."""
    cached = u.get("cachedContentTokenCount") or 0
    thoughts = u.get("thoughtsTokenCount") or 0
    prompt = (u.get("promptTokenCount") or 0) + (u.get("toolUsePromptTokenCount") or 0)
    return ir.Usage(
        input=prompt - cached,
        output=(u.get("candidatesTokenCount") or 0) + thoughts,
        cache_read=cached,
        reasoning=thoughts,
    )


def _retry_delay(details: Any) -> float | None:
    for d in details if isinstance(details, list) else ():
        delay = d.get("retryDelay") if isinstance(d, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return float(delay[:-1])
            except ValueError:
                return None
    return None


def _credentials_error(status: int | str) -> ir.Error:
    return ir.Error(
        "api_error",
        f"The gateway's upstream credentials for vendor gemini were rejected ({status}); "
        "this is not a problem with your request or key.",
        502,
        code=ir.UPSTREAM_ACCOUNT_ERROR,
    )


def error_from(err: Mapping[str, Any], http_status: int | None = None) -> ir.Error:
    """A Gemini `error` object (HTTP error body or stream event) → IR error."""
    code = err.get("code") if isinstance(err.get("code"), int) else http_status
    status = err.get("status") or ""
    details = err.get("details")
    reasons = {d.get("reason") for d in details if isinstance(d, dict)} if details else set()
    if "API_KEY_INVALID" in reasons or status in CREDENTIAL_STATUSES or code in (401, 403):
        return _credentials_error(status or code or "unknown")
    kind, client_status = STATUS_NAMES.get(status) or base.status_error(code or 0)
    if code in (503, 529):  # an overload keeps its own status
        kind, client_status = "overloaded", code
    message = err.get("message")
    if not isinstance(message, str) or not message:
        message = f"gemini error ({status or code or 'unknown'})"
    limit = base.rate_limit_named(*_quota_ids(details)) if kind == "rate_limit" else None
    return ir.Error(kind, message.strip(), client_status, _retry_delay(details), limit=limit)


def _quota_ids(details: Any) -> list[str]:
    """The quota ids of a RESOURCE_EXHAUSTED error's QuotaFailure violations
    (`GenerateContentInputTokensPerModelPerMinute...`, `GenerateRequestsPerMinute...`)."""
    ids: list[str] = []
    for d in details if isinstance(details, list) else ():
        for v in d.get("violations", ()) if isinstance(d, dict) else ():
            if isinstance(v, dict) and isinstance(v.get("quotaId"), str):
                ids.append(v["quotaId"])
    return ids


class GeminiStreamDecoder:
    """GenerateContentResponse chunks → IR events. Consecutive parts of one kind (text or
    thought) form one block across chunks; each functionCall is a complete block. Only the
    first candidate is read (the gateway never asks for more)."""

    __slots__ = (
        "_calls",
        "_done",
        "_had_call",
        "_next_index",
        "_open_index",
        "_open_kind",
        "_parser",
        "_response_id",
        "_started",
    )

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._done = False
        self._started = False
        self._response_id = ""
        self._open_kind: TextKind | None = None
        self._open_index = 0
        self._next_index = 0
        self._calls = 0
        self._had_call = False

    def feed(self, chunk: bytes) -> list[ir.Event]:
        out: list[ir.Event] = []
        for sse in self._parser.feed(chunk):
            if self._done:
                break
            self._chunk_bytes(sse.data, out)
        return out

    def close(self) -> list[ir.Event]:
        out: list[ir.Event] = []
        for sse in self._parser.flush():
            if not self._done:
                self._chunk_bytes(sse.data, out)
        return out

    def _chunk_bytes(self, data: bytes, out: list[ir.Event]) -> None:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if isinstance(obj, dict):
            self.chunk(obj, out)

    def chunk(self, obj: Json, out: list[ir.Event]) -> None:
        """One GenerateContentResponse (a stream chunk or a whole non-stream body)."""
        candidates = obj.get("candidates")
        if "error" in obj and not candidates:
            out.append(error_from(obj["error"] if isinstance(obj["error"], dict) else {}))
            self._done = True
            return
        if not self._started:
            self._started = True
            self._response_id = obj.get("responseId") or ""
            out.append(ir.Start(self._response_id, obj.get("modelVersion") or ""))
        # Usage first: the counts are cumulative, and a client that reads the prompt size from
        # the first event it gets (Anthropic message_start) must see it there.
        usage = obj.get("usageMetadata")
        if usage:
            out.append(usage_from(usage))
        finish: str | None = None
        if candidates:
            cand = candidates[0]
            for part in (cand.get("content") or {}).get("parts") or ():
                self._part(part, out)
            finish = cand.get("finishReason")
        elif (obj.get("promptFeedback") or {}).get("blockReason"):
            finish = "SAFETY"  # the prompt was blocked: no candidates, a refusal
        if finish:
            self.close_block(out)
            out.append(ir.Finish(stop_reason(finish, self._had_call)))

    def end_body(self, out: list[ir.Event]) -> None:
        """A whole non-stream body was read: close its last block (unless it was an error)."""
        if not self._done:
            self.close_block(out)

    def close_block(self, out: list[ir.Event]) -> None:
        if self._open_kind is not None:
            out.append(ir.BlockStop(self._open_index))
            self._open_kind = None

    def _part(self, part: Json, out: list[ir.Event]) -> None:
        text = part.get("text")
        if text:
            kind: TextKind = "thinking" if part.get("thought") else "text"
            if self._open_kind != kind:
                self.close_block(out)
                self._open_kind, self._open_index = kind, self._next_index
                self._next_index += 1
                out.append(ir.BlockStart(self._open_index, kind))
            out.append(ir.Delta(self._open_index, kind, text))
        elif "functionCall" in part:
            self._function_call(part, out)
        # Empty text carrying only a thoughtSignature, code execution, inline media: no IR block.

    def _function_call(self, part: Json, out: list[ir.Event]) -> None:
        self.close_block(out)
        call = part["functionCall"] or {}
        call_id = call.get("id") or f"call_{self._response_id}_{self._calls}"
        self._calls += 1
        self._had_call = True
        index = self._next_index
        self._next_index += 1
        args = orjson.dumps(call.get("args") or {}).decode()
        out += [
            ir.BlockStart(
                index,
                "tool_call",
                tool_call_id=call_id,
                name=call.get("name", ""),
                data=part.get("thoughtSignature"),
            ),
            ir.Delta(index, "arguments", args),
            ir.BlockStop(index),
        ]


# --------------------------------------------------------------------------------------------
# The fast path (a Gemini-format client)

# Fields the gateway's route puts into a Gemini client's payload (the model and the method come
# from its URL): not the client's body.
ROUTE_FIELDS = ("model", "stream")


class GeminiScan(base.PassthroughScan):
    """Usage is cumulative on every chunk, over all candidates; the chunk with the last
    candidate's `finishReason` (or a prompt's `blockReason`) carries the final count and ends
    the answer, so it and anything after it are held back until the settlement commits. With
    `candidateCount` > 1 the candidates' chunks interleave, each naming its `index`: the answer
    ends when every one of them has finished. Gemini's stream has no terminator: `done` is
    that final chunk having come. An error arrives as a `{"error": ...}` chunk."""

    def __init__(
        self,
        decode: Callable[[bytes], list[ir.Event]],
        on_usage: base.UsageSink,
        candidates: int = 1,
    ) -> None:
        super().__init__(decode, on_usage)
        self._candidates = candidates
        self._finished: set[Any] = set()

    def _ends(self, data: bytes) -> bool:
        if b'"blockReason"' in data:
            return True
        if b'"finishReason"' not in data:
            return False
        if self._candidates == 1:
            return True
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return False
        candidates = chunk.get("candidates") if isinstance(chunk, dict) else None
        for candidate in candidates if isinstance(candidates, list) else ():
            if isinstance(candidate, dict) and candidate.get("finishReason"):
                self._finished.add(candidate.get("index", 0))
        return len(self._finished) >= self._candidates

    def seen(self, ev: SSEEvent) -> base.Seen:
        data = ev.data
        if data.startswith(b'{"error"'):
            return base.Seen.ERROR
        return base.Seen.FINAL_END if self._ends(data) else base.Seen.PLAIN

    def add_cost(self, ev: SSEEvent, extra_usage: Mapping[str, Any]) -> bytes:
        chunk = orjson.loads(ev.data)
        usage = chunk.setdefault("usageMetadata", {})
        for key, value in extra_usage.items():  # cost_usd → costUsd (camelCase JSON)
            head, *rest = key.split("_")
            usage[head + "".join(w.title() for w in rest)] = value
        return self.wire_data(orjson.dumps(chunk))  # LF framing, as the parser left the rest


# --------------------------------------------------------------------------------------------
# The adapter


class GeminiVendor:
    name = "gemini"
    native_format = "gemini"
    # The Generative Language API sends no request-id header (its responseId is in the body,
    # which the relay does not hand back to billing): receipts say null for Gemini.
    request_id_header = ""
    remembers_reasoning = False
    # An image is 258 tokens per 768-px tile (media_resolution up to ~1,120 an image on Gemini 3);
    # a fileUri may name a video or a PDF, which only the context window bounds.
    max_image_tokens = 16_384
    url_media_bounded = False

    def build_request(
        self, req: ir.Request, upstream_model: str, *, api_key: str, base_url: str
    ) -> base.UpstreamRequest:
        if req.stream:
            url = _model_url(base_url, upstream_model, "streamGenerateContent") + "?alt=sse"
        else:
            url = _model_url(base_url, upstream_model, "generateContent")
        body = orjson.dumps(build_body(req))
        report_dropped(self.name, self.native_format, req)
        return base.UpstreamRequest("POST", url, _headers(api_key), body, max_output=req.max_tokens)

    def enforces_stop(self, model: str) -> bool:
        return True

    def passthrough(self, client_format: str) -> GeminiVendor | None:
        return self if client_format == self.native_format else None

    def passthrough_request(
        self, body: Json, req: ir.Request, via: base.Passthrough
    ) -> base.UpstreamRequest:
        """The client's body as it came; the model (its URL's) is the catalog's upstream name."""
        sent = {k: v for k, v in body.items() if k not in ROUTE_FIELDS}
        if req.stream:
            url = _model_url(via.base_url, req.model, "streamGenerateContent") + "?alt=sse"
        else:
            url = _model_url(via.base_url, req.model, "generateContent")
        gen = body.get("generationConfig") or body.get("generation_config")
        count = None
        if isinstance(gen, dict):
            count = gen.get("candidateCount") or gen.get("candidate_count")
        return base.UpstreamRequest(
            "POST",
            url,
            _headers(via.api_key),
            orjson.dumps(sent),
            max_output=req.max_tokens,
            choices=count if isinstance(count, int) and count > 1 else 1,
        )

    def passthrough_scan(
        self, on_usage: base.UsageSink, *, client_usage: bool, choices: int = 1
    ) -> GeminiScan:
        return GeminiScan(lambda raw: GeminiStreamDecoder().feed(raw), on_usage, choices)

    def finalize(self, req: ir.Request, default_max_tokens: int) -> None:
        """Nothing to decide: the vendor defaults the output cap to the model's limit."""

    def parse_response(self, body: bytes, *, content: bool = True) -> list[ir.Event]:
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, list):  # the non-SSE stream shape, should it ever reach us
            obj = obj[0] if obj else None
        if not isinstance(obj, dict):
            return [ir.Error("api_error", "gemini sent an unreadable response body", 502)]
        decoder = GeminiStreamDecoder()
        events: list[ir.Event] = []
        decoder.chunk(obj, events)
        decoder.end_body(events)
        return events

    def stream_decoder(self, upstream: base.UpstreamRequest) -> GeminiStreamDecoder:
        return GeminiStreamDecoder()

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> ir.Error:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, list) and data:
            data = data[0]
        err = data.get("error") if isinstance(data, dict) else None
        if not isinstance(err, dict):
            if status in (401, 403):
                return _credentials_error(status)
            err = {"message": f"gemini returned HTTP {status}"}
        result = error_from({**err, "code": status}, status)
        if result.retry_after is None:
            result.retry_after = _retry_after_header(headers)
        return result

    def build_count_tokens(
        self, req: ir.Request, upstream_model: str, *, api_key: str, base_url: str
    ) -> base.UpstreamRequest:
        full = build_body(req)
        if "systemInstruction" in full or "tools" in full:
            # Only the generateContentRequest form counts system text and tool declarations.
            keys = ("contents", "systemInstruction", "tools")
            inner = {k: full[k] for k in keys if k in full}
            model = "models/" + upstream_model.removeprefix("models/")
            body: Json = {"generateContentRequest": {"model": model, **inner}}
        else:
            body = {"contents": full["contents"]}
        url = _model_url(base_url, upstream_model, "countTokens")
        return base.UpstreamRequest("POST", url, _headers(api_key), orjson.dumps(body))

    def parse_count_tokens(self, body: bytes) -> int:
        return int(orjson.loads(body).get("totalTokens", 0))

    # ---------------------------------------------------------------- embeddings

    embeds_token_arrays = False

    def build_embeddings(
        self, req: ir.EmbeddingRequest, upstream_model: str, *, api_key: str, base_url: str
    ) -> base.UpstreamRequest:
        """Always `batchEmbedContents` (one call for one input or many)."""
        model = "models/" + upstream_model.removeprefix("models/")
        requests: list[Json] = []
        for text in req.inputs:
            one: Json = {"model": model, "content": {"parts": [{"text": text}]}}
            one |= _present(
                outputDimensionality=req.dimensions, taskType=req.task_type, title=req.title
            )
            requests.append(one)
        url = _model_url(base_url, upstream_model, "batchEmbedContents")
        return base.UpstreamRequest(
            "POST", url, _headers(api_key), orjson.dumps({"requests": requests}), max_output=0
        )

    def parse_embeddings(self, body: bytes) -> ir.Embeddings:
        # The Gemini API reports no token count for embeddings: the gateway estimates it.
        data = orjson.loads(body)
        return ir.Embeddings([list(e.get("values") or []) for e in data.get("embeddings") or []])


def _retry_after_header(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return float(value) if value else None
    except ValueError:
        return None


GEMINI = GeminiVendor()


# --------------------------------------------------------------------------------------------
# Batch Mode: POST models/{model}:batchGenerateContent with the requests inline (one model per
# batch), an Operation `batches/{id}` polled until `done`; the answers come inline, in the
# order of the requests, each `{response | error, metadata: {key}}`.

_BATCH_STATE_ENDED = (
    "BATCH_STATE_SUCCEEDED",
    "BATCH_STATE_FAILED",
    "BATCH_STATE_CANCELLED",
    "BATCH_STATE_EXPIRED",
)


class GeminiBatches:
    def group(self, call: base.UpstreamRequest) -> str:
        """The call's model (`.../models/{model}:generateContent`)."""
        return call.url.rpartition("/models/")[2].partition(":")[0]

    async def submit(self, link: base.BatchLink, group: str, items: list[base.BatchItem]) -> str:
        requests = [
            {"request": orjson.loads(item.call.body), "metadata": {"key": item.custom_id}}
            for item in items
        ]
        body = {
            "batch": {
                "display_name": f"tokenrelay-{len(items)}",
                "input_config": {"requests": {"requests": requests}},
            }
        }
        url = _model_url(link.base_url, group, "batchGenerateContent")
        got = await link.call("POST", url, _headers(link.api_key), orjson.dumps(body))
        return str(orjson.loads(got)["name"]).removeprefix("batches/")

    def _batch_url(self, link: base.BatchLink, batch_id: str, verb: str = "") -> str:
        return f"{link.base_url.rstrip('/')}/v1beta/batches/{batch_id}{verb}"

    async def poll(self, link: base.BatchLink, batch_id: str) -> base.BatchPoll:
        url = self._batch_url(link, batch_id)
        op = orjson.loads(await link.call("GET", url, _headers(link.api_key)))
        state = str((op.get("metadata") or {}).get("state", ""))
        ended = bool(op.get("done")) or state in _BATCH_STATE_ENDED
        unanswered = {"BATCH_STATE_CANCELLED": "cancelled", "BATCH_STATE_EXPIRED": "expired"}
        return base.BatchPoll(ended, {"operation": op}, unanswered.get(state, "errored"))

    async def results(
        self, link: base.BatchLink, batch_id: str, poll: base.BatchPoll
    ) -> list[base.BatchOutcome]:
        op: Json = poll.handle["operation"]
        output = op.get("response") or (op.get("metadata") or {}).get("output") or {}
        answers = (output.get("inlinedResponses") or {}).get("inlinedResponses") or []
        out = []
        for answer in answers:
            key = str((answer.get("metadata") or {}).get("key"))
            if "response" in answer:
                out.append(
                    base.BatchOutcome(key, "succeeded", 200, orjson.dumps(answer["response"]))
                )
            else:
                err = answer.get("error") or {}
                status = int(err.get("code") or 500)
                out.append(base.BatchOutcome(key, "errored", status, orjson.dumps({"error": err})))
        return out

    async def cancel(self, link: base.BatchLink, batch_id: str) -> None:
        url = self._batch_url(link, batch_id, ":cancel")
        await link.call("POST", url, _headers(link.api_key))


GEMINI_BATCHES = GeminiBatches()
