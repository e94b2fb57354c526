"""The translated path: the vendor's wire → IR events (its adapter) → the client's format (its
frontend). Neither side knows the other; the IR is all they share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from tokenrelay import ir
from tokenrelay.errors import GatewayError
from tokenrelay.gateway.codec import StreamRenderer
from tokenrelay.gateway.exchange import ExchangeBase
from tokenrelay.gateway.opening_usage import count_opening, opening_input_tokens
from tokenrelay.gateway.stop_sequences import StopFilter
from tokenrelay.reasoning.cache import remember
from tokenrelay.vendors.base import StreamDecoder, UpstreamRequest

# The deltas reasoning state is made of (reasoning.cache.remember keeps the thinking and the
# signatures of a turn with tool calls): text and tool arguments, most of a stream's deltas,
# are not kept for the stream's life.
_REMEMBERED = ("thinking", "signature")


class TranslatedExchange(ExchangeBase):
    done = False
    cut = False
    body_carries_cost = True
    error_forwarded = False  # the vendor's error events are ours to render
    _folded: ir.Response | None = None
    _decoder: StreamDecoder | None = None
    _renderer: StreamRenderer | None = None
    _opening: int | None = None  # the prompt's count for the opening event, when prepared
    # Stop sequences the gateway enforces for a model that refuses them (None: no filter, the
    # usual case, which costs nothing).
    _stops: StopFilter | None = None

    def enforce_stop(self, stops: list[str]) -> None:
        self._stops = StopFilter(stops)

    # ------------------------------------------------------------------------------ unary

    def read_unary(self, data: bytes) -> None:
        events = self._vendor.parse_response(data)
        # The vendor's usage stands: it generated (and bills) the whole answer before the cut.
        cut = events if self._stops is None else self._stops.process(events)
        folded = ir.fold(cut)
        for part in folded.content:
            if isinstance(part, ir.Text | ir.Thinking):
                self._ctx.note_output(part.text)
            elif isinstance(part, ir.ToolCall):
                self._ctx.note_output(part.arguments)
        for ev in events:
            if isinstance(ev, ir.Usage):
                self._ctx.apply_usage(ev)
        if cut is not events:  # the cut dropped the vendor's usage events: the record has them
            folded.usage = self._ctx.usage
        if folded.error is not None:
            raise GatewayError.from_ir(folded.error)
        remember(self._reasoning, self._vendor.name, folded)
        self._ctx.stop_reason = folded.stop_reason
        self._folded = folded

    def unary_body(self, extra_usage: Mapping[str, Any]) -> bytes:
        assert self._folded is not None
        rendered = self._frontend.render_response(
            self._folded,
            request_id=self._ctx.request_id,
            extra_usage=extra_usage,
            echo=self._echo,
        )
        return orjson.dumps(rendered)

    # ------------------------------------------------------------------------------ stream

    async def prepare(self, req: ir.Request) -> None:
        renderer = self._new_renderer()
        if renderer.usage_at_start:  # a long prompt is counted off the event loop
            self._opening = await count_opening(req)

    def start(self, call: UpstreamRequest, req: ir.Request) -> None:
        self._collected: list[ir.Event] = []  # what reasoning state is made of (no text)
        self._decoder = self._vendor.stream_decoder(call)
        renderer = self._renderer or self._new_renderer()
        if renderer.usage_at_start:  # the vendor's own count, when it comes, replaces it
            opening = self._opening
            renderer.render(
                ir.Usage(input=opening_input_tokens(req) if opening is None else opening)
            )

    def _new_renderer(self) -> StreamRenderer:
        self._renderer = self._frontend.stream_renderer(
            request_id=self._ctx.request_id,
            include_usage=self._include_usage,
            echo=self._echo,
            framing=self._framing,
        )
        return self._renderer

    def feed(self, chunk: bytes) -> bytes:
        assert self._decoder is not None
        return self._handle(self._decoder.feed(chunk))

    def close(self) -> bytes:
        assert self._decoder is not None
        return self._handle(self._decoder.close())

    def _handle(self, events: list[ir.Event]) -> bytes:
        assert self._renderer is not None
        if self._stops is not None:
            events = self._stops.process(events)
            self.cut = self._stops.hit is not None
        out = bytearray()
        ctx = self._ctx
        for ev in events:
            if isinstance(ev, ir.Error):
                self.failure = ev
                break
            if isinstance(ev, ir.Delta):
                if ev.kind != "signature":
                    ctx.note_output(ev.value)
                if ev.kind in _REMEMBERED:
                    self._collected.append(ev)
            elif isinstance(ev, ir.Usage):
                ctx.apply_usage(ev)
            else:
                if isinstance(ev, ir.Finish):
                    self.done = True
                    ctx.stop_reason = ev.stop_reason
                self._collected.append(ev)
            out += self._renderer.render(ev)
        return bytes(out)

    def incomplete(self) -> None:
        """Nothing to do: every delta was noted as it went by."""

    def completed(self) -> None:
        remember(self._reasoning, self._vendor.name, ir.fold(self._collected))

    def error(self, err: GatewayError) -> bytes:
        assert self._renderer is not None
        return self._renderer.error(err)

    def tail(self, extra_usage: Mapping[str, Any]) -> bytes:
        assert self._renderer is not None
        return self._renderer.end(self._ctx.usage, extra_usage)
