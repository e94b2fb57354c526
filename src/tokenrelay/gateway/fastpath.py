"""The fast path: the client speaks the vendor's own API, so the vendor's bytes go through.

The vendor's adapter builds the call from the client's own body (the model name rewritten,
usage asked for) and scans the stream for the few events that carry usage; the extra usage
chunk billing asks for is dropped again when the client did not. Vendor fields the IR does not
know survive untouched. Nothing here knows a vendor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from tokenrelay import ir
from tokenrelay.errors import GatewayError
from tokenrelay.gateway.exchange import ExchangeBase
from tokenrelay.reasoning.cache import remember
from tokenrelay.sse import JsonArrayFrame, SSEParser
from tokenrelay.vendors.base import PassthroughScan, UpstreamRequest


class PassthroughExchange(ExchangeBase):
    cut = False  # the vendor's bytes are never cut
    body_carries_cost = False
    _data = b""
    _scan: PassthroughScan | None = None
    _array: JsonArrayFrame | None = None  # the client asked for one JSON array, not SSE

    # ------------------------------------------------------------------------------ unary

    def read_unary(self, data: bytes) -> None:
        # The body goes on as it came: its blocks are read only for the reasoning cache.
        events = self._vendor.parse_response(data, content=self._vendor.remembers_reasoning)
        error = None  # the last one, as ir.fold keeps it: folding the whole answer is not needed
        for ev in events:
            if isinstance(ev, ir.Usage):
                self._ctx.apply_usage(ev)
            elif isinstance(ev, ir.Error):
                error = ev
        if error is not None:
            raise GatewayError.from_ir(error)
        if self._vendor.remembers_reasoning:
            remember(self._reasoning, self._vendor.name, ir.fold(events))
        self._data = data

    def unary_body(self, extra_usage: Mapping[str, Any]) -> bytes:
        return self._data  # the cost goes in a header: the vendor's body stays as it was

    # ------------------------------------------------------------------------------ stream

    def start(self, call: UpstreamRequest, req: ir.Request) -> None:
        self._parser = SSEParser()
        self._scan = self._vendor.passthrough_scan(
            self._ctx.apply_usage, client_usage=self._include_usage, choices=call.choices
        )
        if self._framing == "json_array":  # the vendor's events, each an item of the array
            self._array = self._scan.array = JsonArrayFrame()

    @property
    def done(self) -> bool:
        return self._scan is not None and self._scan.done

    @property
    def error_forwarded(self) -> bool:
        return self._scan is not None and self._scan.error_forwarded

    def feed(self, chunk: bytes) -> bytes:
        assert self._scan is not None
        out = self._scan.process(self._parser.feed(chunk))
        if self._scan.failed is not None:
            self.failure = ir.Error("api_error", self._scan.failed, 502)
        return out

    def close(self) -> bytes:
        assert self._scan is not None
        return self._scan.process(self._parser.flush())

    def incomplete(self) -> None:
        """Recover the generated text from what went by, so the estimate can bill it."""
        assert self._scan is not None
        for ev in self._scan.generated():
            if isinstance(ev, ir.Delta) and ev.kind != "signature":
                self._ctx.note_output(ev.value)

    def completed(self) -> None:
        if self._vendor.remembers_reasoning:
            assert self._scan is not None
            remember(self._reasoning, self._vendor.name, ir.fold(self._scan.generated()))

    def error(self, err: GatewayError) -> bytes:
        if self._array is not None:  # the last item of the array: the format's error body
            _, body = self._frontend.render_error(err)
            return self._array.item(orjson.dumps(body)) + self._array.close()
        renderer = self._frontend.stream_renderer(
            request_id=self._ctx.request_id, include_usage=False, echo=self._echo
        )
        return renderer.error(err)

    def tail(self, extra_usage: Mapping[str, Any]) -> bytes:
        assert self._scan is not None
        return self._scan.render_tail(extra_usage)
