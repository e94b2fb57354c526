"""The operator console at /admin: operators sign in with their own email and password
(`tokenrelay admin create-user`), never with the shared admin API token. Credit adjustments
and code batches are written to the audit log with the operator and the reason."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from tokenrelay.admin.actions import ActionError, Actor, NotFound, OperatorActions
from tokenrelay.customers.accounts import AdminUsers
from tokenrelay.money import MoneyError, parse_nano
from tokenrelay.portal import queries
from tokenrelay.portal.routes import Portal
from tokenrelay.portal.security import Session

KIND = "operator"


class Console:
    def __init__(
        self, portal: Portal, actions: OperatorActions, inflight: Callable[[], int]
    ) -> None:
        self.portal = portal
        self.actions = actions
        self.users = AdminUsers(portal.db)
        self.inflight = inflight

    def signed_in(
        self, handler: Callable[[Request, Session], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = self.portal.sessions.read(request, KIND)
            if session is None:
                if request.method == "GET":
                    return RedirectResponse("/admin/login", status_code=303)
                return _plain(401, "sign in first")
            return await handler(request, session)

        return endpoint

    async def login(self, request: Request) -> Response:
        p = self.portal
        ctx: dict[str, Any] = {
            "heading": "Operator sign-in",
            "action": "/admin/login",
            "submit": "Sign in",
            "links": [],
            "fields": [
                {"name": "email", "label": "Email", "type": "email", "autocomplete": "email"},
                {
                    "name": "password",
                    "label": "Password",
                    "type": "password",
                    "autocomplete": "current-password",
                },
            ],
        }
        if request.method == "GET":
            return p.page(request, "auth_form.html", **ctx)
        form = await p.form(request, p.pre_session(request))
        if form is None:
            return _plain(403, "the form expired; reload the page and try again")
        email = form.get("email", "").strip().lower()[:320]
        if p.throttled(request, f"operator:{email}") is not None:
            return p.page(request, "auth_form.html", 429, error="Too many attempts.", **ctx)
        operator = await self.users.authenticate(email, form.get("password", ""))
        if operator is None:
            p.sign_in_result(request, f"operator:{email}", False)
            return p.page(request, "auth_form.html", 401, error="Wrong email or password.", **ctx)
        p.sign_in_result(request, f"operator:{email}", True)
        response = RedirectResponse("/admin", status_code=303)
        p.sessions.start(response, request, KIND, operator)
        return response

    async def logout(self, request: Request, session: Session) -> Response:
        if await self.portal.form(request, session) is None:
            return _plain(403, "the form expired; reload the page and try again")
        response = RedirectResponse("/admin/login", status_code=303)
        self.portal.sessions.end(response, KIND)
        return response

    async def overview(
        self,
        request: Request,
        session: Session,
        status: int = 200,
        **extra: Any,
    ) -> Response:
        p = self.portal
        await p.billing.writer.flush()
        return p.page(
            request,
            "console.html",
            status,
            session=session,
            operator=session.subject,
            inflight=self.inflight(),
            margins={by: await queries.margins(p.db, by) for by in ("vendor", "model", "day")},
            customers=await queries.customers(p.db),
            audit=await queries.audit(p.db),
            groups=await self.actions.price_groups(),
            **extra,
        )

    async def credit(self, request: Request, session: Session) -> Response:
        form = await self.portal.form(request, session)
        if form is None:
            return _plain(403, "the form expired; reload the page and try again")
        try:
            amount = parse_nano(form.get("amount", ""), signed=True, allow_zero=False)
        except MoneyError as exc:
            return await self.overview(request, session, 400, error=f"Amount: {exc}")
        return await self._act(
            request,
            session,
            self.actions.adjust_credit(
                Actor(session.subject),
                form.get("account_id", "").strip()[:40],
                amount,
                form.get("reason", ""),
            ),
        )

    async def codes(self, request: Request, session: Session) -> Response:
        form = await self.portal.form(request, session)
        if form is None:
            return _plain(403, "the form expired; reload the page and try again")
        try:
            count = int(form.get("count", ""))
            amount = parse_nano(form.get("amount", ""))
            expires = form.get("expires", "").strip()
            until = (
                dt.datetime.combine(dt.date.fromisoformat(expires), dt.time(), dt.UTC)
                + dt.timedelta(days=1)
                if expires
                else None
            )
            batch_id, codes = await self.actions.create_code_batch(
                Actor(session.subject), count, amount, until
            )
        except (ValueError, MoneyError) as exc:
            return await self.overview(request, session, 400, error=f"Codes: {exc}")
        return await self.overview(request, session, batch_id=batch_id, codes=codes)

    async def price_group(self, request: Request, session: Session) -> Response:
        """Create or re-price a group, and optionally move an account into it."""
        form = await self.portal.form(request, session)
        if form is None:
            return _plain(403, "the form expired; reload the page and try again")
        return await self._act(
            request,
            session,
            self.actions.save_price_group(
                Actor(session.subject),
                form.get("group", ""),
                form.get("multiplier", ""),
                form.get("account_id", "").strip()[:40] or None,
            ),
        )

    async def _act(self, request: Request, session: Session, action: Awaitable[Any]) -> Response:
        """Run an action; post/redirect/get on success, the page with the error otherwise."""
        try:
            await action
        except ActionError as exc:
            return await self.overview(request, session, 400, error=str(exc).capitalize())
        except NotFound:
            return await self.overview(request, session, 404, error="No such account.")
        return RedirectResponse("/admin", status_code=303)

    def routes(self) -> list[BaseRoute]:
        s = self.signed_in
        return [
            Route("/admin", s(self.overview)),
            Route("/admin/login", self.login, methods=["GET", "POST"]),
            Route("/admin/logout", s(self.logout), methods=["POST"]),
            Route("/admin/credit", s(self.credit), methods=["POST"]),
            Route("/admin/codes", s(self.codes), methods=["POST"]),
            Route("/admin/price-groups", s(self.price_group), methods=["POST"]),
        ]


def _plain(status: int, message: str) -> Response:
    return Response(message + "\n", status_code=status, media_type="text/plain")
