"""Incremental Server-Sent Events parsing and encoding (bytes in, events out).

Accepts LF, CR and CRLF line endings (Gemini sends CRLF), skips `:` comment lines (DeepSeek
keep-alives) and joins multi-line `data:` fields with "\n", as the SSE spec says. Works on
arbitrary chunk boundaries: the network cuts wherever it likes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# How a stream's events go to the client: SSE, or one JSON array (Gemini's
# streamGenerateContent without `alt=sse`). Chosen per request, from its route.
Framing = Literal["sse", "json_array"]


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: bytes
    raw: bytes  # the event's bytes as received, separator included (for pass-through)


class SSEParser:
    """Feed bytes, get complete events. `raw` keeps the original framing for pass-through."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf + chunk if self._buf else chunk
        held = b""
        if b"\r" in buf:
            # CRLF / CR framing (Gemini): normalise to LF. A trailing \r may be half of a
            # \r\n split across chunks, so it waits for the next chunk. `raw` is then the
            # normalised bytes — pass-through only ever sees LF-framed vendors.
            if buf[-1:] == b"\r":
                buf, held = buf[:-1], b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            block = buf[start:end]
            if block[:6] == b"data: " and b"\n" not in block:  # the usual event: one data line
                events.append(SSEEvent(None, block[6:], buf[start : end + 2]))
            else:
                ev = _parse_block(block.split(b"\n"), buf[start : end + 2])
                if ev is not None:
                    events.append(ev)
            start = end + 2
        self._buf = buf[start:] + held
        return events

    def flush(self) -> list[SSEEvent]:
        """Events left when the stream ends without a final blank line."""
        rest, self._buf = self._buf, b""
        if not rest.strip():
            return []
        ev = _parse_block(rest.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"), rest)
        return [ev] if ev is not None else []


def _parse_block(lines: list[bytes], raw: bytes) -> SSEEvent | None:
    event: str | None = None
    data: list[bytes] = []
    for line in lines:
        if not line or line[0] == 58:  # ':' comment / keep-alive
            continue
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode()
    if not data and event is None:
        return None
    return SSEEvent(event, b"\n".join(data), raw)


class JsonArrayFrame:
    """A stream's events as one JSON array: `[` chunk, then `,` CRLF chunk ..., then `]` (the
    framing Gemini's API uses). One per response: it knows whether the array is open."""

    __slots__ = ("opened",)

    def __init__(self) -> None:
        self.opened = False

    def item(self, data: bytes) -> bytes:
        if self.opened:
            return b",\r\n" + data
        self.opened = True
        return b"[" + data

    def close(self) -> bytes:
        return b"]" if self.opened else b"[]"


def encode(data: bytes, event: str | None = None) -> bytes:
    """One SSE event. `data` must not contain newlines (compact JSON never does)."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
