"""What the relay's one driver needs from a path to carry one response to the client.

Two implementations: the translated path (vendor wire → IR events → the client's format,
translated.py) and the fast path (the vendor's own bytes, usage read on the side,
fastpath.py). The driver (relay.py) owns everything else, once for both: retries, the stream
skeleton (disconnect watch, cancellation, drain), the settle-before-the-end rule, errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from tokenrelay import ir
from tokenrelay.asgi import JSON_ARRAY_STREAM_HEADERS, SSE_HEADERS
from tokenrelay.billing.metering import RequestContext
from tokenrelay.errors import GatewayError
from tokenrelay.gateway.codec import Frontend
from tokenrelay.reasoning.cache import ReasoningCache
from tokenrelay.sse import Framing
from tokenrelay.vendors.base import UpstreamRequest, Vendor


class Exchange(Protocol):
    # A whole (non-streamed) answer. `body_carries_cost`: whether unary_body merges the cost
    # into the body's usage; when not (the fast path, the vendor's body as it came) the caller
    # need not render it (~4 µs a request at c=1): the cost goes in a header either way.
    body_carries_cost: bool

    def read_unary(self, data: bytes) -> None:
        """Take the vendor's 200 body: meter it; raise GatewayError if it carries an error."""
        ...

    def unary_body(self, extra_usage: Mapping[str, Any]) -> bytes:
        """The client's body, with the settled cost merged into its usage."""
        ...

    # A stream.
    failure: ir.Error | None  # the vendor failed mid-stream (error event, malformed data)
    # Its response headers: SSE, or a stream framed as one JSON array (the route's `framing`).
    stream_headers: list[tuple[bytes, bytes]]

    @property
    def done(self) -> bool:
        """The vendor's stream completed."""
        ...

    @property
    def error_forwarded(self) -> bool:
        """The vendor's own error event already reached the client."""
        ...

    # The gateway ended the answer itself (a stop sequence it enforces): stop reading the vendor,
    # whose final usage will not come.
    cut: bool

    async def prepare(self, req: ir.Request) -> None:
        """Before `start`, work that may be long, off the event loop (the opening count)."""
        ...

    def start(self, call: UpstreamRequest, req: ir.Request) -> None:
        """The stream begins: what it needs of `req` is taken now (it is not kept)."""
        ...

    def feed(self, chunk: bytes) -> bytes:
        """Vendor bytes in, client bytes out (b"" while nothing is complete)."""
        ...

    def close(self) -> bytes:
        """The vendor's body ended: what is still pending."""
        ...

    def incomplete(self) -> None:
        """The stream will not complete: note what was generated, for the estimate."""
        ...

    def completed(self) -> None:
        """The stream completed: keep the reasoning state its tool calls will need."""
        ...

    def error(self, err: GatewayError) -> bytes:
        """The client format's error event (nothing follows it)."""
        ...

    def tail(self, extra_usage: Mapping[str, Any]) -> bytes:
        """The end of a complete stream, with the settled cost in its final usage."""
        ...


class ExchangeBase:
    """What both paths start from: who asked, who answers, and the request's accounting; of
    the request itself, only what the answer's rendering reads (a stream does not keep it)."""

    def __init__(
        self,
        frontend: Frontend,
        vendor: Vendor,
        ctx: RequestContext,
        req: ir.Request,
        reasoning: ReasoningCache,
        framing: Framing = "sse",
    ) -> None:
        self._frontend, self._vendor, self._ctx = frontend, vendor, ctx
        self._echo, self._include_usage = req.echo, req.include_usage
        self._reasoning = reasoning
        self._framing: Framing = framing
        self.stream_headers = SSE_HEADERS if framing == "sse" else JSON_ARRAY_STREAM_HEADERS
        self.failure: ir.Error | None = None

    async def prepare(self, req: ir.Request) -> None:
        return None
