"""The console's sign-ups per address: which addresses made the most accounts (a farm of free
sign-up credit shows here first), the accounts of one, and an owner's block, which the portal's
sign-up form checks (accounts already made stay; disable them on their pages)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tokenrelay.admin import reads
from tokenrelay.admin.console import Post, Shell, View


class SignupPages:
    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self.actions = shell.actions

    async def page(self, v: View) -> Response:
        db = self.actions.engine
        ip = v.request.query_params.get("ip", "")[:64]
        return self.shell.render(
            v,
            "console_signups.html",
            rows=await reads.signups_by_ip(db),
            ip=ip,
            accounts=await reads.accounts_from_ip(db, ip) if ip else [],
        )

    async def block(self, p: Post) -> Response:
        ip = p.field("ip")
        action: Any
        if p.field("blocked") == "no":
            action = self.actions.unblock_signups(p.actor, ip)
        else:
            action = self.actions.block_signups(p.actor, ip, p.field("reason"))
        return await self.shell.act(action, "/admin/signups", self.page, p)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/admin/signups", self.shell.signed_in(self.page)),
            Route("/admin/signups", self.shell.posting(self.block, "owner"), methods=["POST"]),
        ]
