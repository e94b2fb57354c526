"""Driving the answer back to the client, one driver for both paths (the exchange does the
format work): a unary body settled before it is sent, a stream settled before its end is sent,
and every way a stream can end — the vendor's end, a stop sequence cut, an upstream failure
(the client format's error event), a client gone, the server's shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from tokenrelay import ir
from tokenrelay.asgi import (
    JSON_HEADERS,
    DisconnectWatch,
    Receive,
    Send,
    chunk_writer,
    send_bytes,
    send_chunk,
    streaming,
)
from tokenrelay.billing.engine import Admission
from tokenrelay.billing.meter import BillingMeter
from tokenrelay.billing.metering import RequestContext
from tokenrelay.customers.keys import ApiKeyInfo
from tokenrelay.errors import GatewayError
from tokenrelay.gateway.codec import Frontend
from tokenrelay.gateway.decide import Prepared
from tokenrelay.ops.ratelimit_headers import rate_limit_headers
from tokenrelay.reasoning.cache import ReasoningCache
from tokenrelay.upstreams.calls import upstream_unreachable

if TYPE_CHECKING:
    from tokenrelay.gateway.exchange import Exchange
    from tokenrelay.upstreams.attempts import Opened
    from tokenrelay.upstreams.http_client import Response

Opener = Callable[[], Awaitable["Opened[Prepared]"]]
SHUTTING_DOWN = GatewayError(
    "overloaded", "The gateway is restarting; retry the request.", 503, retry_after=1.0
)


@dataclass(slots=True)
class Flight:
    """One request in the gateway: its metering record, and what only the gateway holds for
    it (the key, the credit hold, the open vendor call)."""

    ctx: RequestContext
    frontend: Frontend
    key: ApiKeyInfo | None = None
    admission: Admission | None = None
    opened: Opened[Prepared] | None = None
    response_started: bool = False

    def release(self) -> None:
        if self.opened is not None:
            self.opened.release()


class _Forward:
    """A stream's middle chunks written from the vendor connection's callback while the
    stream's task waits (Response.forward): the exchange's work and the client write happen
    there, with no task switch and no ASGI message per chunk (~5 µs of the ~20 a chunk costs
    in all). Whatever needs the task is left to it: a client paused or gone (the chunk is not
    touched: the task reads it), or a chunk that ended the stream the gateway's way (a stop
    sequence, a vendor error: consumed here, its output kept for the task, which is woken)."""

    __slots__ = ("_ctx", "_ex", "_pending", "_resp", "_watch", "_writer")

    def __init__(
        self,
        resp: Response,
        ex: Exchange,
        ctx: RequestContext,
        watch: DisconnectWatch,
        writer: Any,
    ) -> None:
        self._resp, self._ex, self._ctx, self._watch, self._writer = resp, ex, ctx, watch, writer
        self._pending = b""

    @classmethod
    def over(
        cls, resp: Response, ex: Exchange, ctx: RequestContext, watch: DisconnectWatch, send: Send
    ) -> _Forward | None:
        writer = chunk_writer(send)
        if writer is None:  # a server without a synchronous writer: every chunk via the task
            return None
        forward = cls(resp, ex, ctx, watch, writer)
        resp.forward(forward)
        return forward

    def __call__(self, chunk: bytes) -> bool:
        ex = self._ex
        if (
            self._pending
            or self._watch.disconnected
            or ex.failure is not None
            or ex.cut
            or not self._writer.can_write_chunk()
        ):
            return False
        out = ex.feed(chunk)
        if ex.failure is not None or ex.cut:
            self._pending = out  # the task sends it as the ending it is
            self._resp.interrupt()
            return True
        if out:
            self._ctx.mark_first_byte()
            self._writer.write_chunk(out)
        return True

    def take(self) -> bytes:
        out, self._pending = self._pending, b""
        return out


class Responder:
    def __init__(self, meter: BillingMeter, reasoning: ReasoningCache, drain: bool) -> None:
        self.meter = meter
        self.reasoning = reasoning
        self.drain = drain  # a client gone mid-stream: read on to the vendor's final usage

    async def unary(self, f: Flight, receive: Receive, send: Send, open_call: Opener) -> None:
        ctx = f.ctx
        # Watched while the vendor answers: a client gone before its body could be sent is
        # settled as such (billing/policy.py), not as a delivered answer.
        async with DisconnectWatch(receive, cancel=False) as watch:
            opened = f.opened = await open_call()
            p = opened.target
            try:
                async with opened.response as resp:
                    try:
                        data = await resp.read()
                    except OSError as exc:  # the body stalled or broke: not delivered
                        ctx.upstream_answered = False
                        raise upstream_unreachable(p.endpoint.name, exc, started=True) from None
            finally:
                f.release()
            p.exchange.read_unary(data)
            if self.reasoning.pending:  # shared before the client can send the next turn
                await self.reasoning.flush()
            gone = await watch.gone()
        if gone:
            ctx.finish("cancelled", "client disconnected")
            return  # settled on the way out
        ctx.finish("ok")
        await self.meter.settle(f.admission, ctx)  # committed before the client has it
        ex = p.exchange
        body = ex.unary_body(self.meter.extra_usage(ctx) if ex.body_carries_cost else {})
        ctx.mark_first_byte()
        f.response_started = True
        ctx.http_status = 200
        headers = [*JSON_HEADERS, *self.headers(f), *self.meter.cost_headers(ctx)]
        await send_bytes(send, 200, body, headers)

    async def stream(self, f: Flight, receive: Receive, send: Send, open_call: Opener) -> None:
        ctx = f.ctx
        # Watched from the start (the server reads the socket only while someone waits on
        # `receive`): a client gone before the vendor's first byte is not served at all.
        async with DisconnectWatch(receive, cancel=False) as early:
            opened = f.opened = await open_call()
        del open_call  # nor its closure, for the stream's life
        if early.disconnected:
            opened.response.close()
            ctx.finish("cancelled", "client disconnected", complete=False)
            return  # settled on the way out (billing/policy.py: client_cut_before_output)
        p = opened.target
        ex = p.exchange
        async with opened.response as resp:  # the exchange was started before the call
            p.under_way(ctx)  # the stream keeps nothing of its request from here
            await self.start_stream(f, send)
            out = b""
            async with DisconnectWatch(receive, cancel=not self.drain) as watch:
                forward = _Forward.over(resp, ex, ctx, watch, send)
                try:
                    async for chunk in resp.content.iter_any():
                        out = forward.take() if forward is not None else b""
                        if chunk:
                            out += ex.feed(chunk)
                            # Not kept while this task waits for the next read: once forwarding,
                            # that is the stream's whole life (~0.4 KB a live stream, traced).
                            chunk = b""
                        if ex.failure is not None:  # it goes out once the ending is settled
                            break
                        if out and not watch.disconnected:
                            ctx.mark_first_byte()
                            await send_chunk(send, out)
                        out = b""
                        if ex.cut:  # the gateway ended it (a stop sequence)
                            resp.close()  # hang up: the rest is not wanted
                            break
                    else:
                        out = ex.close()
                except asyncio.CancelledError:
                    watch.swallow_cancel()
                    resp.close()  # hang up on the vendor: nobody reads the rest
                    ex.incomplete()
                    if watch.disconnected:
                        ctx.finish("cancelled", "client disconnected", complete=False)
                        return
                    # The server's shutdown grace ran out: end the stream the format's way;
                    # what was delivered is billed.
                    ctx.finish("cancelled", "gateway shutting down", complete=False)
                    await self.settle_ending(f)
                    await send_chunk(send, ex.error(SHUTTING_DOWN), more=False)
                    return
                except OSError as exc:  # connection failures and timeouts (idle, total)
                    ex.failure = upstream_unreachable(p.endpoint.name, exc, started=True).to_ir()
        if watch.disconnected:  # drained: the vendor's own final usage, if it came
            if not ex.done:
                ex.incomplete()
            ctx.finish("cancelled", "client disconnected", complete=ex.done)
            return
        if ex.failure is not None or not ex.done:
            err = ex.failure or ir.Error(
                "api_error", "Upstream stream ended before completion.", 502
            )
            ex.incomplete()
            ctx.finish("error", err.message, complete=False)
            if not ex.error_forwarded:
                out += ex.error(GatewayError.from_ir(err))
            await self.settle_ending(f)
            await send_chunk(send, out, more=False)
            return
        ex.completed()
        if self.reasoning.pending:
            await self.reasoning.flush()
        ctx.finish("ok", complete=not ex.cut)  # cut: what was delivered is billed
        try:
            await self.meter.settle(f.admission, ctx)  # committed before the client sees the end
        except GatewayError as err:  # not billed: the client must not get a whole answer
            await send_chunk(send, out + ex.error(err), more=False)
            return
        await send_chunk(send, out + ex.tail(self.meter.extra_usage(ctx)), more=False)

    async def start_stream(self, f: Flight, send: Send) -> None:
        assert f.opened is not None
        exchange = f.opened.target.exchange
        f.response_started = True
        f.ctx.http_status = 200
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*exchange.stream_headers, *self.headers(f)],
            }
        )
        streaming(send)

    async def settle_ending(self, f: Flight) -> None:
        """Settle an ending other than a complete answer before its last byte goes out, so
        its record is there once the client has it. Shielded: a shutdown or disconnect must
        not lose a settlement half-way. A ledger that cannot commit bills nothing (logged)."""
        if f.ctx.cost_nano is None:
            with contextlib.suppress(GatewayError):
                await asyncio.shield(self.meter.settle(f.admission, f.ctx))

    async def error(self, f: Flight, send: Send, err: GatewayError) -> None:
        await self.settle_ending(f)
        status, body = f.frontend.render_error(err)
        f.ctx.http_status = status
        headers = [*JSON_HEADERS, (b"x-request-id", f.ctx.request_id.encode())]
        headers += rate_limit_headers(f.ctx.client_format, *self.meter.rate_levels(f.key))
        retry_after = err.retry_after
        if retry_after is None and status in (429, 503):  # always said on these
            retry_after = 1.0
        if retry_after is not None:
            headers.append((b"retry-after", str(max(1, round(retry_after))).encode()))
        if status >= 500:
            # The SDKs retry 5xx; not when the vendor refused the gateway's own account.
            retry = b"false" if err.code == ir.UPSTREAM_ACCOUNT_ERROR else b"true"
            headers.append((b"x-should-retry", retry))
        await send_bytes(send, status, orjson.dumps(body), headers)

    def headers(self, f: Flight) -> list[tuple[bytes, bytes]]:
        """What every answer carries: its request id, which model answered when a fallback
        did, and the key's rate-limit state in the client format's convention."""
        ctx = f.ctx
        rid = ctx.request_id.encode()
        headers = [(b"x-request-id", rid), (b"request-id", rid)]
        if ctx.fallback_from:  # another model answered: which one
            headers.append((b"x-tokenrelay-model", ctx.model_id.encode()))
            headers.append((b"x-tokenrelay-fallback-from", ctx.fallback_from.encode()))
        headers += rate_limit_headers(ctx.client_format, *self.meter.rate_levels(f.key))
        return headers
