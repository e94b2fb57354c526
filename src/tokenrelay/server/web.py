"""The gateway's own web pages: the customer portal (landing, docs, sign-up, dashboard) and
the operator console, served from the package (templates and vendored static files)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute

from tokenrelay.admin.actions import OperatorActions
from tokenrelay.admin.console import Console
from tokenrelay.portal.routes import Portal

if TYPE_CHECKING:
    from tokenrelay.gateway.relay import Relay


def web_routes(relay: Relay) -> list[BaseRoute]:
    def models() -> list[dict[str, Any]]:
        return list(relay.catalog.to_openai_list(relay.upstreams.emulated)["data"])

    portal = Portal(relay.settings, relay.keys, relay.meter.engine, models)
    actions = OperatorActions(portal.db, relay.keys, relay.meter.engine)
    console = Console(portal, actions, lambda: relay.active)
    return [*console.routes(), *portal.routes()]
