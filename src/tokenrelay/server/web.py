"""The gateway's own web pages: the customer portal (landing, docs, sign-up, dashboard) and
the operator console, served from the package (templates and vendored static files)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute

from tokenrelay.admin.actions import OperatorActions
from tokenrelay.admin.console import Shell, SignIn
from tokenrelay.admin.pages import Pages
from tokenrelay.portal.routes import Portal

if TYPE_CHECKING:
    from tokenrelay.gateway.relay import Relay
    from tokenrelay.upstreams.calls import Upstreams


def deployment_snapshots(upstreams: Upstreams) -> list[dict[str, Any]]:
    """Every deployment's state in this process (the console's and the alerts' view)."""
    now = time.monotonic()
    return [d.snapshot(now) for pool in upstreams.pools.values() for d in pool.deployments]


def web_routes(relay: Relay) -> list[BaseRoute]:
    def models() -> list[dict[str, Any]]:
        return list(relay.meter.engine.prices.listing(relay.upstreams.emulated)["data"])

    def deployments() -> list[dict[str, Any]]:
        now = time.monotonic()
        return [
            d.snapshot(now) for pool in relay.upstreams.pools.values() for d in pool.deployments
        ]

    portal = Portal(relay.settings, relay.keys, relay.meter.engine, models)
    shell = Shell(relay.settings, OperatorActions(portal.db, relay.keys, relay.meter.engine))
    pages = Pages(shell, lambda: relay.active, lambda: deployment_snapshots(relay.upstreams))
    return [*SignIn(shell).routes(), *pages.routes(), *portal.routes()]
