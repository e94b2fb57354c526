"""What every client-facing API codec offers the relay.

A frontend parses its API's request body into the IR (validating once, with errors that name
the field) and renders IR events back as that API's SSE stream or JSON body. It never knows
which vendor answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from tokenrelay import ir
from tokenrelay.errors import GatewayError
from tokenrelay.sse import Framing

# Fields merged into a response's usage object (cost_usd, …).
ExtraUsage = Mapping[str, Any]


class StreamRenderer(Protocol):
    # The format reports the prompt's size when the stream opens (Anthropic's message_start):
    # the gateway renders its estimate as a Usage event first when the vendor says it late.
    usage_at_start: bool

    def render(self, ev: ir.Event) -> bytes:
        """SSE bytes for one IR event (b"" when the event produces nothing yet).

        Usage events are remembered, not rendered; `Error` is rendered via `error`."""
        ...

    def end(self, usage: ir.UsageTotals, extra_usage: Mapping[str, Any]) -> bytes:
        """The successful end of the stream: final usage (with `extra_usage` fields such as
        cost_usd merged into the usage object) and the terminator."""
        ...

    def error(self, err: GatewayError) -> bytes:
        """A mid-stream failure in this API's error-event shape. Nothing follows it (no fake
        message_stop / [DONE])."""
        ...


class Frontend(Protocol):
    name: str  # anthropic | openai

    def parse_request(self, body: Any, headers: Mapping[str, str]) -> ir.Request:
        """Validate and convert; raise GatewayError(invalid_request, 400, param=...)."""
        ...

    def stream_renderer(
        self, *, request_id: str, include_usage: bool, echo: Any = None, framing: Framing = "sse"
    ) -> StreamRenderer:
        """A renderer for one request (`echo`: its `ir.Request.echo`; `framing`: its route's,
        which only Gemini's routes set to anything but SSE)."""
        ...

    def render_response(
        self, resp: ir.Response, *, request_id: str, extra_usage: ExtraUsage, echo: Any = None
    ) -> dict[str, Any]: ...

    def render_error(self, err: GatewayError) -> tuple[int, dict[str, Any]]:
        """HTTP status and JSON body for an error before any byte of the answer was sent."""
        ...
