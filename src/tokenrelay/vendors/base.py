"""What every vendor adapter offers the relay: IR request → HTTP call, HTTP answer → IR events.

An adapter never knows which client format asked; it speaks its vendor's wire format only.
Adapters are stateless singletons; per-stream state lives in the `StreamDecoder` they create.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from tokenrelay import ir


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

    def parse_response(self, body: bytes) -> list[ir.Event]:
        """A non-streaming 200 body → the event sequence it is the fold of."""
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
