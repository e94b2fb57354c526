"""The gateway's own web pages: the storefront (landing, pricing, docs), the customer portal
(sign-up, dashboard) and the operator console, served from the package (templates and vendored
static files)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute

from tokenrelay.admin.actions import OperatorActions
from tokenrelay.admin.console import Shell, SignIn
from tokenrelay.admin.pages import Pages
from tokenrelay.portal.account_page import AccountPage
from tokenrelay.portal.docs_page import DocsPage
from tokenrelay.portal.routes import Portal
from tokenrelay.portal.storefront import Storefront

if TYPE_CHECKING:
    from tokenrelay.gateway.relay import Relay
    from tokenrelay.upstreams.calls import Upstreams


def deployment_snapshots(upstreams: Upstreams) -> list[dict[str, Any]]:
    """Every deployment's state in this process (the console's and the alerts' view)."""
    now = time.monotonic()
    return [d.snapshot(now) for pool in upstreams.pools.values() for d in pool.deployments]


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
        return list(relay.meter.engine.prices.listing(relay.upstreams.emulated)["data"])

    portal = Portal(relay.settings, relay.keys, relay.meter.engine, models)
    shell = Shell(relay.settings, OperatorActions(portal.db, relay.keys, relay.meter.engine))
    pages = Pages(shell, lambda: relay.active, lambda: deployment_snapshots(relay.upstreams))
    storefront = Storefront(portal, lambda: vendor_status(relay))
    return [
        *storefront.routes(),
        *DocsPage(portal).routes(),
        *AccountPage(portal).routes(),
        *SignIn(shell).routes(),
        *pages.routes(),
        *portal.routes(),
    ]
