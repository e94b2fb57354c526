"""The operator console at /admin: operators sign in with their own email and password
(`tokenrelay admin create-user`), never with the shared admin API token. Credit adjustments
and code batches are written to the audit log with the operator and the reason."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from tokenrelay.customers.accounts import AdminUsers
from tokenrelay.money import MoneyError, parse_nano
from tokenrelay.portal import queries
from tokenrelay.portal.routes import Portal, _plain
from tokenrelay.portal.security import Session
from tokenrelay.portal.topups import create_batch
from tokenrelay.store.tables import accounts, audit_log, price_groups

KIND = "operator"


class Console:
    def __init__(self, portal: Portal, inflight: Callable[[], int]) -> None:
        self.portal = portal
        self.users = AdminUsers(portal.db)
        self.inflight = inflight

    def signed_in(
        self, handler: Callable[[Request, Session], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = await self.portal.session(request, KIND)  # signed out: ended
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
        if await p.throttled(request, f"operator:{email}") is not None:
            return p.page(request, "auth_form.html", 429, error="Too many attempts.", **ctx)
        operator = await self.users.authenticate(email, form.get("password", ""))
        if operator is None:
            await p.sign_in_result(request, f"operator:{email}", False)
            return p.page(request, "auth_form.html", 401, error="Wrong email or password.", **ctx)
        await p.sign_in_result(request, f"operator:{email}", True)
        response = RedirectResponse("/admin", status_code=303)
        p.sessions.start(response, request, KIND, operator)
        return response

    async def logout(self, request: Request, session: Session) -> Response:
        if await self.portal.form(request, session) is None:
            return _plain(403, "the form expired; reload the page and try again")
        response = RedirectResponse("/admin/login", status_code=303)
        await self.portal.end_session(response, session, KIND)
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
        async with p.db.connect() as conn:
            groups = [
                {"name": n, "multiplier": Decimal(ppm) / 1_000_000}
                for n, ppm in await conn.execute(
                    select(price_groups.c.name, price_groups.c.multiplier_ppm)
                )
            ]
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
            groups=groups,
            **extra,
        )

    async def credit(self, request: Request, session: Session) -> Response:
        form = await self.portal.form(request, session)
        if form is None:
            return _plain(403, "the form expired; reload the page and try again")
        account_id = form.get("account_id", "").strip()[:40]
        reason = form.get("reason", "").strip()[:500]
        try:
            amount = parse_nano(form.get("amount", ""), signed=True, allow_zero=False)
        except MoneyError as exc:
            return await self.overview(request, session, 400, error=f"Amount: {exc}")
        if not reason:
            return await self.overview(request, session, 400, error="A reason is required.")
        if await self.portal.accounts.get(account_id) is None:
            return await self.overview(request, session, 404, error="No such account.")
        await self.portal.billing.credit_account(
            account_id, amount, f"{session.subject}: {reason}", kind="adjustment"
        )
        await self._audit(session.subject, "credit_adjustment", account_id, amount, reason)
        return RedirectResponse("/admin", status_code=303)

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
            batch_id, codes = await create_batch(self.portal.db, count, amount, until)
        except (ValueError, MoneyError) as exc:
            return await self.overview(request, session, 400, error=f"Codes: {exc}")
        await self._audit(session.subject, "code_batch", None, amount * count, batch_id)
        return await self.overview(request, session, batch_id=batch_id, codes=codes)

    async def price_group(self, request: Request, session: Session) -> Response:
        """Create or re-price a group, and optionally move an account into it."""
        form = await self.portal.form(request, session)
        if form is None:
            return _plain(403, "the form expired; reload the page and try again")
        name = form.get("group", "").strip()
        account_id = form.get("account_id", "").strip()[:40]
        try:
            multiplier = Decimal(form.get("multiplier", ""))
        except ArithmeticError:
            multiplier = Decimal(-1)
        ppm = multiplier * 1_000_000
        if not (0 < len(name) <= 64) or not ppm.is_finite() or ppm != int(ppm) or ppm < 1:
            return await self.overview(
                request, session, 400, error="Group: a name and a multiplier such as 1.25."
            )
        if account_id and await self.portal.accounts.get(account_id) is None:
            return await self.overview(request, session, 404, error="No such account.")
        async with self.portal.db.begin() as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            stmt = dialect.insert(price_groups).values(name=name, multiplier_ppm=int(ppm))
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["name"], set_={"multiplier_ppm": int(ppm)}
                )
            )
            if account_id:
                await conn.execute(
                    update(accounts).where(accounts.c.id == account_id).values(price_group=name)
                )
        await self._audit(
            session.subject, "price_group", account_id or None, None, f"{name} x{multiplier}"
        )
        return RedirectResponse("/admin", status_code=303)

    async def _audit(
        self, actor: str, action: str, account_id: str | None, amount: int | None, reason: str
    ) -> None:
        async with self.portal.db.begin() as conn:
            await conn.execute(
                insert(audit_log).values(
                    actor=actor,
                    action=action,
                    account_id=account_id,
                    amount_nano=amount,
                    reason=reason,
                    created_at=dt.datetime.now(dt.UTC),
                )
            )

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
