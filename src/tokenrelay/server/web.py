"""The gateway's own web pages: the storefront (landing, pricing, docs), the customer portal
(sign-up, dashboard) and the operator console, served from the package (templates and vendored
static files)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute

from tokenrelay.admin.console import Console
from tokenrelay.portal.account_page import AccountPage
from tokenrelay.portal.docs_page import DocsPage
from tokenrelay.portal.routes import Portal
from tokenrelay.portal.storefront import Storefront

if TYPE_CHECKING:
    from tokenrelay.gateway.relay import Relay


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


def web_routes(relay: Relay) -> list[BaseRoute]:
    def models() -> list[dict[str, Any]]:
        return list(relay.catalog.to_openai_list(relay.upstreams.emulated)["data"])

    portal = Portal(relay.settings, relay.keys, relay.meter.engine, models)
    console = Console(portal, lambda: relay.active)
    storefront = Storefront(portal, lambda: vendor_status(relay))
    return [
        *storefront.routes(),
        *DocsPage(portal).routes(),
        *AccountPage(portal).routes(),
        *console.routes(),
        *portal.routes(),
    ]
