"""The ASGI application: proxy routes on raw ASGI (hot path), everything else on Starlette.

The lifespan opens what the gateway needs for its whole life — database (migrated at start),
key cache, catalog, vendor connection pools — and mounts the vendor emulator for vendors that
have no key.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from tokenrelay import __version__
from tokenrelay.admin import account_route, admin_routes
from tokenrelay.asgi import Receive, Scope, Send, send_json
from tokenrelay.auth import KeyStore
from tokenrelay.billing.engine import BillingEngine
from tokenrelay.billing.meter import BillingMeter
from tokenrelay.catalog import Catalog
from tokenrelay.frontends.anthropic import ANTHROPIC_FRONTEND
from tokenrelay.frontends.openai import OPENAI_FRONTEND
from tokenrelay.model_routes import count_tokens, list_models
from tokenrelay.relay import Relay
from tokenrelay.settings import Settings, get_settings
from tokenrelay.store.db import create_engine, migrate_in_child, schema_is_current
from tokenrelay.upstream import Upstreams
from tokenrelay.web import web_routes

log = logging.getLogger("tokenrelay")

PROXY = "/api/proxy/v1"
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


class Gateway:
    """Top-level ASGI callable. Exact-path dict lookup for the proxy routes keeps the hot path
    free of a router; the rest goes to a Starlette app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.relay: Relay | None = None
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", PROXY + "/messages"): self._messages,
            ("POST", PROXY + "/chat/completions"): self._chat,
            ("POST", PROXY + "/messages/count_tokens"): self._count_tokens,
        }
        self._other: Starlette | None = None
        self._resources: list[Any] = []
        # Set by `tokenrelay serve` (the process is the gateway's alone, unlike a test's).
        self.freeze_heap_after_startup = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            handler = self._routes.get((scope["method"], scope["path"]))
            if handler is not None:
                await handler(scope, receive, send)
                return
            assert self._other is not None
            await self._other(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            assert self._other is not None
            await self._other(scope, receive, send)

    async def _messages(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.relay is not None
        await self.relay.serve(ANTHROPIC_FRONTEND, scope, receive, send)

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.relay is not None
        await self.relay.serve(OPENAI_FRONTEND, scope, receive, send)

    async def _count_tokens(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.relay is not None
        await count_tokens(self.relay, scope, receive, send)

    # ----------------------------------------------------------------------------------------

    async def startup(self) -> None:
        s = self.settings
        engine = create_engine(s.database_url)
        if not await schema_is_current(engine):
            await migrate_in_child(s.database_url)
        keys = KeyStore(engine, s.key_prefix)
        keys.start()
        catalog = Catalog.load(s.catalog_path)
        emulator_base = None
        if s.emulate != "none":
            emulator_base = s.emulator_url or f"http://127.0.0.1:{s.port}/emulator"
        upstreams = Upstreams(s, emulator_base)
        billing = BillingEngine(s, engine, catalog)
        await billing.start()
        self.relay = Relay(s, catalog, upstreams, keys, BillingMeter(billing))
        # Closed in this order: no new upstream traffic, then the writer flushes, then the DB.
        self._resources = [upstreams, keys, billing, engine]
        for vendor in sorted(upstreams.emulated):
            log.warning(
                "vendor %s has no API key: served by the built-in EMULATOR (not the real API)",
                vendor,
            )
        routes: list[Any] = [
            Route("/healthz", _health),
            Route(PROXY + "/models", self._models),
            Route(PROXY + "/models/{model_id:path}", self._models),
            account_route(billing, keys),
            *admin_routes(keys, billing, settings=s),
            *web_routes(self),
        ]
        if upstreams.emulated and not s.emulator_url:
            from tokenrelay.emulator.app import create_app as create_emulator

            routes.append(Mount("/emulator", app=create_emulator()))
        self._other = Starlette(routes=routes)

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

    async def _models(self, request: Request) -> Response:
        assert self.relay is not None
        return await list_models(self.relay, request)


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


def create_app(settings: Settings | None = None) -> Gateway:
    return Gateway(settings or get_settings())


async def not_found(send: Send) -> None:
    await send_json(send, 404, {"error": {"type": "not_found", "message": "Not found"}})
