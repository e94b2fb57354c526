"""What every vendor adapter offers the relay: IR request → HTTP call, HTTP answer → IR events.

An adapter never knows which client format asked; it speaks its vendor's wire format only.
Adapters are stateless singletons; per-stream state lives in the `StreamDecoder` they create.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, runtime_checkable

import orjson

from tokenrelay import ir
from tokenrelay.reasoning.cache import ReasoningCache
from tokenrelay.sse import JsonArrayFrame, SSEEvent, encode


@dataclass(slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    # Metadata the decoder may need (e.g. Gemini: the response id prefix for synthesised ids).
    meta: dict[str, str] = field(default_factory=dict)
    # What the vendor may write, as sent: the output cap per choice (None: the model's own
    # limit) and how many choices it generates. The credit hold prices exactly this.
    max_output: int | None = None
    choices: int = 1


class StreamDecoder(Protocol):
    def feed(self, chunk: bytes) -> list[ir.Event]:
        """Bytes as they arrive from the network (any boundaries) → complete IR events.

        A vendor error event mid-stream becomes an `ir.Error` (and nothing after it)."""
        ...

    def close(self) -> list[ir.Event]:
        """The upstream body ended: flush what is pending (never invent a Finish)."""
        ...


class Vendor(Protocol):
    name: str  # anthropic | openai | gemini | xai | deepseek
    # The response header carrying the vendor's id for a call ("": it sends none), quoted on
    # receipts so a customer can match a charge against the vendor's own records.
    request_id_header: str
    # The most prompt tokens one image can cost on this vendor, whatever its size.
    max_image_tokens: int
    # False where a media URL may be any media (Gemini fileUri: video, audio, PDFs), which only
    # the context window bounds.
    url_media_bounded: bool

    def build_request(
        self, req: ir.Request, upstream_model: str, *, api_key: str, base_url: str
    ) -> UpstreamRequest:
        """The HTTP call for `req` (streaming iff req.stream). Always asks for usage in streams."""
        ...

    def parse_response(self, body: bytes, *, content: bool = True) -> list[ir.Event]:
        """A non-streaming 200 body → the event sequence it is the fold of. `content=False`
        (the fast path, which passes the body on as it came) may leave out the answer's
        blocks: only usage, finish and errors are read then."""
        ...

    def stream_decoder(self, upstream: UpstreamRequest) -> StreamDecoder: ...

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> ir.Error:
        """A non-200 answer → IR error with the status the *client* should see.

        The vendor rejecting the gateway's own key (401/403, Gemini API_KEY_INVALID, DeepSeek
        402) is not the client's fault: kind api_error, status 502. Overloaded stays
        `overloaded` (the frontend picks 529 or 503)."""
        ...

    def build_count_tokens(
        self, req: ir.Request, upstream_model: str, *, api_key: str, base_url: str
    ) -> UpstreamRequest | None:
        """The vendor's own token-counting call, or None where the vendor has none."""
        ...

    def parse_count_tokens(self, body: bytes) -> int: ...

    # The fast path: a client that speaks this vendor's own format.
    native_format: str  # the vendor's own client format: anthropic | openai | gemini
    # DeepSeek needs its reasoning replayed on tool turns that OpenAI clients drop: the fast path
    # decodes what went by to remember it.
    remembers_reasoning: bool

    def enforces_stop(self, model: str) -> bool:
        """Whether `model` takes stop sequences. Where it refuses them (xAI reasoning models),
        the gateway sends the call without and cuts the answer at them itself."""
        ...

    def finalize(self, req: ir.Request, default_max_tokens: int) -> None:
        """Decide what the vendor will be asked before the hold prices it: defaults the vendor
        needs (Anthropic: max_tokens) and raises it applies (a thinking budget's floor)."""
        ...

    def passthrough(self, client_format: str) -> Vendor | None:
        """The adapter that passes `client_format` bodies through to this vendor (itself for
        its native format; OpenAI's Responses side for Responses clients), or None: translate."""
        ...

    def passthrough_request(
        self, body: dict[str, Any], req: ir.Request, via: Passthrough
    ) -> UpstreamRequest:
        """The client's own body, sent on: `req.model` as the model, and what billing needs
        (usage in streams) or the vendor requires (replayed reasoning) added."""
        ...

    def passthrough_scan(
        self, on_usage: UsageSink, *, client_usage: bool, choices: int = 1
    ) -> PassthroughScan:
        """A scan for one same-format stream; `client_usage`: the client asked for the usage
        chunk (OpenAI `stream_options.include_usage`) that billing always asks for; `choices`:
        how many answers the call generates (`UpstreamRequest.choices`)."""
        ...


