"""The intermediate representation every frontend parses into and every vendor adapter speaks.

Modelled on the Anthropic block model (the richest of the five formats) so that nothing
Anthropic-only — thinking signatures, redacted thinking, cache_control — is lost on a round trip.
Imports nothing of ours: frontends, vendors, relay and billing all sit above it.

Conventions
- Stop reasons use the Anthropic vocabulary (`end_turn`, `max_tokens`, `stop_sequence`,
  `tool_use`, `refusal`, `pause_turn`, `model_context_window_exceeded`); frontends map them.
- `Usage` numbers are *cumulative totals so far*; a later `Usage` event overrides the fields it
  sets (None = unknown / keep the previous value). `input` is the *uncached* prompt part,
  `output` is billable output including reasoning, `reasoning` is the part of `output` spent
  thinking (informational, never added on top).
- Stream blocks are strictly sequential, as in Anthropic streams: BlockStart(i), Delta(i)*,
  BlockStop(i), then i+1. Vendor parsers that receive other shapes must normalise to this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# --------------------------------------------------------------------------------------------
# Request parts


# The most sampling passes one request's server tools run on the vendor's side: Anthropic's
# loop pauses (`pause_turn`) after 10; an OpenAI Responses call is capped to it
# (`max_tool_calls`, a call per pass but the last). The hold counts this many.
SERVER_TOOL_PASSES = 10


@dataclass(slots=True)
class Text:
    text: str
    cache_control: dict[str, Any] | None = None
    # Anthropic text blocks may carry citations; passed through where the client speaks Anthropic.
    citations: list[Any] | None = None


@dataclass(slots=True)
class Image:
    """An image given inline (`data` base64 without a data: prefix) or by `url`."""

    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    cache_control: dict[str, Any] | None = None


@dataclass(slots=True)
class Document:
    """A document (PDF or plain text). `source_type` is base64, text or url."""

    source_type: Literal["base64", "text", "url"]
    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    title: str | None = None
    filename: str | None = None
    cache_control: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ToolCall:
    """A tool call the assistant made. `arguments` is JSON *text* (may be invalid when cut off).

    `signature` holds vendor reasoning state bound to the call (Gemini `thoughtSignature`).
    """

    id: str
    name: str
    arguments: str = "{}"
    signature: str | None = None
    cache_control: dict[str, Any] | None = None


@dataclass(slots=True)
class ToolResult:
    """The result of a tool call. `content` holds Text and Image parts (a plain string becomes
    one Text). `name` is filled in when known (Gemini needs it on functionResponse)."""

    tool_call_id: str
    content: list[Text | Image] = field(default_factory=list)
    is_error: bool = False
    name: str | None = None
    cache_control: dict[str, Any] | None = None


@dataclass(slots=True)
class Thinking:
    """Visible reasoning. `signature` is Anthropic's opaque proof, replayed verbatim."""

    text: str
    signature: str | None = None


@dataclass(slots=True)
class RedactedThinking:
    data: str


Part = Text | Image | Document | ToolCall | ToolResult | Thinking | RedactedThinking


@dataclass(slots=True)
class Message:
    """A turn. `system` turns (text parts only) are instructions given mid-conversation (Claude
    Code sends them for models it does not know); adapters put them where their vendor takes
    system text: in place, or folded into the top-level system prompt."""

    role: Literal["user", "assistant", "system"]
    parts: list[Part]
    # Extra per-message fields the vendor format knows and the IR does not (same-format only).
    name: str | None = None


@dataclass(slots=True)
class Tool:
    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None
    cache_control: dict[str, Any] | None = None


@dataclass(slots=True)
class ToolChoice:
    """auto: model decides; any: must call some tool; tool: must call `name`; none: no tools."""

    type: Literal["auto", "any", "tool", "none"] = "auto"
    name: str | None = None
    disable_parallel: bool = False


@dataclass(slots=True)
class ThinkingConfig:
    """Reasoning knobs. `enabled` None = vendor default. `budget_tokens` and `effort`
    (low|medium|high|max ...) are both carried when known; adapters pick what their vendor takes."""

    enabled: bool | None = None
    budget_tokens: int | None = None
    effort: str | None = None
    adaptive: bool = False
    display: str | None = None


