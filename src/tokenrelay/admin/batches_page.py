"""The console's batches: the latest of every customer (or of one, or in one status), with
their lines' counts, what they cost so far and the hold still held. Read only: any operator
role sees it."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tokenrelay.admin.console import Shell, View
from tokenrelay.portal import queries

SHOWN = 100


class BatchPages:
    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self.actions = shell.actions

    async def page(self, v: View) -> Response:
        q = v.request.query_params
        status = q.get("status", "")
        account = q.get("account", "")[:40]  # an account id: one customer's batches
        if status not in queries.BATCH_STATUSES:
            status = ""
        billing = self.actions._billing()
        await billing.writer.flush()  # this process's settled lines are in the DB
        rows = await queries.batch_rows(
            self.actions.engine,
            account or None,
            status=status or None,
            limit=SHOWN,
            held_states=queries.batch_holds(billing),
        )
        return self.shell.render(
            v,
            "console_batches.html",
            rows=rows,
            chosen=status,
            account=account,
            statuses=queries.BATCH_STATUSES,
            shown=SHOWN,
        )

    def routes(self) -> list[BaseRoute]:
        return [Route("/admin/batches", self.shell.signed_in(self.page))]