UsageSink = Callable[[ir.Usage], None]


@runtime_checkable
class Embedder(Protocol):
    """A vendor that serves embedding models (OpenAI's wire and its compatibles, Gemini's)."""

    # OpenAI's wire takes token arrays as input; Gemini's only text.
    embeds_token_arrays: bool

    def build_embeddings(
        self, req: ir.EmbeddingRequest, upstream_model: str, *, api_key: str, base_url: str
    ) -> UpstreamRequest:
        """The vendor call for `req` (always asking for float vectors)."""
        ...

    def parse_embeddings(self, body: bytes) -> ir.Embeddings: ...


@dataclass(frozen=True, slots=True)
class Passthrough:
    """Where a same-format body goes, and what the adapter may need to send it."""

    client_headers: Mapping[str, str]
    api_key: str
    base_url: str
    reasoning: ReasoningCache


class Seen(Enum):
    """What a scan's `seen` hook makes of one event (most are PLAIN: passed on, not parsed)."""

    PLAIN = 0  # vendor bytes, passed on
    USAGE = 1  # carries usage that is not the final count (Anthropic's message_start): passed on
    FINAL = 2  # carries the final usage: held back, the cost goes into it
    FINAL_HIDDEN = 3  # the final usage on a chunk the client did not ask for: read, dropped
    FINAL_END = 4  # the final usage, and the answer's end (Responses, Gemini)
    END = 5  # the stream's terminator ([DONE], message_stop): held back
    ERROR = 6  # the vendor's own error event: passed on, the stream failed


_HELD = (Seen.FINAL, Seen.FINAL_END)


class Delivered:
    """The vendor's bytes that reached the client, read only at a stream's end: for the
    estimate of one that did not finish, and by a vendor that remembers reasoning. Every 4 KiB
    are deflated together: kept as they came, a 64-chunk stream held ~13 KB of near-identical
    JSON to its end, and a long answer hundreds of KB; packed, 4 KiB at most plus ~1/10 of the
    rest (OpenAI chunks: 4,160 B -> 258, 415 with their random `obfuscation` field), for ~0.4 µs
    of CPU a chunk past the first 4 KiB."""

    __slots__ = ("_packed", "_pending")

    def __init__(self) -> None:
        # One buffer, not a list of the vendor's chunks: each chunk kept was its own object
        # (~50 B of header, list slot and rounding a chunk; ~0.6 KB a live stream at 1,000).
        self._pending = bytearray()
        self._packed: list[bytes] = []

    def add(self, raw: bytes) -> None:
        pending = self._pending
        pending += raw
        if len(pending) >= _PACK_AT:
            # A small window and hash table: zlib's defaults (32 KiB, memLevel 8) cost 2-3x the
            # CPU to set up per batch for no better ratio on 4 KiB of input.
            packer = zlib.compressobj(1, zlib.DEFLATED, -12, 4)
            self._packed.append(packer.compress(pending) + packer.flush())
            self._pending = bytearray()

    def joined(self) -> bytes:
        return b"".join([*(zlib.decompress(p, -12) for p in self._packed), self._pending])


_PACK_AT = 4096