@dataclass(slots=True)
class Request:
    model: str
    messages: list[Message]
    system: list[Text] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    thinking: ThinkingConfig | None = None
    # {"type": "json_object"} or {"type": "json_schema", "name", "schema", "strict"}
    response_format: dict[str, Any] | None = None
    user: str | None = None
    stream: bool = False
    # The client wants the usage chunk at the end of a stream (OpenAI's
    # `stream_options.include_usage`; Anthropic streams always carry usage).
    include_usage: bool = False
    # Vendor-specific fields the IR does not model. Keys are wire names of the *client* format;
    # `extras_format` says which ("anthropic" | "openai"). Adapters of that format pass them on.
    extras: dict[str, Any] = field(default_factory=dict)
    extras_format: str | None = None
    # Headers the client sent that a vendor understands (anthropic-beta, ...), lower-case names.
    passthrough_headers: dict[str, str] = field(default_factory=dict)
    # Tools the vendor runs itself (web search, code execution, MCP servers): up to
    # SERVER_TOOL_PASSES sampling passes, each billed, inside one request
    # (gateway/prompt_bound.py bounds them).
    server_tools: bool = False
    # Server tools that only the fast path sends (OpenAI's `web_search` over its cached index,
    # which a translation leaves out): server_tools there, nothing elsewhere.
    fast_path_server_tools: bool = False
    # Prompt the body only names (Gemini `cachedContent`): the vendor bills it, the body's
    # bytes cannot bound it.
    prompt_outside_body: bool = False
    # (param, what) of features only the client format's own vendor runs (OpenAI's built-in
    # tools for a Responses client): its fast path passes them on, a translation refuses them.
    native_only: list[tuple[str, str]] = field(default_factory=list)
    # The answer reaches the client only whole, at its end (a compaction: one sealed item), so
    # a stream that fails or is left before then delivered nothing, whatever was generated.
    shown_at_end: bool = False
    # What the client format echoes back in its answer (Responses: instructions, tools, …),
    # opaque to every other layer; its renderers take it per request.
    echo: Any = None


def folded_system(req: Request) -> list[Text]:
    """The top-level system texts, then those of the `system` turns in order: for vendors that
    take system text only up front (Anthropic, Gemini)."""
    texts = list(req.system)
    for msg in req.messages:
        if msg.role == "system":
            texts.extend(p for p in msg.parts if isinstance(p, Text))
    return texts


# --------------------------------------------------------------------------------------------
# Stream events (a non-streaming response is the fold of the same events)

BlockKind = Literal["text", "thinking", "redacted_thinking", "tool_call"]
DeltaKind = Literal["text", "thinking", "arguments", "signature"]
StopReason = str  # Anthropic vocabulary, see module docstring


@dataclass(slots=True)
class Start:
    id: str
    model: str


@dataclass(slots=True)
class BlockStart:
    index: int
    kind: BlockKind
    tool_call_id: str | None = None
    name: str | None = None
    # redacted_thinking: the opaque data (arrives whole); tool_call: Gemini thoughtSignature.
    data: str | None = None


@dataclass(slots=True)
class Delta:
    index: int
    kind: DeltaKind
    value: str


@dataclass(slots=True)
class BlockStop:
    index: int


@dataclass(slots=True)
class Usage:
    input: int | None = None
    output: int | None = None
    cache_read: int | None = None
    cache_write: int | None = None
    cache_write_1h: int | None = None  # part of cache_write written with the 1-hour TTL
    reasoning: int | None = None


@dataclass(slots=True)
class Finish:
    stop_reason: StopReason
    stop_sequence: str | None = None


