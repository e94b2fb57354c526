"""Per-request accounting: what was asked, what answered, how many tokens, how it ended.

Usage comes from the vendor when it reports it; when it does not (client disconnect, upstream
cut, mid-stream failure) the output is estimated from what was actually generated, with an
OpenAI BPE encoding (o200k_base, `tokenizer.py`), and the record says `estimated`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from tokenrelay import ir
from tokenrelay.billing import tokenizer

Status = Literal["ok", "error", "cancelled"]

log = logging.getLogger("tokenrelay.billing.metering")


# Each count's memory is bounded: the tokenizer splits a text into a list of its pieces first
# (~60 B a piece, ~0.8 MB for 50,000 characters of prose; a long run is one piece, estimated).
_SLICE_CHARS = 50_000
# A text longer than this is counted on SAMPLE_CHARS of it, in slices spread evenly over it,
# and the rest at their rate: a real prompt this long counts in ~0.2 s whole, but a hostile
# one (random runs of letters between blanks) at ~3 µs a character, ~100 s for 32 MB.
SAMPLE_ABOVE = 1_000_000
SAMPLE_CHARS = 400_000


def _exact(text: str) -> int:
    """tokenizer.count a slice at a time, each cut at a space so that hardly a token straddles
    a cut."""
    count = tokenizer.count
    if len(text) <= _SLICE_CHARS:
        return count(text)
    total, start = 0, 0
    while start < len(text):
        end = min(start + _SLICE_CHARS, len(text))
        if end < len(text):
            cut = text.rfind(" ", start + _SLICE_CHARS // 2, end)
            end = cut if cut > start else end
        total += count(text[start:end])
        start = end
    return total


def _sampled(text: str) -> int:
    """SAMPLE_CHARS of `text` counted, in slices spread evenly over it, scaled to its length."""
    slices = SAMPLE_CHARS // _SLICE_CHARS
    stride = len(text) // slices
    counted = [text[i * stride : i * stride + _SLICE_CHARS] for i in range(slices)]
    tokens = sum(map(_exact, counted))
    return -(-tokens * len(text) // sum(map(len, counted)))


def count_tokens(text: str) -> int:
    """o200k_base tokens in `text`, as tiktoken counts them (lone surrogates replaced); over
    SAMPLE_ABOVE characters, estimated from a sample. Where the tokenizer refuses (text holding
    a special token's text, `<|endoftext|>`) or fails, the UTF-8 byte count stands in: never
    below the token count (a token covers at least one byte), never zero."""
    if not text:
        return 0
    try:
        return _exact(text) if len(text) <= SAMPLE_ABOVE else _sampled(text)
    except Exception as exc:  # what is billed on this count must still be billed
        log.warning("token count fell back to bytes (%s)", type(exc).__name__)
        return len(text.encode("utf-8", "surrogatepass"))


# Above this many characters a count runs in a worker thread: prose and code count at ~0.1-0.2 µs
# a character (~3 ms for 16,000), a run of letters without spaces at up to ~6. The count holds
# the GIL there too, but hands it to the event loop every switch interval (5 ms), so a hostile
# prompt of a few megabytes slows the loop's turns instead of stopping it for seconds.
OFF_LOOP_CHARS = 16_000


async def counted(count: Callable[[], int], chars: int) -> int:
    """`count()` inline when it reads fewer than OFF_LOOP_CHARS characters, else in a thread."""
    if chars < OFF_LOOP_CHARS:
        return count()
    return await asyncio.to_thread(count)


def prompt_texts(req: ir.Request) -> tuple[list[str], int]:
    """Every text the model will read, and how many images it will see."""
    pieces: list[str] = [t.text for t in req.system]
    for tool in req.tools:
        pieces.append(tool.name)
        pieces.append(tool.description or "")
        pieces.append(str(tool.parameters))
    images = 0
    for msg in req.messages:
        for part in msg.parts:
            if isinstance(part, ir.Text | ir.Thinking):
                pieces.append(part.text)
            elif isinstance(part, ir.ToolCall):
                pieces.append(part.name + part.arguments)
            elif isinstance(part, ir.ToolResult):
                pieces.extend(c.text for c in part.content if isinstance(c, ir.Text))
            elif isinstance(part, ir.Image):
                images += 1
    return pieces, images


def framing_tokens(req: ir.Request, images: int) -> int:
    """What a prompt costs beyond its texts: ~4 tokens of role framing a message, ~1.5k an
    image."""
    return 4 * len(req.messages) + 1500 * images


def estimate_request_tokens(req: ir.Request) -> int:
    """A local prompt-size estimate with a real BPE (off the hot path: used for count_tokens and
    when a vendor reported no usage)."""
    pieces, images = prompt_texts(req)
    return count_tokens("\n".join(pieces)) + framing_tokens(req, images)


async def estimate_request_tokens_counted(req: ir.Request) -> int:
    """estimate_request_tokens, in a worker thread when the prompt is long (`counted`)."""
    pieces, images = prompt_texts(req)
    text = "\n".join(pieces)
    return await counted(lambda: count_tokens(text), len(text)) + framing_tokens(req, images)


# Headers a client names its session with (lower-case), first found wins.
SESSION_HEADERS = ("x-claude-code-session-id", "session-id")  # Claude Code; Codex


def session_id(headers: dict[str, str]) -> str | None:
    """The client's session id, cut to the column's 100 characters (None when not sent)."""
    for name in SESSION_HEADERS:
        value = headers.get(name)
        if value:
            return value[:100]
    return None


@dataclass(slots=True)
class RequestContext:
    request_id: str
    client_format: str
    key_id: str | None = None
    model_asked: str = ""
    model_id: str = ""
    vendor: str = ""
    stream: bool = False
    fast_path: bool = False
    started_at: float = field(default_factory=time.time)
    _t0: float = field(default_factory=time.perf_counter)
    first_byte_ms: float | None = None
    duration_ms: float | None = None
    usage: ir.UsageTotals = field(default_factory=ir.UsageTotals)
    vendor_reported_output: bool = False
    vendor_reported_input: bool = False
    input_bound: int = 0  # generous prompt-size bound, for the credit hold
    # The request as decided; a stream under way lets it go (`let_go`) and keeps a way to read
    # it again, for the rare estimate of a prompt the vendor never counted.
    request: ir.Request | None = None
    reread: Callable[[], ir.Request] | None = None
    reread_chars: int = 0  # what reading it again parses (`counted`: in a thread when long)
    shown_at_end: bool = False  # the request's: nothing is delivered before its end (policy)
    output_text: list[str] = field(default_factory=list)
    attempts: int = 0  # vendor calls made, over every deployment and fallback model
    deployment: str = ""  # the deployment that answered
    fallback_from: str = ""  # the model asked when a fallback model answered
    upstream_answered: bool = False  # a vendor attempt returned 200: its tokens are billable
    upstream_request_id: str = ""  # the answering vendor's id for the call (receipts)
    http_status: int | None = None  # what the client was answered (the access log's)
    cost_nano: int | None = None
    record: Any = None  # the UsageRecord settled (a receipt is signed from it)
    receipt: str | None = None  # signed when first asked for
    wants_receipt: bool = False  # the request sent `x-tokenrelay-receipt: 1`
    multiplier_ppm: int = 1_000_000  # the price group's, as settled (the receipt says it)
    status: Status = "ok"
    error: str | None = None
    usage_source: Literal["vendor", "estimated"] = "vendor"
    session_id: str | None = None  # the client's session header (X-Claude-Code-Session-Id)
    stop_reason: str | None = None  # the vendor's, when the translated path saw it
    estimating: bool = False  # `finish` left counts to make: `estimate`, before settling

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self._t0) * 1000

    def mark_first_byte(self) -> None:
        if self.first_byte_ms is None:
            self.first_byte_ms = (time.perf_counter() - self._t0) * 1000

    def apply_usage(self, u: ir.Usage) -> None:
        self.usage.apply(u)
        if u.output is not None:
            self.vendor_reported_output = True
        if u.input is not None:  # nothing to estimate the prompt from: let it go
            self.vendor_reported_input = True
            self.request = self.reread = None

    def note_output(self, text: str) -> None:
        self.output_text.append(text)

    def let_go(self, reread: Callable[[], ir.Request], chars: int) -> None:
        """Keep no request for a stream's life, only `reread`, which parses it again (`chars`
        long) when its prompt must be estimated."""
        self.request, self.reread, self.reread_chars = None, reread, chars

    def finish(self, status: Status, error: str | None = None, complete: bool = True) -> None:
        """Close the record. `complete` is False when the vendor's final usage never came:
        what was generated is then estimated (`estimate`, which settlement awaits)."""
        self.duration_ms = (time.perf_counter() - self._t0) * 1000
        self.status = status
        self.error = error
        # Nothing to estimate with the vendor's count, or nothing billable at all.
        self.estimating = self.upstream_answered and not (complete and self.vendor_reported_output)

    async def estimate(self) -> None:
        """The counts `finish` left: bill what was generated, the vendor's own count if it is
        at least what we saw, otherwise our estimate of the delivered text (never less than
        what reached the client), and the prompt's when the vendor never said it. Counted in
        a worker thread when long (`counted`): a client that sends a huge prompt and hangs up
        must not hold the event loop. Applied at once after the counts, so a cancelled
        estimate leaves the record as it was, to be estimated again."""
        if not self.estimating:
            return
        text = "".join(self.output_text)
        output = await counted(lambda: count_tokens(text), len(text))
        prompt = None if self.vendor_reported_input else await self._prompt_tokens()
        if prompt is not None:
            self.usage.input = prompt
            self.usage_source = "estimated"
        if output > self.usage.output or not self.vendor_reported_output:
            self.usage.output = max(output, self.usage.output)
            self.usage_source = "estimated"
        self.estimating = False

    async def _prompt_tokens(self) -> int:
        if self.request is not None:
            return await estimate_request_tokens_counted(self.request)
        reread = self.reread
        if reread is None:
            return 0
        return await counted(lambda: estimate_request_tokens(reread()), self.reread_chars)