class PassthroughScan:
    """Watches a same-format stream go by on the fast path: the vendor's bytes go to the client
    unchanged while usage, completion and errors are read from the few events that carry them.

    From the event that carries the final usage on, events are held back in `tail`: they go out
    (with the cost added) only after the settlement has committed. Each wire format (a subclass
    in its adapter) fills two hooks: `seen` — which event is which, by a cheap bytes search, so
    the per-chunk cost stays a few µs — and `add_cost` — where the cost goes in the final one."""

    def __init__(self, decode: Callable[[bytes], list[ir.Event]], on_usage: UsageSink) -> None:
        self._decode = decode
        self._on_usage = on_usage
        self.done = False
        self.failed: str | None = None
        self.error_forwarded = False
        self.delivered = Delivered()  # what reached the client: estimates, reasoning memory
        self.tail: list[SSEEvent] = []
        self._final: SSEEvent | None = None  # the held event that gets the cost
        # Set when the client asked for one JSON array (Gemini without alt=sse): each event's
        # data goes out as an item of it, closed after the last; None: the vendor's SSE as is.
        self.array: JsonArrayFrame | None = None

    def seen(self, ev: SSEEvent) -> Seen:
        raise NotImplementedError

    def add_cost(self, ev: SSEEvent, extra_usage: Mapping[str, Any]) -> bytes:
        """The final event with the settled cost merged into its usage, re-encoded."""
        raise NotImplementedError

    def failure(self, data: bytes) -> str:
        return error_message(data)

    def process(self, events: list[SSEEvent]) -> bytes:
        if len(events) == 1 and not self.tail:  # the usual read: one event, nothing held
            ev = events[0]
            kind = self.seen(ev)
            if kind is Seen.PLAIN:
                self.delivered.add(ev.raw)
                return ev.raw if self.array is None else self.array.item(ev.data)
            return self._special(ev, kind)
        out = []
        for ev in events:
            kind = self.seen(ev)
            if kind is Seen.PLAIN and not self.tail:
                self.delivered.add(ev.raw)
                out.append(self.wire(ev))
            else:
                out.append(self._special(ev, kind))
        return b"".join(out)

    def _special(self, ev: SSEEvent, kind: Seen) -> bytes:
        if kind is Seen.ERROR:
            self.failed = self.failure(ev.data)
            self.error_forwarded = True
            held, self.tail = self.tail, []  # the end will not come: what was held goes too
            return b"".join(self.wire(e) for e in [*held, ev]) + self.close_array()
        if kind is Seen.END:
            self.done = True
            self.tail.append(ev)
            return b""
        if self.tail:  # after the final usage: held with it
            self.tail.append(ev)
            return b""
        self.delivered.add(ev.raw)
        if kind is Seen.PLAIN:
            return self.wire(ev)
        self.apply_usage_from(ev.raw)
        if kind is Seen.USAGE:
            return self.wire(ev)
        if kind in _HELD:
            self._final = ev
            self.tail.append(ev)
        self.done |= kind is Seen.FINAL_END
        return b""

    def render_tail(self, extra_usage: Mapping[str, Any]) -> bytes:
        held = b"".join(
            self.add_cost(ev, extra_usage) if ev is self._final and extra_usage else self.wire(ev)
            for ev in self.tail
        )
        return held + self.close_array()

    def wire(self, ev: SSEEvent) -> bytes:
        """`ev` as the client gets it: the vendor's event, or its data as an array item."""
        return ev.raw if self.array is None else self.array.item(ev.data)

    def wire_data(self, data: bytes) -> bytes:
        """An event the scan re-encoded (`add_cost`), framed like the rest."""
        return encode(data) if self.array is None else self.array.item(data)

    def close_array(self) -> bytes:
        return b"" if self.array is None else self.array.close()

    def apply_usage_from(self, raw: bytes) -> None:
        for ev in self._decode(raw):
            if isinstance(ev, ir.Usage):
                self._on_usage(ev)

    def generated(self) -> list[ir.Event]:
        """The IR events of everything that went by (decoded only when asked)."""
        return self._decode(self.delivered.joined())


# What a vendor's HTTP status means for the client, when the body names nothing more precise.
# An overload keeps its own status (503 or 529): clients' retry logic and dashboards tell them
# apart, and the Anthropic frontend renders both.
_STATUS_ERRORS: dict[int, tuple[ir.ErrorKind, int]] = {
    400: ("invalid_request", 400),
    404: ("not_found", 404),
    408: ("timeout", 504),
    413: ("request_too_large", 413),
    429: ("rate_limit", 429),
    500: ("api_error", 500),
    503: ("overloaded", 503),
    504: ("timeout", 504),
    529: ("overloaded", 529),
}


