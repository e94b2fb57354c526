"""The gateway's own web pages: the storefront (landing, pricing, docs), the customer portal
(sign-up, dashboard) and the operator console, served from the package (templates and vendored
static files).

With TOKENRELAY_PUBLIC_URL set, a page asked for under any other Host is refused: links are
never built from the Host header, and refusing it also closes DNS rebinding and cache
poisoning on the pages that carry sessions. The API routes do not read Host at all."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tokenrelay.admin.actions import OperatorActions
from tokenrelay.admin.batches_page import BatchPages
from tokenrelay.admin.console import Shell, SignIn
from tokenrelay.admin.pages import Pages
from tokenrelay.admin.signups_page import SignupPages
from tokenrelay.admin.upstreams_page import UpstreamPages
from tokenrelay.portal.account_page import AccountPage
from tokenrelay.portal.docs_page import DocsPage
from tokenrelay.portal.routes import Portal
from tokenrelay.portal.storefront import Storefront

if TYPE_CHECKING:
    from tokenrelay.gateway.relay import Relay
    from tokenrelay.upstreams.deployment_state import DeploymentStates


def vendor_status(relay: Relay) -> dict[str, str]:
    """Each vendor's state as customers see it: no deployment names, no upstream detail."""
    now = time.monotonic()
    out: dict[str, str] = {}
    for name, pool in relay.upstreams.pools.items():
        if name in relay.upstreams.emulated:
            out[name] = "demo"
        elif any(d.state(now) == "healthy" for d in pool.deployments):
            out[name] = "operational"
        else:
            out[name] = "degraded"
    return out


def web_routes(relay: Relay, states: DeploymentStates | None = None) -> list[BaseRoute]:
    def models() -> list[dict[str, Any]]:
        return list(relay.meter.engine.prices.listing(relay.upstreams.emulated)["data"])

    portal = Portal(relay.settings, relay.keys, relay.meter.engine, models)
    actions = OperatorActions(
        portal.db, relay.keys, relay.meter.engine, upstreams=relay.upstreams, states=states
    )
    shell = Shell(relay.settings, actions)
    pages = Pages(shell, lambda: relay.active, relay.upstreams.snapshots)
    storefront = Storefront(portal, lambda: vendor_status(relay))
    routes: list[BaseRoute] = [
        *storefront.routes(),
        *DocsPage(portal).routes(),
        *AccountPage(portal).routes(),
        *SignIn(shell).routes(),
        *pages.routes(),
        *(UpstreamPages(shell).routes() if states is not None else []),
        *SignupPages(shell).routes(),
        *BatchPages(shell).routes(),
        *portal.routes(),
    ]
    if relay.settings.public_url:
        host = urlsplit(relay.settings.public_url).hostname or ""
        for route in routes:
            if isinstance(route, Route | Mount):
                route.app = _known_host(route.app, host)
    return routes


LOOPBACK = ("localhost", "127.0.0.1", "::1")


def _known_host(app: ASGIApp, host: str) -> ASGIApp:
    refused = PlainTextResponse(f"unknown host: this site is {host}\n", status_code=421)

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        asked = next((v for k, v in scope["headers"] if k == b"host"), b"").decode("latin-1")
        # The name only: a proxy may pass Host without the port (nginx's $host). Loopback
        # names are the machine itself (health checks, an operator on the host), never a
        # name a third party can point at it.
        if _hostname(asked) not in (host, *LOOPBACK):
            await refused(scope, receive, send)
            return
        await app(scope, receive, send)

    return guarded


def _hostname(host_header: str) -> str | None:
    try:
        return urlsplit("//" + host_header).hostname
    except ValueError:  # a malformed Host header names no site of ours
        return None
