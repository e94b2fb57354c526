"""The console's upstream accounts: each vendor's deployments with their health summed over
every worker and replica, and an owner's changes — add, test with a live call, weight, region,
models, drain and restore, a new key — each through the operator service layer and in
service on every replica within a second, without a restart. A key is never shown back: the
last four characters, or the environment variable it is read from."""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tokenrelay.admin.console import Post, Shell, View
from tokenrelay.upstreams.deployment_state import health_sums


class UpstreamPages:
    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self.actions = shell.actions

    async def page(self, v: View, **extra: Any) -> Response:
        upstreams, states = self.actions._upstream()
        await states.report_health()  # this process's latest counts are in the sums
        sums = await health_sums(self.actions.engine)
        rows = await states.accounts()
        now = time.monotonic()
        vendors: dict[str, list[dict[str, Any]]] = {name: [] for name in sorted(upstreams.vendors)}
        for pool in upstreams.pools.values():
            for d in pool.deployments:
                snap = d.snapshot(now)
                row = rows.get(d.id)
                snap["key"] = _key_shown(row, d.endpoint.api_key, d.endpoint.emulated)
                snap["changed_by"] = row.updated_by if row is not None else None
                snap["added"] = row is not None and row.base_url is not None
                snap["all"] = sums.get(d.id)
                vendors.setdefault(d.vendor, []).append(snap)
        for row in rows.values():  # added, but not in service in this process
            if row.base_url is not None and upstreams.deployment(row.id) is None:
                vendors.setdefault(row.vendor, []).append(_not_in_service(row))
        return self.shell.render(
            v, "console_upstreams.html", vendors=vendors, encrypted=states.keys.configured, **extra
        )

    async def add(self, p: Post) -> Response:
        f = p.field
        action = self.actions.add_deployment(
            p.actor,
            f("vendor"),
            f("name"),
            f("base_url"),
            f("key"),
            f("weight") or "1",
            f("region"),
            f("models"),
        )
        return await self.shell.act(action, "/admin/upstreams", self.page, p)

    def _id(self, p: Post) -> str:
        return f"{p.param('vendor')}/{p.param('name')}"

    async def settings(self, p: Post) -> Response:
        action = self.actions.change_deployment(
            p.actor, self._id(p), p.field("weight"), p.field("region"), p.field("models")
        )
        return await self.shell.act(action, "/admin/upstreams", self.page, p)

    async def key(self, p: Post) -> Response:
        action = self.actions.rotate_deployment_key(p.actor, self._id(p), p.field("key"))
        return await self.shell.act(action, "/admin/upstreams", self.page, p)

    async def drain(self, p: Post) -> Response:
        drained = p.field("drained") == "yes"
        action = self.actions.set_deployment_drained(p.actor, self._id(p), drained)
        return await self.shell.act(action, "/admin/upstreams", self.page, p)

    async def test(self, p: Post) -> Response:
        """The result is shown on the page it was asked from (a live call, not a change)."""
        result: list[Any] = []

        async def run() -> None:
            result.append(await self.actions.test_deployment(p.actor, self._id(p)))

        done = await self.shell.act(run(), "", self.page, p)
        if not result:
            return done
        return await self.page(p.view, tested={"id": self._id(p), "probe": result[0]})

    def routes(self) -> list[BaseRoute]:
        s, p, post = self.shell.signed_in, self.shell.posting, ["POST"]
        one = "/admin/upstreams/{vendor}/{name}"
        return [
            Route("/admin/upstreams", s(self.page)),
            Route("/admin/upstreams", p(self.add, "owner"), methods=post),
            Route(one + "/settings", p(self.settings, "owner"), methods=post),
            Route(one + "/key", p(self.key, "owner"), methods=post),
            Route(one + "/drain", p(self.drain, "owner"), methods=post),
            Route(one + "/test", p(self.test, "owner"), methods=post),
        ]


def _key_shown(row: Any, key: str, emulated: bool) -> str:
    """How the console names a deployment's key: never the key itself."""
    if emulated:
        return "emulated"
    if row is not None and row.key_env:
        return f"env:{row.key_env}"
    return f"…{key[-4:]}" if len(key) >= 8 else "set"


def _not_in_service(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "vendor": row.vendor,
        "name": row.name,
        "base_url": row.base_url,
        "key": f"env:{row.key_env}" if row.key_env else f"…{row.key_last4}",
        "state": "not in service: its key cannot be read here",
        "weight": row.weight or 1,
        "region": row.region,
        "models": row.models,
        "added": True,
        "changed_by": row.updated_by,
        "all": None,
        "in_flight": 0,
        "served": 0,
        "failures": 0,
        "removed_reason": None,
    }