def status_error(status: int) -> tuple[ir.ErrorKind, int]:
    """(error kind, client status) for a vendor's HTTP status: the rare other 4xx (409, 422,
    ...) mean the request as sent was not acceptable; any other status is a bad gateway."""
    if status in _STATUS_ERRORS:
        return _STATUS_ERRORS[status]
    return ("invalid_request", 400) if 400 <= status < 500 else ("api_error", 502)


def rate_limit_named(*texts: str | None) -> ir.RateLimit | None:
    """Which per-minute limit a vendor's 429 wording names (OpenAI "tokens per min (TPM)",
    Anthropic "request tokens ... per-minute", Gemini quota ids "...InputTokensPer..."), if any."""
    text = " ".join(t for t in texts if t).lower()
    if "token" in text or "tpm" in text:
        return "tokens"
    if "request" in text or "rpm" in text:
        return "requests"
    return None


def error_message(data: bytes) -> str:
    """The message of a vendor's `{"error": ...}` event, for the usage record."""
    try:
        err = orjson.loads(data).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return "upstream error"
    if isinstance(err, dict):
        return str(err.get("message") or err.get("type") or "upstream error")
    return str(err or "upstream error")


# ---------------------------------------------------------------- vendor batch APIs
# A vendor's batch API, sans I/O: the wire builds each call and reads each answer; the caller
# (tokenrelay.batches) sends them through `BatchSend` and keeps the state in its database.

BatchSend = Callable[[UpstreamRequest], Awaitable[tuple[int, bytes]]]


class BatchError(Exception):
    """The vendor's batch API refused or failed a call (its status and body, for the log)."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"vendor batch call answered {status}: {body[:300]!r}")
        self.status = status


@dataclass(slots=True)
class BatchItem:
    """One line going into a vendor batch: the call the vendor's standard API would get."""

    custom_id: str
    call: UpstreamRequest


@dataclass(slots=True)
class BatchPoll:
    ended: bool
    # What the results call reads (OpenAI: the output and error file ids; Gemini: the answers
    # came inline with the poll).
    handle: dict[str, Any] = field(default_factory=dict)
    # How a line the results do not name ended (the vendor stopped before running it).
    unanswered: str = "expired"


@dataclass(slots=True)
class BatchOutcome:
    """A line's end at the vendor: `succeeded` (status 200, the standard API's body),
    `errored` (the vendor's error status and body), `cancelled` or `expired` (no body)."""

    custom_id: str
    state: str
    status: int = 200
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class BatchLink:
    """A vendor's batch API as one deployment reaches it: how a call is sent, the key, the URL."""

    send: BatchSend
    api_key: str
    base_url: str

    async def call(
        self, method: str, url: str, headers: dict[str, str], body: bytes = b""
    ) -> bytes:
        """The call's 2xx body (BatchError otherwise)."""
        status, answer = await self.send(UpstreamRequest(method, url, headers, body))
        if not 200 <= status < 300:
            raise BatchError(status, answer)
        return answer


class BatchWire(Protocol):
    def group(self, call: UpstreamRequest) -> str:
        """Lines whose calls share a group go in one vendor batch (OpenAI: one endpoint per
        batch; Gemini: one model per batch)."""
        ...

    async def submit(self, link: BatchLink, group: str, items: list[BatchItem]) -> str:
        """Create the vendor batch; its id."""
        ...

    async def poll(self, link: BatchLink, batch_id: str) -> BatchPoll: ...

    async def results(self, link: BatchLink, batch_id: str, poll: BatchPoll) -> list[BatchOutcome]:
        """Every line's end, once `poll.ended`."""
        ...

    async def cancel(self, link: BatchLink, batch_id: str) -> None:
        """Ask the vendor to stop: lines it finished stay finished (and billed)."""
        ...


def unstreamed(call: UpstreamRequest) -> dict[str, Any]:
    """The body of `call` as a batch line: a line of a vendor batch may not stream."""
    body: dict[str, Any] = orjson.loads(call.body)
    body.pop("stream", None)
    body.pop("stream_options", None)
    return body
