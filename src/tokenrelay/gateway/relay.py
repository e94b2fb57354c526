"""The pipeline, in one place and in order: take the request in, decide it, hold its worst
case, open the vendor call (upstreams.attempts: deployments, retries, fallbacks), carry the
answer back (respond.py), settle.

Two ways through, one driver: the *translated* path (client format ≠ vendor format: frontend →
IR → vendor adapter and back as IR events, translated.py) and the *fast path* (the client
speaks the vendor's own API: its bytes pass through, usage read on the side, fastpath.py).
The request is decided before the hold (vendor defaults and the call as it will be sent, so
the hold prices exactly it); retries and fallbacks happen only before the first byte reaches
the client, and a fallback passes the same admission as a direct request for its model; a
response is settled before its end reaches the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import MutableMapping
from typing import Any

import orjson

from tokenrelay.asgi import ClientDisconnected, Receive, Scope, Send
from tokenrelay.billing.meter import BillingMeter
from tokenrelay.billing.metering import RequestContext
from tokenrelay.catalog import Catalog
from tokenrelay.customers.keys import ApiKeyInfo, KeyStore
from tokenrelay.errors import GatewayError
from tokenrelay.gateway.codec import Frontend
from tokenrelay.gateway.decide import Prepared, decide
from tokenrelay.gateway.intake import Body, Intake, Parser, receive_request, take_in
from tokenrelay.gateway.jsonbody import parse_object
from tokenrelay.gateway.respond import SHUTTING_DOWN, Flight, Responder
from tokenrelay.ops.access_log import enable as enable_access_log
from tokenrelay.ops.access_log import log_request
from tokenrelay.ops.metrics import observe, request_started
from tokenrelay.ops.tracing import tracing_for
from tokenrelay.reasoning.cache import reasoning_cache_for
from tokenrelay.settings import Settings
from tokenrelay.upstreams.attempts import Caller, Opened
from tokenrelay.upstreams.calls import Upstreams
from tokenrelay.upstreams.pools import affinity_key

log = logging.getLogger("tokenrelay.gateway.relay")

NO_FALLBACK_HEADER = "x-tokenrelay-no-fallback"
INTERNAL = GatewayError("api_error", "Internal gateway error.", 500)


def new_request_id() -> str:
    """`req_` + milliseconds since the epoch + 64 random bits, ULID-style. Time-ordered ids
    land at the right edge of the usage and ledger indexes: a batch of settlements touches a
    few index pages instead of one per row (random ids made SQLite write several times the
    data per commit). `random` (reseeded from the OS at start and in every forked worker)
    rather than os.urandom: no syscall, which would hand the GIL to the journal thread."""
    return f"req_{time.time_ns() // 1_000_000:012x}{random.getrandbits(64):016x}"


class _Captured:
    """An ASGI `send` that keeps a unary answer instead of sending it."""

    def __init__(self) -> None:
        self.status = 500
        self.body = b""

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        else:
            self.body += message.get("body", b"")


async def _never_gone() -> dict[str, Any]:
    """The `receive` of a request without a client: nobody can leave."""
    await asyncio.Event().wait()
    return {"type": "http.disconnect"}


class Relay:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        upstreams: Upstreams,
        keys: KeyStore,
        meter: BillingMeter,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.upstreams = upstreams
        self.keys = keys
        self.meter = meter
        self.caller = Caller(upstreams, settings)
        self.reasoning = reasoning_cache_for(settings)  # shared through Redis when set
        self.respond = Responder(meter, self.reasoning, settings.on_disconnect == "drain")
        self.active = 0  # requests in flight, for a shutdown that lets them finish
        self.access_log = settings.access_log == "on"
        if self.access_log:
            enable_access_log()
        self.tracing = tracing_for(settings.otel)  # None when off: no call below, no import

    async def serve(self, frontend: Frontend, scope: Scope, receive: Receive, send: Send) -> None:
        self.active += 1
        request_started()
        ctx = RequestContext(request_id=new_request_id(), client_format=frontend.name)
        tracing = self.tracing
        span = tracing.start(ctx) if tracing is not None else None
        try:
            await self._serve(Flight(ctx, frontend), scope, receive, send)
        finally:
            self.active -= 1
            observe(ctx)
            if self.access_log:
                log_request(ctx)
            if tracing is not None and span is not None:
                tracing.finish(span, ctx)

    async def drained(self, timeout_s: float) -> bool:
        """Wait (at most `timeout_s`) for the requests in flight to finish and settle; the
        server cancels what outlives its shutdown grace, which ends and bills them."""
        deadline = time.monotonic() + timeout_s
        while self.active and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return not self.active

    def take_in(self, parse: Parser, ctx: RequestContext, body: Body) -> Intake:
        return take_in(self.catalog, self.upstreams.endpoints, parse, ctx, body)

    async def prepare(
        self, frontend: Frontend, ctx: RequestContext, scope: Scope, receive: Receive
    ) -> tuple[ApiKeyInfo, Prepared]:
        """A request read, authenticated and decided as `serve` decides it; nothing held or
        sent (the cost quote: the same decision, so it cannot drift)."""
        f = Flight(ctx, frontend)
        p = await self._decided(f, scope, receive)
        assert f.key is not None
        return f.key, p

    async def _decided(self, f: Flight, scope: Scope, receive: Receive) -> Prepared:
        """The request read, authenticated (`f.key`, which even a refusal's headers read) and
        decided, in a frame of its own: no local holds the client's body for the answer's
        life (what a stream keeps of its request is Prepared.under_way's to say)."""
        got = await receive_request(self.keys, self.settings.max_body_bytes, f.ctx, scope, receive)
        f.key = got.key
        it = self.take_in(f.frontend.parse_request, f.ctx, got.body)
        return await decide(f.frontend, it, f.ctx, self.reasoning)

    async def _serve(self, f: Flight, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = f.ctx
        try:
            p = await self._decided(f, scope, receive)
            assert f.key is not None
            f.admission = await self.meter.admit(f.key, ctx, p.model_id, p.max_output)
        except GatewayError as err:
            ctx.finish("error", err.message, complete=False)
            await self.respond.error(f, send, err)
            return
        except ClientDisconnected:
            ctx.finish("cancelled", "client disconnected", complete=False)
            return
        except Exception:
            log.exception("request %s failed before the vendor call", ctx.request_id)
            await self.respond.error(f, send, INTERNAL)
            return
        try:
            if ctx.stream:
                await self.respond.stream(f, receive, send, lambda: self._open(f, p))
            else:
                await self.respond.unary(f, receive, send, lambda: self._open(f, p))
        except GatewayError as err:  # raised before any byte of the answer went out
            ctx.finish("error", err.message, complete=False)
            await self.respond.error(f, send, err)
        except asyncio.CancelledError:
            # Only the server cancels a request outside a stream: its shutdown grace ran out.
            # Nothing reached the client, so nothing is billed; it hears why, and may retry.
            if f.response_started:
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            ctx.upstream_answered = False
            ctx.finish("cancelled", "gateway shutting down", complete=False)
            await self.respond.error(f, send, SHUTTING_DOWN)
        except Exception:
            log.exception("request %s failed", ctx.request_id)
            if ctx.duration_ms is None:
                ctx.finish("error", "internal error", complete=False)
            if not f.response_started:
                await self.respond.error(f, send, INTERNAL)
        finally:
            f.release()
            if ctx.duration_ms is None:
                ctx.finish("error", "interrupted", complete=False)
            await self.respond.settle_ending(f)  # not settled on the way out (disconnect)

    # ----------------------------------------------------------------------------------------
    # a request with no HTTP client of its own (a batch line)

    async def decide_detached(
        self, frontend: Frontend, ctx: RequestContext, payload: dict[str, Any]
    ) -> Prepared:
        """Take in and decide `payload` (its key authenticated by the caller), without
        streaming and without fallbacks (another model would bill at its own prices)."""
        payload = {**payload, "stream": False}
        it = self.take_in(frontend.parse_request, ctx, Body(payload, {NO_FALLBACK_HEADER: "1"}))
        return await decide(frontend, it, ctx, self.reasoning)

    async def answer_detached(self, f: Flight, p: Prepared) -> tuple[int, bytes]:
        """Call and settle `p` as a unary request whose hold the caller made (f.admission):
        the status and body the client format answers, the error body too. Settled once
        either way; an answer that did not come whole costs nothing."""
        ctx, out = f.ctx, _Captured()
        try:
            await self.respond.unary(f, _never_gone, out.send, lambda: self.caller.open(p, ctx))
        except GatewayError as err:
            ctx.finish("error", err.message, complete=False)
            status, body = f.frontend.render_error(err)
            return status, orjson.dumps(body)
        except asyncio.CancelledError:
            # The server stops: no record, the hold dropped; the line runs again later and is
            # billed then (once: a record already committed makes that settlement a no-op).
            if ctx.cost_nano is None and f.admission is not None:
                await asyncio.shield(self.meter.engine.release(f.admission))
            raise
        finally:
            f.release()
            if ctx.duration_ms is None:
                ctx.finish("error", "interrupted", complete=False)
            if ctx.cost_nano is None and f.admission is not None and not f.admission.released:
                with contextlib.suppress(GatewayError):
                    await asyncio.shield(self.meter.settle(f.admission, ctx))
        return out.status, out.body

    async def _open(self, f: Flight, p: Prepared) -> Opened[Prepared]:
        """Open `p`'s call through the upstream caller, with the model's fallbacks (unless
        the client opted out), each decided and admitted as a request for it would be. What
        the answer needs of the parsed request is taken before the call (the affinity key, a
        stream's opening), and the request is let go while the vendor thinks (`waiting`): a
        fallback reads the client's bytes again."""
        it, ctx = p.intake, f.ctx
        chain = it.resolved.entry.fallbacks
        if chain and it.headers.get(NO_FALLBACK_HEADER, "").strip().lower() in ("1", "true"):
            chain = ()
        # Only a pool of several deployments reads it (a fallback's may): hashing the prompt
        # costs ~10 µs on a 40 KB one.
        affine = self.caller.affinity_on and (
            bool(chain) or not self.upstreams.pools[p.endpoint.name].single
        )
        key = affinity_key(it.headers, it.payload) if affine else None
        headers, route, raw, parse = it.headers, it.route, it.raw, f.frontend.parse_request
        scope = it.scope
        await self._ready(p, ctx)
        del it

        async def decide_fallback(model: str) -> Prepared:
            asked = ctx.model_asked
            # The client's bytes parsed again: the parsers and adapters only read a body, but
            # the two calls must not share one. The model goes on the route, so the body is
            # the client's either way.
            try:
                body = Body(parse_object(raw), headers, {**route, "model": model}, raw, scope)
                q = await decide(f.frontend, self.take_in(parse, ctx, body), ctx, self.reasoning)
            finally:
                ctx.model_asked = asked
            assert f.key is not None and f.admission is not None
            await self.meter.rehold(f.admission, f.key, ctx, q.model_id, q.max_output)
            await self._ready(q, ctx)
            return q

        tracing = self.tracing
        return await self.caller.open(
            p,
            ctx,
            fallbacks=chain,
            decide_fallback=decide_fallback,
            affinity=lambda: key,
            on_attempt=tracing.attempt if tracing is not None else None,
        )

    @staticmethod
    async def _ready(p: Prepared, ctx: RequestContext) -> None:
        """Before `p`'s call goes: a stream's exchange takes what it needs of the request (its
        opening's prompt count, off the loop when long), then the request waits on the vendor
        without its parsed body (Prepared.waiting)."""
        if ctx.stream:
            req = p.intake.req
            await p.exchange.prepare(req)
            p.exchange.start(p.call, req)
        p.waiting(ctx)
