"""The gateway's own web pages: the customer portal (landing, docs, sign-up, dashboard) and
the operator console, served from the package (templates and vendored static files).

With TOKENRELAY_PUBLIC_URL set, a page asked for under any other Host is refused: links are
never built from the Host header, and refusing it also closes DNS rebinding and cache
poisoning on the pages that carry sessions. The API routes do not read Host at all."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tokenrelay.admin.console import Console
from tokenrelay.portal.routes import Portal

if TYPE_CHECKING:
    from tokenrelay.gateway.relay import Relay


def web_routes(relay: Relay) -> list[BaseRoute]:
    def models() -> list[dict[str, Any]]:
        return list(relay.catalog.to_openai_list(relay.upstreams.emulated)["data"])

    portal = Portal(relay.settings, relay.keys, relay.meter.engine, models)
    console = Console(portal, lambda: relay.active)
    routes = [*console.routes(), *portal.routes()]
    if relay.settings.public_url:
        host = urlsplit(relay.settings.public_url).hostname or ""
        for route in routes:
            if isinstance(route, Route | Mount):
                route.app = _known_host(route.app, host)
    return routes


def _known_host(app: ASGIApp, host: str) -> ASGIApp:
    refused = PlainTextResponse(f"unknown host: this site is {host}\n", status_code=421)

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        asked = next((v for k, v in scope["headers"] if k == b"host"), b"").decode("latin-1")
        # The name only: a proxy may pass Host without the port (nginx's $host).
        if _hostname(asked) != host:
            await refused(scope, receive, send)
            return
        await app(scope, receive, send)

    return guarded


def _hostname(host_header: str) -> str | None:
    try:
        return urlsplit("//" + host_header).hostname
    except ValueError:  # a malformed Host header names no site of ours
        return None
