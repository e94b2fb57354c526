"""The pipeline: authenticate, decide the request, hold its worst case, call the vendor, carry
the answer back, settle.

Two ways through, one driver: the *translated* path (client format ≠ vendor format: frontend →
IR → vendor adapter and back as IR events, translated.py) and the *fast path* (the client
speaks the vendor's own API: its bytes pass through, usage read on the side, fastpath.py).
Everything else is here, once: the request is decided before the hold (vendor defaults and the
call as it will be sent, so the hold prices exactly it); retries happen only before the first
byte reaches the client; after that an upstream failure becomes the client format's error
event; a response is settled before its end reaches the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tokenrelay import ir
from tokenrelay.asgi import (
    JSON_HEADERS,
    SSE_HEADERS,
    ClientDisconnected,
    DisconnectWatch,
    Receive,
    Scope,
    Send,
    header_map,
    send_bytes,
    send_chunk,
)
from tokenrelay.billing.meter import BillingMeter
from tokenrelay.billing.metering import RequestContext, session_id
from tokenrelay.catalog import Catalog, Resolved
from tokenrelay.customers.keys import KeyStore, presented_key
from tokenrelay.errors import GatewayError, invalid
from tokenrelay.gateway.codec import Frontend
from tokenrelay.gateway.exchange import Exchange
from tokenrelay.gateway.fastpath import PassthroughExchange
from tokenrelay.gateway.jsonbody import parse_object, read_limited
from tokenrelay.gateway.prompt_bound import prompt_bound
from tokenrelay.gateway.translated import TranslatedExchange
from tokenrelay.ops.access_log import enable as enable_access_log
from tokenrelay.ops.access_log import log_request
from tokenrelay.ops.metrics import observe, request_started
from tokenrelay.ops.ratelimit_headers import rate_limit_headers
from tokenrelay.ops.tracing import tracing_for
from tokenrelay.reasoning.cache import reasoning_cache_for, restore
from tokenrelay.settings import Settings
from tokenrelay.upstreams.calls import (
    RETRYABLE_STATUS,
    Exhausted,
    Upstreams,
    backoff_s,
    no_deployment,
    upstream_unreachable,
)
from tokenrelay.upstreams.http_client import Response
from tokenrelay.upstreams.pools import Deployment, Pool, VendorEndpoint, affinity_key, retarget
from tokenrelay.vendors.base import Passthrough, UpstreamRequest

log = logging.getLogger("tokenrelay.gateway.relay")

NO_FALLBACK_HEADER = "x-tokenrelay-no-fallback"
INTERNAL = GatewayError("api_error", "Internal gateway error.", 500)
SHUTTING_DOWN = GatewayError(
    "overloaded", "The gateway is restarting; retry the request.", 503, retry_after=1.0
)


def new_request_id() -> str:
    """`req_` + milliseconds since the epoch + 64 random bits, ULID-style. Time-ordered ids
    land at the right edge of the usage and ledger indexes: a batch of settlements touches a
    few index pages instead of one per row (random ids made SQLite write several times the
    data per commit). `random` (reseeded from the OS at start and in every forked worker)
    rather than os.urandom: no syscall, which would hand the GIL to the journal thread."""
    return f"req_{time.time_ns() // 1_000_000:012x}{random.getrandbits(64):016x}"


@dataclass(slots=True)
class Intake:
    """A validated request, routed to its vendor (what count_tokens needs too)."""

    ctx: RequestContext
    payload: dict[str, Any]
    headers: dict[str, str]
    resolved: Resolved
    endpoint: VendorEndpoint
    req: ir.Request


@dataclass(slots=True)
class Prepared:
    """A request decided: the vendor call as it will be sent, and what may come back."""

    intake: Intake
    call: UpstreamRequest
    exchange: Exchange
    max_output: int  # every output token the call allows, over all its choices
    frontend: Frontend

    @property
    def ctx(self) -> RequestContext:
        return self.intake.ctx

    @property
    def endpoint(self) -> VendorEndpoint:
        return self.intake.endpoint

    @property
    def resolved(self) -> Resolved:
        return self.intake.resolved


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
        self.reasoning = reasoning_cache_for(settings)  # shared through Redis when set
        self.active = 0  # requests in flight, for a shutdown that lets them finish
        self.access_log = settings.access_log == "on"
        if self.access_log:
            enable_access_log()
        self.tracing = tracing_for(settings.otel)  # None when off: no call below, no import

    # ----------------------------------------------------------------------------------------
    # entry point

    async def serve(self, frontend: Frontend, scope: Scope, receive: Receive, send: Send) -> None:
        self.active += 1
        request_started()
        ctx = RequestContext(request_id=new_request_id(), client_format=frontend.name)
        tracing = self.tracing
        span = tracing.start(ctx) if tracing is not None else None
        try:
            await self._serve(frontend, ctx, scope, receive, send)
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

    async def _serve(
        self, frontend: Frontend, ctx: RequestContext, scope: Scope, receive: Receive, send: Send
    ) -> None:
        try:
            p = await self._prepare(frontend, ctx, scope, receive)
            await self.meter.admit(ctx, p.resolved.entry.id, p.max_output)
        except GatewayError as err:
            ctx.finish("error", err.message, complete=False)
            await self._send_error(frontend, send, ctx, err)
            return
        except ClientDisconnected:
            ctx.finish("cancelled", "client disconnected", complete=False)
            return
        except Exception:
            log.exception("request %s failed before the vendor call", ctx.request_id)
            await self._send_error(frontend, send, ctx, INTERNAL)
            return
        try:
            if ctx.stream:
                await self._stream(p, receive, send)
            else:
                await self._unary(p, send)
        except GatewayError as err:  # raised before any byte of the answer went out
            ctx.finish("error", err.message, complete=False)
            await self._send_error(frontend, send, ctx, err)
        except asyncio.CancelledError:
            # Only the server cancels a request outside a stream: its shutdown grace ran out.
            # Nothing reached the client, so nothing is billed; it hears why, and may retry.
            if ctx.response_started:
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            ctx.upstream_answered = False
            ctx.finish("cancelled", "gateway shutting down", complete=False)
            await self._send_error(frontend, send, ctx, SHUTTING_DOWN)
        except Exception:
            log.exception("request %s failed", ctx.request_id)
            if ctx.duration_ms is None:
                ctx.finish("error", "internal error", complete=False)
            if not ctx.response_started:
                await self._send_error(frontend, send, ctx, INTERNAL)
        finally:
            self.release(ctx)
            if ctx.duration_ms is None:
                ctx.finish("error", "interrupted", complete=False)
            if ctx.cost_nano is None:  # not settled on the way out (error, disconnect)
                # Shielded: a shutdown or disconnect must not lose a settlement half-way.
                with contextlib.suppress(GatewayError):  # logged; nothing was billed
                    await asyncio.shield(self.meter.settle(ctx))

    async def intake(
        self,
        frontend: Frontend,
        ctx: RequestContext,
        payload: dict[str, Any],
        headers: dict[str, str],
        *,
        parse: Callable[[Any, Mapping[str, str]], ir.Request] | None = None,
    ) -> Intake:
        """Resolve the model and its vendor, validate the body into the IR (`parse`: the
        frontend's parser for another shape of the same body, e.g. count_tokens')."""
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            raise invalid("model: Field required (a model name string)", "model")
        resolved = self.catalog.resolve(model)
        if resolved is None:
            raise GatewayError(
                "not_found",
                f"model: '{model}' is not available here. GET /api/proxy/v1/models lists models.",
                404,
                param="model",
            )
        endpoint = self.upstreams.endpoints.get(resolved.entry.vendor)
        if endpoint is None:
            raise GatewayError(
                "api_error",
                f"model: '{model}' is unavailable on this gateway right now.",
                503,
                retry_after=60.0,
            )
        req = (parse or frontend.parse_request)(payload, headers)
        ctx.model_asked = model
        ctx.model_id = resolved.entry.id
        ctx.vendor = endpoint.name
        ctx.stream = req.stream
        ctx.request = req
        req.model = resolved.entry.upstream
        if resolved.thinking is not None and (req.thinking is None or req.thinking.enabled is None):
            req.thinking = ir.ThinkingConfig(enabled=resolved.thinking)
        return Intake(ctx, payload, headers, resolved, endpoint, req)

    async def prepare(
        self, frontend: Frontend, ctx: RequestContext, scope: Scope, receive: Receive
    ) -> Prepared:
        """A request read, authenticated and decided as `serve` decides it; nothing held or
        sent (issue 25: the cost quote)."""
        return await self._prepare(frontend, ctx, scope, receive)

    async def _prepare(
        self, frontend: Frontend, ctx: RequestContext, scope: Scope, receive: Receive
    ) -> Prepared:
        body = await read_limited(receive, self.settings.max_body_bytes)
        headers = header_map(scope)
        ctx.session_id = session_id(headers)
        key = await self.keys.authenticate(presented_key(headers))
        if key is None:
            raise GatewayError("authentication", "Invalid or missing API key.", 401)
        ctx.key_id = key.id
        ctx.key = key
        payload = parse_object(body)
        # What another API's body says and Gemini's URL does (the model, streaming): its route
        # puts it here.
        payload.update(scope.get("path_params") or ())
        it = await self.intake(frontend, ctx, payload, headers)
        return await self._decide(frontend, it)

    async def _decide(self, frontend: Frontend, it: Intake) -> Prepared:
        """The vendor call for a request taken in, as it will be sent (to the vendor's first
        deployment: `open_upstream` retargets it to the one chosen)."""
        ctx = it.ctx
        ep, req, entry = it.endpoint, it.req, it.resolved.entry
        if self.reasoning.shared:  # the previous turn may have been answered by another replica
            await self.reasoning.prefetch(req)
        exchange: Exchange
        # Stop sequences the model refuses (a 400) are sent without and enforced here, on the
        # translated path, which sees the text as IR deltas.
        own_stop = bool(req.stop) and not ep.adapter.enforces_stop(req.model)
        fast = None if own_stop else ep.adapter.passthrough(frontend.name)
        if fast is not None:
            ctx.fast_path = True
            # The client's own body goes on: what it asks is what the vendor is asked.
            via = Passthrough(it.headers, ep.api_key, ep.base_url, self.reasoning)
            call = fast.passthrough_request(it.payload, req, via)
            exchange = PassthroughExchange(frontend, fast, ctx, req, self.reasoning)
        else:
            if req.native_only:  # what only the client format's own vendor runs
                param, what = req.native_only[0]
                raise invalid(
                    f"{param}: {what} is not available on model '{ctx.model_asked}' "
                    f"(vendor {ep.name})",
                    param,
                )
            if req.max_tokens is not None and req.max_tokens > entry.max_output:
                # Clients ask every model for their own cap (Claude Code: 32000); the vendor
                # would refuse more than the model can write.
                req.max_tokens = entry.max_output
            ep.adapter.finalize(req, entry.default_max_tokens)
            restore(self.reasoning, ep.name, req)
            stops = req.stop
            if own_stop:
                req.stop = []
            call = ep.adapter.build_request(
                req, req.model, api_key=ep.api_key, base_url=ep.base_url
            )
            req.stop = stops
            translated = TranslatedExchange(frontend, ep.adapter, ctx, req, self.reasoning)
            if own_stop:
                translated.enforce_stop(req.stop)
            exchange = translated
        ctx.input_bound = prompt_bound(
            req,
            call.body,
            max_image_tokens=ep.adapter.max_image_tokens,
            url_media_bounded=ep.adapter.url_media_bounded,
            context_window=entry.context_window,
        )
        # Without a cap of its own the vendor may write up to the model's output limit.
        max_output = (call.max_output or entry.max_output) * call.choices
        return Prepared(it, call, exchange, max_output, frontend)

    async def open_upstream(
        self,
        ep: VendorEndpoint,
        call: Any,
        ctx: RequestContext,
        *,
        affinity: int | None = None,
        fall_back: bool = False,
    ) -> Response:
        """Open the vendor call on one of the vendor's deployments (pools.Pool.pick), before
        any byte reached the client: a deployment that fails (connection, 5xx/529, 429) is
        cooled down and the next attempt goes to another one when there is one (otherwise,
        after a jittered backoff that honours `retry-after`, to the same); one whose key is
        refused is taken out. At most 1 + upstream_retries attempts within the retry budget.
        Returns a 200 response (its deployment leased in `ctx.lease`: `release` it), or raises
        the vendor's error, mapped; `Exhausted` instead when `fall_back` and the failure was
        the deployments', not the request's."""
        pool = self.upstreams.pools[ep.name]
        s = self.settings
        attempts = 1 + max(s.upstream_retries, 0)
        deadline = time.monotonic() + s.upstream_retry_budget_s
        tried: list[Deployment] = []
        err: GatewayError | None = None
        for n in range(attempts):
            d = pool.pick(ctx.model_id, affinity, tried)
            if d is None:
                if fall_back:
                    raise Exhausted(err or no_deployment(ep.name))
                d = pool.last_resort(ctx.model_id)
                if d is None:
                    raise err or no_deployment(ep.name)
                if err is not None:  # waiting for the same deployment again
                    if err.status == 429 or (err.code == ir.UPSTREAM_ACCOUNT_ERROR):
                        raise err  # the vendor's word for this deployment: not soon
                    wait = backoff_s(n, err.retry_after)
                    if time.monotonic() + wait > deadline:
                        raise err
                    await asyncio.sleep(wait)
            elif n and time.monotonic() > deadline:
                raise err or no_deployment(ep.name)
            ctx.attempts += 1
            sent = call if d.endpoint is ep else retarget(call, ep, d.endpoint)
            pool.acquire(d)
            ctx.lease = (pool, d)
            tracing = self.tracing
            started_ns = time.time_ns() if tracing is not None else 0
            try:
                resp = await self.upstreams.open(ep.name, sent)
            except OSError as exc:  # connection failures and timeouts
                self.release(ctx)
                err = upstream_unreachable(ep.name, exc)
                pool.failed(d, type(exc).__name__)
                tried.append(d)
                if tracing is not None:
                    tracing.attempt(d.id, started_ns, None, err.message)
                continue
            except BaseException:
                self.release(ctx)
                raise
            if tracing is not None:
                tracing.attempt(d.id, started_ns, resp.status, None)
            if resp.status == 200:
                pool.succeeded(d)
                ctx.deployment = d.id
                ctx.upstream_answered = True
                return resp
            try:
                async with resp:
                    body = await resp.read()
            finally:
                self.release(ctx)
            err = GatewayError.from_ir(ep.adapter.parse_error(resp.status, body, resp.headers))
            if err.code == ir.UPSTREAM_ACCOUNT_ERROR:
                if not pool.reject_key(d, f"HTTP {resp.status}: {err.message[:200]}"):
                    raise err  # the vendor's last deployment: its answer goes to the client
            elif resp.status == 429 or resp.status in RETRYABLE_STATUS:
                pool.failed(d, f"HTTP {resp.status}", err.retry_after)
            else:
                raise err  # the request's own fault: no other deployment answers otherwise
            tried.append(d)
        assert err is not None
        if fall_back and not pool.any_available(ctx.model_id):
            raise Exhausted(err)
        raise err

    def release(self, ctx: RequestContext) -> None:
        """The request is done with its deployment (its response ended, or the attempt)."""
        lease = ctx.lease
        if lease is not None:
            ctx.lease = None
            Pool.release(lease[1])

    async def _open(self, p: Prepared) -> tuple[Response, Prepared]:
        """Open `p`'s call; when no deployment of its model can take it, the model's fallbacks
        in order (unless the client opted out). Returns the response and what it answers."""
        ctx, it = p.ctx, p.intake
        chain = it.resolved.entry.fallbacks
        if chain and it.headers.get(NO_FALLBACK_HEADER, "").strip().lower() in ("1", "true"):
            chain = ()
        first = ctx.model_id
        # The model itself, then its fallbacks: each decided only when the one before is out.
        candidates: list[str | None] = [None, *chain]
        last: GatewayError | None = None
        for i, model in enumerate(candidates):
            q = p
            if model is not None:
                try:
                    q = await self._fallback(p, model)
                except GatewayError as err:
                    log.warning(
                        "request %s: fallback %s from %s unusable: %s",
                        ctx.request_id,
                        model,
                        first,
                        err.message,
                    )
                    continue
                log.info(
                    "request %s: %s unavailable, falling back to %s", ctx.request_id, first, model
                )
                ctx.fallback_from = first
            affinity = self._affinity(self.upstreams.pools[q.endpoint.name], it)
            try:
                resp = await self.open_upstream(
                    q.endpoint, q.call, ctx, affinity=affinity, fall_back=i + 1 < len(candidates)
                )
                return resp, q
            except Exhausted as exc:
                last = exc.error
        assert last is not None  # the model itself was tried, or it raised
        raise last

    def _affinity(self, pool: Pool, it: Intake) -> int | None:
        if pool.single or not self.settings.upstream_affinity:
            return None
        return affinity_key(it.headers, it.payload)

    async def _fallback(self, p: Prepared, model: str) -> Prepared:
        """`p`'s request decided for another model (any vendor), its credit hold grown to the
        fallback's worst case when that is dearer."""
        ctx, it = p.ctx, p.intake
        asked, ctx.fast_path = ctx.model_asked, False
        payload = orjson.loads(orjson.dumps(it.payload))
        payload["model"] = model
        try:
            taken = await self.intake(p.frontend, ctx, payload, it.headers)
            q = await self._decide(p.frontend, taken)
        finally:
            ctx.model_asked = asked
        await self.meter.rehold(ctx, q.resolved.entry.id, q.max_output)
        return q

    # ----------------------------------------------------------------------------------------
    # the driver: one for both paths

    async def _unary(self, p: Prepared, send: Send) -> None:
        ctx = p.ctx
        resp, p = await self._open(p)
        try:
            async with resp:
                try:
                    data = await resp.read()
                except OSError as exc:  # the body stalled (idle, total) or broke: not delivered
                    ctx.upstream_answered = False
                    raise upstream_unreachable(p.endpoint.name, exc, started=True) from None
        finally:
            self.release(ctx)
        p.exchange.read_unary(data)
        if self.reasoning.pending:  # shared before the client can send the next turn
            await self.reasoning.flush()
        ctx.finish("ok")
        await self.meter.settle(ctx)  # committed before the client can have the answer
        body = p.exchange.unary_body(self.meter.extra_usage(ctx))
        ctx.mark_first_byte()
        ctx.response_started = True
        ctx.http_status = 200
        headers = [*JSON_HEADERS, *self.response_headers(ctx), *self.meter.cost_headers(ctx)]
        await send_bytes(send, 200, body, headers)

    async def _stream(self, p: Prepared, receive: Receive, send: Send) -> None:
        ctx = p.ctx
        resp, p = await self._open(p)
        ex = p.exchange
        async with resp:
            ex.start(p.call)
            await self.start_stream(send, ctx)
            out = b""
            drain = self.settings.on_disconnect == "drain"
            async with DisconnectWatch(receive, cancel=not drain) as watch:
                try:
                    async for chunk in resp.content.iter_any():
                        out = ex.feed(chunk)
                        if out and not watch.disconnected:
                            ctx.mark_first_byte()
                            await send_chunk(send, out)
                        out = b""
                        if ex.cut:  # the gateway ended it (a stop sequence)
                            resp.close()  # hang up: the rest is not wanted
                            break
                        if ex.failure is not None:
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
            await send_chunk(send, out, more=False)
            return
        ex.completed()
        if self.reasoning.pending:
            await self.reasoning.flush()
        ctx.finish("ok", complete=not ex.cut)  # cut: what was delivered is billed
        try:
            await self.meter.settle(ctx)  # committed before the client sees the end
        except GatewayError as err:  # not billed: the client must not get a whole answer
            await send_chunk(send, out + ex.error(err), more=False)
            return
        await send_chunk(send, out + ex.tail(self.meter.extra_usage(ctx)), more=False)

    async def start_stream(self, send: Send, ctx: RequestContext) -> None:
        ctx.response_started = True
        ctx.http_status = 200
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*SSE_HEADERS, *self.response_headers(ctx)],
            }
        )

    async def fetch(self, ep: VendorEndpoint, call: Any, ctx: RequestContext) -> bytes:
        """A non-streaming upstream call: the 200 body, or the vendor's error as GatewayError."""
        try:
            async with await self.open_upstream(ep, call, ctx) as resp:
                return await resp.read()
        finally:
            self.release(ctx)

    # ----------------------------------------------------------------------------------------

    def response_headers(self, ctx: RequestContext) -> list[tuple[bytes, bytes]]:
        rid = ctx.request_id.encode()
        headers = [(b"x-request-id", rid), (b"request-id", rid)]
        if ctx.fallback_from:  # another model answered: which one
            headers.append((b"x-tokenrelay-model", ctx.model_id.encode()))
            headers.append((b"x-tokenrelay-fallback-from", ctx.fallback_from.encode()))
        headers += rate_limit_headers(ctx.client_format, *self.meter.rate_levels(ctx))  # issue 25
        return headers

    async def _send_error(
        self, frontend: Frontend, send: Send, ctx: RequestContext, err: GatewayError
    ) -> None:
        status, body = frontend.render_error(err)
        ctx.http_status = status
        headers = [*JSON_HEADERS, (b"x-request-id", ctx.request_id.encode())]
        headers += rate_limit_headers(ctx.client_format, *self.meter.rate_levels(ctx))  # issue 25
        retry_after = err.retry_after
        if retry_after is None and status in (429, 503):  # issue 25: always said on these
            retry_after = 1.0
        if retry_after is not None:
            headers.append((b"retry-after", str(max(1, round(retry_after))).encode()))
        if status >= 500:
            # The SDKs retry 5xx; not when the vendor refused the gateway's own account.
            retry = b"false" if err.code == ir.UPSTREAM_ACCOUNT_ERROR else b"true"
            headers.append((b"x-should-retry", retry))
        await send_bytes(send, status, orjson.dumps(body), headers)
