"""The prompt size a stream reports before the vendor has said it.

An Anthropic-format stream opens with `message_start.usage.input_tokens`, which Claude Code reads
for its context meter; vendors of other formats report their prompt count only at the end (or
not at all), so the gateway states its own estimate up front and the final `message_delta`
carries the vendor's count. A vendor that reports the count at the start (Gemini) overrides it.

The estimate is the one billing uses for an unreported prompt (the same BPE, texts and framing),
counted a piece at a time with the counts of recent pieces remembered: a coding session resends
its system prompt, tools and earlier turns on every request, so only the new turn is counted
(an 85 kB prompt costs ~14 ms to count whole, a few µs when seen before).
"""

from __future__ import annotations

from tokenrelay import ir
from tokenrelay.billing.metering import (
    SAMPLE_ABOVE,
    count_tokens,
    counted,
    estimate_request_tokens_counted,
    framing_tokens,
    prompt_texts,
)

_MAX_REMEMBERED = 4096
# (length, hash) of a piece → its count. Not the text itself: a cache of prompts would hold
# megabytes; a collision only skews an estimate the final usage corrects anyway.
_counts: dict[tuple[int, int], int] = {}


def _key(text: str) -> tuple[int, int] | None:
    """A piece's key in `_counts`; None for a short one: counting costs less than remembering."""
    return None if len(text) < 256 else (len(text), hash(text))


def _tokens(text: str) -> int:
    key = _key(text)
    if key is None:
        return count_tokens(text)
    n = _counts.get(key)
    if n is None:
        if len(_counts) >= _MAX_REMEMBERED:
            _counts.clear()
        n = _counts[key] = count_tokens(text)
    return n


def opening_input_tokens(req: ir.Request) -> int:
    pieces, images = prompt_texts(req)
    return sum(_tokens(p) for p in pieces) + framing_tokens(req, images)


async def count_opening(req: ir.Request) -> int:
    """opening_input_tokens, in a worker thread when what is not remembered is long (short
    pieces are never remembered: many of them are as long to count as one long one)."""
    pieces, images = prompt_texts(req)
    fresh = sum(len(p) for p in pieces if _key(p) not in _counts)
    if fresh > SAMPLE_ABOVE:  # counted as one text, so that its sampling bounds the work
        return await estimate_request_tokens_counted(req)
    tokens = await counted(lambda: sum(_tokens(p) for p in pieces), fresh)
    return tokens + framing_tokens(req, images)
