"""The ASGI application: proxy routes on raw ASGI (hot path), everything else on Starlette.

The lifespan opens what the gateway needs for its whole life — database (migrated at start),
key cache, catalog, vendor connection pools — and, for vendors that have no key, starts the vendor
emulator as a second server on 127.0.0.1 (never on the gateway's own, public, port). The web
pages (storefront, portal, console) are added behind the API's routes with the first request
for one: a gateway only ever asked its API never loads them.

Every error the gateway itself answers (unknown path, wrong method) is JSON, in the shape the
path's clients parse: the Anthropic or OpenAI error under /api/proxy, the admin API's elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tokenrelay import __version__
from tokenrelay.admin.alerts import AlertWatcher
from tokenrelay.admin.api import account_route, admin_routes
from tokenrelay.asgi import Receive, Scope, Send, send_json
from tokenrelay.batches import batch_service
from tokenrelay.billing import tokenizer
from tokenrelay.billing.engine import BillingEngine
from tokenrelay.billing.meter import BillingMeter
from tokenrelay.billing.receipts import WELL_KNOWN_PATH, load_signer
from tokenrelay.catalog import Catalog
from tokenrelay.customers.keys import KeyStore
from tokenrelay.errors import GatewayError
from tokenrelay.frontends.anthropic.frontend import ANTHROPIC_FRONTEND
from tokenrelay.frontends.chat.frontend import OPENAI_FRONTEND
from tokenrelay.frontends.gemini.frontend import (
    EMBED_METHODS,
    GEMINI_FRONTEND,
    route_payload,
)
from tokenrelay.frontends.gemini.frontend import PREFIXES as GEMINI_PREFIXES
from tokenrelay.frontends.gemini.frontend import route as gemini_route
from tokenrelay.frontends.gemini.frontend import status_body as gemini_status_body
from tokenrelay.frontends.responses.frontend import (
    RESPONSES_COMPACT_FRONTEND,
    RESPONSES_FRONTEND,
)
from tokenrelay.gateway.quote import quote_routes
from tokenrelay.gateway.relay import Relay
from tokenrelay.ir import ErrorKind
from tokenrelay.ops.metrics import metrics_endpoint, watch_deployments
from tokenrelay.portal.brand import Brand, load_brand
from tokenrelay.portal.headers import SecurityHeaders
from tokenrelay.portal.storefront import error_page, wants_html
from tokenrelay.reasoning import compaction
from tokenrelay.server.compatibility_page import compatibility_routes
from tokenrelay.server.embedded_emulator import EmbeddedEmulator
from tokenrelay.server.embedding_routes import gemini_embeddings, openai_embeddings
from tokenrelay.server.model_routes import count_tokens, list_gemini_models, list_models
from tokenrelay.server.receipt_routes import receipt_routes
from tokenrelay.settings import Settings, get_settings
from tokenrelay.store.db import (
    create_engine,
    create_if_new,
    migrate_in_child,
    schema_is_current,
)
from tokenrelay.upstreams.calls import Upstreams
from tokenrelay.upstreams.deployment_state import DeploymentStates, KeyBox
from tokenrelay.vendors import registry

log = logging.getLogger("tokenrelay")

PROXY = "/api/proxy/v1"
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]
# Where the API's routes live, and no page's (tests/server/test_pages_on_demand.py): a request
# for one of these is routed alike with or without the pages loaded.
API_PATHS = ("/api/", "/admin/v1/", "/healthz", "/readyz", "/metrics", "/.well-known/")


class Gateway:
    """Top-level ASGI callable. Exact-path dict lookup for the proxy routes keeps the hot path
    free of a router; the rest goes to a Starlette app."""

    def __init__(self, settings: Settings, catalog: Catalog | None = None) -> None:
        self.settings = settings
        self._catalog = catalog  # loaded once by the server when it has one (serve.py)
        self.relay: Relay | None = None
        self._billing: BillingEngine | None = None
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", PROXY + "/messages"): self._messages,
            ("POST", PROXY + "/chat/completions"): self._chat,
            ("POST", PROXY + "/responses"): self._responses,
            ("POST", PROXY + "/messages/count_tokens"): self._count_tokens,
            ("POST", PROXY + "/responses/input_tokens"): self._input_tokens,
            ("POST", PROXY + "/responses/compact"): self._compact,
            ("POST", PROXY + "/embeddings"): self._embeddings,
        }
        self._other: Starlette | None = None
        self._pages: Callable[[], list[BaseRoute]] | None = None  # until the first page
        self.brand: Brand = load_brand(settings)  # a bad brand file stops the start, not a page
        self._resources: list[Any] = []
        # Base URL of the emulator the upstreams use (None: no vendor is emulated).
        self.emulator_url: str | None = None
        # Set by `tokenrelay serve` (the process is the gateway's alone, unlike a test's).
        self.freeze_heap_after_startup = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            handler = self._routes.get((scope["method"], scope["path"]))
            if handler is not None:
                await handler(scope, receive, send)
                return
            # Gemini puts the model and method in the path: one prefix, checked only on a miss.
            path = scope["path"]
            if path.startswith(GEMINI_PREFIXES) and await self._gemini(scope, receive, send):
                return
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        assert self._other is not None
        if self._pages is not None and not scope["path"].startswith(API_PATHS):
            self._other.router.routes.extend(self._pages())  # last, as they always were
            self._pages = None
        await self._other(scope, receive, send)

    # The relay's coroutine itself, not one awaiting it: a frame less for a stream's life
    # (~280 B traced a live stream).
    def _messages(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        assert self.relay is not None
        return self.relay.serve(ANTHROPIC_FRONTEND, scope, receive, send)

    def _chat(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        assert self.relay is not None
        return self.relay.serve(OPENAI_FRONTEND, scope, receive, send)

    def _responses(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        assert self.relay is not None
        return self.relay.serve(RESPONSES_FRONTEND, scope, receive, send)

    def _compact(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        assert self.relay is not None
        return self.relay.serve(RESPONSES_COMPACT_FRONTEND, scope, receive, send)

    async def _count_tokens(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.relay is not None
        await count_tokens(self.relay, scope, receive, send)

    async def _input_tokens(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.relay is not None
        await count_tokens(self.relay, scope, receive, send, RESPONSES_FRONTEND)

    async def _embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.relay is not None
        await openai_embeddings(self.relay, scope, receive, send)

    async def _gemini(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """`models/{model}:generateContent | :streamGenerateContent | :countTokens`; False
        when the path is none of them (the router answers 404)."""
        assert self.relay is not None
        r = gemini_route(scope["path"])
        if r is None or scope["method"] != "POST":
            return False
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        key = next((v for k, v in query if k == "key"), None)
        if key is not None:  # out of the URL before anything can log it
            query = [(k, v) for k, v in query if k != "key"]
            scope["query_string"] = urlencode(query).encode("latin-1")
            headers = [h for h in scope["headers"] if h[0] != b"x-goog-api-key"]
            scope["headers"] = [*headers, (b"x-goog-api-key", key.encode("latin-1"))]
        try:
            scope["path_params"] = route_payload(r, dict(query))
        except GatewayError as err:
            status, body = GEMINI_FRONTEND.render_error(err)
            await send_json(send, status, body)
            return True
        if r.method == "countTokens":
            await count_tokens(self.relay, scope, receive, send, GEMINI_FRONTEND)
            return True
        if r.method in EMBED_METHODS:
            await gemini_embeddings(self.relay, scope, receive, send, r.model, r.method)
            return True
        await self.relay.serve(GEMINI_FRONTEND, scope, receive, send)
        return True

    # ----------------------------------------------------------------------------------------

    async def startup(self) -> None:
        s = self.settings
        # The o200k tokenizer, loaded while the database and vendors are set up, before the
        # first request: a stream cut before its usage or a token count needs it, and where its
        # table must be compiled that takes ~0.3 s of CPU holding the GIL, a stall no request
        # should see. A vocabulary that fails its check fails the start, not a count (billed
        # as bytes).
        tokenizer_built = asyncio.ensure_future(asyncio.to_thread(tokenizer.load))
        engine = create_engine(s.database_url)
        if not await schema_is_current(engine) and not await create_if_new(engine):
            await migrate_in_child(s.database_url)
        keys = KeyStore(engine, s.key_prefix)
        keys.start()
        catalog = self._catalog or Catalog.load(s.catalog_path)
        emulator = None
        vendors = registry(catalog.upstreams)
        keys_env = [v.api_key() for v in vendors.values()]
        keys_env += [os.environ.get(d.api_key_env) or None for d in catalog.deployments]
        if any(s.is_emulated(k) for k in keys_env) and not s.emulator_url:
            emulator = await EmbeddedEmulator.start(s.emulator_port)
            log.warning("vendor emulator listening on %s (local only)", emulator.url)
        self.emulator_url = emulator.url if emulator else s.emulator_url
        timeouts = {name: catalog.timeouts_for(name, s.timeouts()) for name in vendors}
        upstreams = Upstreams(s, vendors, self.emulator_url, catalog.deployments, timeouts)
        watch_deployments(
            lambda: [d for pool in upstreams.pools.values() for d in pool.deployments]
        )
        secret = s.secret_key.get_secret_value() if s.secret_key else None
        states = DeploymentStates(engine, upstreams.pools, upstreams=upstreams, keys=KeyBox(secret))
        await states.start()
        billing = BillingEngine(s, engine, catalog)
        await billing.start()
        seed = s.receipt_key.get_secret_value() if s.receipt_key else None
        previous = s.receipt_key_previous.get_secret_value() if s.receipt_key_previous else None
        receipts = await load_signer(seed, engine, previous)
        compaction_keys = compaction.install(receipts.derive_secrets(b"compaction"))
        meter = BillingMeter(billing, receipts, always_receipt=s.receipts == "always")
        self.relay = Relay(s, catalog, upstreams, keys, meter)
        self._billing = billing
        batches, batch_routes = batch_service(self.relay, PROXY)
        batches.start()
        # Closed in this order: no new batch lines, no new upstream traffic, then the writer
        # flushes, then the DB, then the emulator (upstream connections to it are closed by then).
        self._resources = [batches, upstreams, states, keys, billing, engine, self.relay.reasoning]
        self._resources.append(compaction_keys)
        self._resources += [emulator] if emulator else []
        # Operator and low-balance alerts (console); stopped first, with the upstreams.
        alerts = AlertWatcher(s, engine, billing.prices, upstreams.snapshots)
        alerts.start()
        self._resources.insert(0, alerts)
        for vendor in sorted(upstreams.emulated):
            log.warning(
                "vendor %s has no API key: served by the built-in EMULATOR (not the real API)",
                vendor,
            )
        routes: list[Any] = [
            Route("/healthz", _health),
            Route("/readyz", self._ready),
            Route("/metrics", self._metrics),
            # Claude Code checks its base URL is reachable with a HEAD at every start.
            Route("/api/proxy", _reachable, methods=["HEAD"]),
            Route(PROXY, _reachable, methods=["HEAD"]),
            Route(PROXY + "/models", self._models),
            Route(PROXY + "/models/{model_id:path}", self._models),
            Route("/api/proxy/v1beta/models", self._gemini_models),
            Route("/api/proxy/v1beta/models/{model_id:path}", self._gemini_models),
            *batch_routes,
            *receipt_routes(self.relay, PROXY),
            Route(WELL_KNOWN_PATH, lambda _: JSONResponse(receipts.public_document())),
            *compatibility_routes(),
            *quote_routes(
                self.relay,
                {
                    "messages": ANTHROPIC_FRONTEND,
                    "chat/completions": OPENAI_FRONTEND,
                    "responses": RESPONSES_FRONTEND,
                },
                {"gemini": GEMINI_FRONTEND},
            ),
            account_route(billing, keys),
            *admin_routes(keys, billing, settings=s, upstreams=upstreams, states=states),
        ]
        relay = self.relay

        def pages() -> list[BaseRoute]:
            """jinja2, the templates and the page modules: ~3 MB a gateway that only serves
            its API never needs."""
            from tokenrelay.server.web import web_routes

            return web_routes(relay, states)

        self._pages = pages
        self._other = Starlette(
            routes=routes,
            exception_handlers={HTTPException: self._http_error, Exception: self._server_error},
            middleware=[Middleware(SecurityHeaders, brand=self.brand)],
        )
        await tokenizer_built

    async def shutdown(self) -> None:
        if self.relay is not None:  # cancelled streams end and settle before billing closes
            await self.relay.drained(timeout_s=10.0)
        for resource in self._resources:
            close = getattr(resource, "close", None) or getattr(resource, "dispose", None)
            if close is not None:
                await close()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                if self.freeze_heap_after_startup:
                    freeze_heap()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _ready(self, request: Request) -> Response:
        """Ready to serve: the database answers, Redis too when configured, and every vendor
        the catalog routes to has an upstream."""
        assert self.relay is not None and self._billing is not None
        checks: dict[str, Any] = {}
        try:
            await self._billing.ping()
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"failing: {type(exc).__name__}"
        if self.settings.redis_url:
            try:
                await self._billing.ping_redis()
                checks["redis"] = "ok"
            except Exception as exc:
                checks["redis"] = f"failing: {type(exc).__name__}"
        endpoints = self.relay.upstreams.endpoints
        used = {e.vendor for e in self.relay.catalog.entries() if not e.retired}
        # A vendor without a key is unavailable (its models answer 503), and said so here;
        # the gateway is ready while it serves any vendor at all.
        checks["vendors"] = {
            v: ("emulated" if endpoints[v].emulated else "ok")
            if v in endpoints
            else "unavailable: no API key"
            for v in sorted(used)
        }
        served = any(v != "unavailable: no API key" for v in checks["vendors"].values())
        ok = served and all(v == "ok" for k, v in checks.items() if k != "vendors")
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks},
            status_code=200 if ok else 503,
        )

    async def _metrics(self, request: Request) -> Response:
        """Prometheus metrics, for a scrape that sends the metrics (or admin) token as a
        bearer: they show revenue by model, tokens and deployment names, none of which a
        customer may see."""
        s = self.settings
        tokens = [t.get_secret_value().encode() for t in (s.metrics_token, s.admin_token) if t]
        if not tokens:
            return JSONResponse(
                {"error": "metrics are off: set TOKENRELAY_METRICS_TOKEN and scrape with it"},
                status_code=404,
            )
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        given = presented.strip().encode()
        # Every token compared (no early exit): the time taken says nothing of which matched.
        matched = [hmac.compare_digest(given, t) for t in tokens]
        if scheme.lower() != "bearer" or not any(matched):
            return JSONResponse(
                {"error": "send the metrics token: Authorization: Bearer <token>"},
                status_code=401,
                headers={"www-authenticate": "Bearer"},
            )
        return await metrics_endpoint(request)

    async def _models(self, request: Request) -> Response:
        assert self.relay is not None
        return await list_models(self.relay, request)

    async def _gemini_models(self, request: Request) -> Response:
        assert self.relay is not None
        return await list_gemini_models(self.relay, request)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        status, headers, path = exc.status_code, dict(exc.headers or {}), request.url.path
        # The hot-path routes never reach the router: another method on them lands here as 404.
        allowed = sorted(m for m, p in self._routes if p == path)
        if status == 404 and allowed:
            status, headers["allow"] = 405, ", ".join(allowed)
        if status == 405:
            message = f"method {request.method} not allowed on {path}"
        elif status == 404:
            message = f"no route for {request.method} {path}"
        else:
            message = exc.detail
        if wants_html(request):  # a browser gets a page in the site's look
            text = {404: f"There is no page at {path}.", 405: "That page cannot do this."}
            return error_page(self.brand, status, text.get(status, message), headers)
        return error_response(request, status, message, headers)

    async def _server_error(self, request: Request, exc: Exception) -> Response:
        # The traceback goes to the log (Starlette logs it), never to the client.
        if wants_html(request):
            return error_page(self.brand, 500, "The error is logged; please try again shortly.")
        return error_response(request, 500, "internal server error")


_PROXY_ERROR_KINDS: dict[int, ErrorKind] = {404: "not_found", 405: "invalid_request"}


def error_response(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    """`status` as JSON in the error shape the path's clients parse (both SDKs raise their own
    NotFoundError etc. from it)."""
    path = request.url.path
    if path.startswith("/api/proxy/v1beta/") or (path.startswith(GEMINI_PREFIXES) and ":" in path):
        body = gemini_status_body(status, message)
    elif path.startswith("/api/proxy/"):
        anthropic = "anthropic-version" in request.headers or "/messages" in path
        frontend = ANTHROPIC_FRONTEND if anthropic else OPENAI_FRONTEND
        kind = _PROXY_ERROR_KINDS.get(status, "api_error")
        code = {404: "not_found", 405: "method_not_allowed"}.get(status)
        _, body = frontend.render_error(GatewayError(kind, message, status, code=code))
    else:  # the admin API's shape
        error_type = {404: "not_found_error", 405: "invalid_request_error"}.get(status, "api_error")
        body = {"error": {"type": error_type, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _reachable(request: Request) -> Response:
    return Response(status_code=200)


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "version": __version__})


def freeze_heap() -> None:
    """Keep what startup built (modules, catalog, engines: most of the heap) out of the
    cyclic garbage collector, and collect the young generation less often. With 1000 live
    streams the collector took ~15% of the gateway's CPU, most of it full collections
    re-scanning those objects; frozen, half of that (bench/: the streams phase)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    release_free_heap()


def release_free_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim): what startup
    freed stays mapped otherwise, ~2.3 MB of the idle RSS. Nothing where the C library has no
    such call (musl)."""
    import ctypes  # here only: ~0.3 MB of the process

    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None).malloc_trim(0)


def create_app(settings: Settings | None = None, catalog: Catalog | None = None) -> Gateway:
    return Gateway(settings or get_settings(), catalog)


async def not_found(send: Send) -> None:
    await send_json(send, 404, {"error": {"type": "not_found", "message": "Not found"}})