ErrorKind = Literal[
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

RateLimit = Literal["requests", "tokens"]


@dataclass(slots=True)
class Error:
    kind: ErrorKind
    message: str
    http_status: int = 500
    retry_after: float | None = None
    param: str | None = None  # the offending request field, when the vendor names one
    code: str | None = None  # the vendor's machine-readable code (OpenAI `code`)
    # rate_limit: which per-minute limit refused — requests or tokens (OpenAI's 429 `type`).
    limit: RateLimit | None = None


# Error.code of a vendor refusing the gateway's own key or account (an operator problem): the
# client gets a 502 that its SDK must not retry — another attempt meets the same refusal.
UPSTREAM_ACCOUNT_ERROR = "upstream_account_error"

Event = Start | BlockStart | Delta | BlockStop | Usage | Finish | Error


# --------------------------------------------------------------------------------------------
# Fold


@dataclass(slots=True)
class UsageTotals:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0
    reasoning: int = 0

    def apply(self, u: Usage) -> None:
        if u.input is not None:
            self.input = u.input
        if u.output is not None:
            self.output = u.output
        if u.cache_read is not None:
            self.cache_read = u.cache_read
        if u.cache_write is not None:
            self.cache_write = u.cache_write
        if u.cache_write_1h is not None:
            self.cache_write_1h = u.cache_write_1h
        if u.reasoning is not None:
            self.reasoning = u.reasoning

    @property
    def prompt_total(self) -> int:
        return self.input + self.cache_read + self.cache_write


@dataclass(slots=True)
class Response:
    id: str
    model: str
    content: list[Part]
    stop_reason: StopReason | None
    stop_sequence: str | None
    usage: UsageTotals
    error: Error | None = None


def fold(events: list[Event]) -> Response:
    """Fold stream events into one response. Used by every frontend for non-stream output."""
    resp = Response(
        id="", model="", content=[], stop_reason=None, stop_sequence=None, usage=UsageTotals()
    )
    open_blocks: dict[int, Part] = {}
    args: dict[int, list[str]] = {}
    for ev in events:
        if isinstance(ev, Delta):
            part = open_blocks.get(ev.index)
            if part is None:
                continue
            if (ev.kind == "text" and isinstance(part, Text)) or (
                ev.kind == "thinking" and isinstance(part, Thinking)
            ):
                part.text += ev.value
            elif ev.kind == "signature" and isinstance(part, Thinking | ToolCall):
                part.signature = (part.signature or "") + ev.value
            elif ev.kind == "arguments":
                args.setdefault(ev.index, []).append(ev.value)
        elif isinstance(ev, BlockStart):
            part = _new_part(ev)
            open_blocks[ev.index] = part
            resp.content.append(part)
        elif isinstance(ev, BlockStop):
            part = open_blocks.pop(ev.index, None)
            if isinstance(part, ToolCall):
                part.arguments = "".join(args.pop(ev.index, [])) or "{}"
        elif isinstance(ev, Usage):
            resp.usage.apply(ev)
        elif isinstance(ev, Start):
            resp.id, resp.model = ev.id, ev.model
        elif isinstance(ev, Finish):
            resp.stop_reason, resp.stop_sequence = ev.stop_reason, ev.stop_sequence
        elif isinstance(ev, Error):
            resp.error = ev
    for index, part in open_blocks.items():  # a cut-off stream: keep what arrived
        if isinstance(part, ToolCall):
            part.arguments = "".join(args.pop(index, [])) or "{}"
    return resp


def _new_part(ev: BlockStart) -> Part:
    if ev.kind == "text":
        return Text("")
    if ev.kind == "thinking":
        return Thinking("")
    if ev.kind == "redacted_thinking":
        return RedactedThinking(ev.data or "")
    return ToolCall(id=ev.tool_call_id or "", name=ev.name or "", arguments="", signature=ev.data)


def response_events(resp: Response) -> list[Event]:
    """The inverse of `fold`: the event sequence a response corresponds to (used by vendor
    adapters whose non-stream body is easiest to read whole, and by tests)."""
    events: list[Event] = [Start(resp.id, resp.model)]
    for i, part in enumerate(resp.content):
        if isinstance(part, Text):
            events += [BlockStart(i, "text"), Delta(i, "text", part.text), BlockStop(i)]
        elif isinstance(part, Thinking):
            events += [BlockStart(i, "thinking"), Delta(i, "thinking", part.text)]
            if part.signature:
                events.append(Delta(i, "signature", part.signature))
            events.append(BlockStop(i))
        elif isinstance(part, RedactedThinking):
            events += [BlockStart(i, "redacted_thinking", data=part.data), BlockStop(i)]
        elif isinstance(part, ToolCall):
            events += [
                BlockStart(
                    i, "tool_call", tool_call_id=part.id, name=part.name, data=part.signature
                ),
                Delta(i, "arguments", part.arguments),
                BlockStop(i),
            ]
    u = resp.usage
    events.append(
        Usage(
            input=u.input,
            output=u.output,
            cache_read=u.cache_read,
            cache_write=u.cache_write,
            cache_write_1h=u.cache_write_1h,
            reasoning=u.reasoning,
        )
    )
    if resp.stop_reason is not None:
        events.append(Finish(resp.stop_reason, resp.stop_sequence))
    if resp.error is not None:
        events.append(resp.error)
    return events


# ---------------------------------------------------------------- embeddings


@dataclass(slots=True)
class EmbeddingRequest:
    """Texts (or, for OpenAI, token arrays) to embed, as the client asked."""

    model: str
    inputs: list[str | list[int]]
    dimensions: int | None = None
    task_type: str | None = None  # Gemini's taskType (RETRIEVAL_QUERY, ...)
    title: str | None = None  # Gemini: the title of a RETRIEVAL_DOCUMENT


@dataclass(slots=True)
class Embeddings:
    """One vector per input, in order; `input_tokens` None where the vendor reports none."""

    vectors: list[list[float]]
    input_tokens: int | None = None
