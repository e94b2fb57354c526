"""/account: the customer's account — password and sessions (the portal's auth logic), a
low-balance alert threshold, top-ups with printable receipts, export and deletion.

Deleting an account disables it and revokes its keys at once; the records of what it spent stay
(the operator's books need them). What happens to a remaining balance is said before the
customer confirms: it is not paid out automatically; the support address handles refunds.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from tokenrelay.customers.accounts import AccountStore, SignupError
from tokenrelay.money import MoneyError, parse_nano
from tokenrelay.portal.signins import session_id
from tokenrelay.portal.web import EXPIRED, KIND, plain
from tokenrelay.store.tables import accounts, api_keys, ledger

if TYPE_CHECKING:
    from tokenrelay.portal.routes import Portal
    from tokenrelay.portal.security import Session

TOPUPS = 200
# ?notice=… after a redirect.
NOTICES = {
    "password": ("message", "Password changed: every other sign-in has ended."),
    "ended": ("message", "That sign-in has ended."),
    "gone": ("message", "That sign-in had ended already."),
}


class AccountPage:
    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self.db = portal.db

    async def _topups(self, account_id: str, entry_id: int | None = None) -> list[dict[str, Any]]:
        """Money that came in (credits and positive adjustments), newest first."""
        c = ledger.c
        query = select(c.id, c.kind, c.amount_nano, c.note, c.created_at).where(
            c.account_id == account_id, c.amount_nano > 0, c.kind != "debit"
        )
        if entry_id is not None:
            query = query.where(c.id == entry_id)
        query = query.order_by(c.id.desc()).limit(TOPUPS)
        async with self.db.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def _alert(self, account_id: str) -> int | None:
        query = select(accounts.c.low_balance_nano).where(accounts.c.id == account_id)
        async with self.db.connect() as conn:
            value = (await conn.execute(query)).scalar()
        return int(value) if value is not None else None

    async def account(
        self,
        request: Request,
        session: Session,
        account: Any,
        *,
        message: str | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        kind, text = NOTICES.get(request.query_params.get("notice", ""), ("", ""))
        if kind == "message":
            message = message or text
        return self.portal.page(
            request,
            "account.html",
            status,
            session=session,
            account=account,
            alert_nano=await self._alert(account.id),
            topups=await self._topups(account.id),
            signins=await self.portal.signins.listing(account.id),
            this_signin=session_id(session.nonce),
            message=message,
            error=error,
        )

    async def change_password(self, request: Request, session: Session, account: Any) -> Response:
        """The current password, then the new one: every other sign-in ends, this one goes on."""
        form = await self.portal.form(request, session)
        if form is None:
            return plain(403, EXPIRED)
        name = f"password:{account.id}"
        wait = await self.portal.throttled(request, name)
        if wait is not None:
            refused = await self.account(
                request, session, account, status=429,
                error="Too many wrong passwords; try again in a few minutes.",
            )  # fmt: skip
            refused.headers["retry-after"] = str(int(wait) + 1)
            return refused
        current = await self.portal.accounts.authenticate(
            account.email or "", form.get("current", "")
        )
        await self.portal.sign_in_result(request, name, current is not None)
        if current is None or current.id != account.id:
            return await self.account(
                request, session, account, error="Your current password is not that.", status=400
            )
        try:
            await self.portal.accounts.set_password(account.id, form.get("new", ""))
        except SignupError as exc:
            return await self.account(request, session, account, error=str(exc), status=400)
        await self.portal.signins.end_all(account.id)
        fresh = await self.portal.accounts.get(account.id)
        response = RedirectResponse("/account?notice=password", status_code=303)
        await self.portal.start_session(response, request, fresh or account)
        return response

    async def end_signin(self, request: Request, session: Session, account: Any) -> Response:
        if await self.portal.form(request, session) is None:
            return plain(403, EXPIRED)
        which = request.path_params["sid"]
        if which == session_id(session.nonce):  # this browser's own: a plain sign-out
            response = RedirectResponse("/login", status_code=303)
            await self.portal.end_session(response, session, KIND)
            return response
        ended = await self.portal.signins.end(account.id, which)
        notice = "ended" if ended else "gone"
        return RedirectResponse(f"/account?notice={notice}#h-security", status_code=303)

    async def end_everywhere(self, request: Request, session: Session, account: Any) -> Response:
        if await self.portal.form(request, session) is None:
            return plain(403, EXPIRED)
        await self.portal.signins.end_all(account.id)
        response = RedirectResponse("/login", status_code=303)
        await self.portal.end_session(response, session, KIND)
        return response

    async def set_alert(self, request: Request, session: Session, account: Any) -> Response:
        form = await self.portal.form(request, session)
        if form is None:
            return Response("the form expired; reload the page and try again\n", 403)
        raw = form.get("threshold", "").strip()
        try:
            nano = parse_nano(raw) if raw else None
        except MoneyError:
            nano = -1
        if nano is not None and not 0 <= nano <= 10**15:
            return await self.account(
                request, session, account, error="Alert threshold: an amount in USD.", status=400
            )
        await AccountStore(self.db).set_low_balance(account.id, nano)
        said = "Low-balance alert off." if nano is None else "Low-balance alert saved."
        return await self.account(request, session, account, message=said)

    async def receipt(self, request: Request, session: Session, account: Any) -> Response:
        raw = request.path_params["entry_id"]
        rows = await self._topups(account.id, int(raw)) if raw.isdigit() else []
        if not rows:  # another account's entry, or a spend: not found
            return Response("no such receipt\n", 404, media_type="text/plain")
        return self.portal.page(
            request, "receipt.html", session=session, account=account, entry=rows[0]
        )

    async def export(self, request: Request, session: Session, account: Any) -> Response:
        """Everything the account holds, as JSON (keys by hint: their secrets are not kept)."""
        k = api_keys.c
        keys_q = select(k.id, k.name, k.key_hint, k.created_at, k.revoked_at).where(
            k.account_id == account.id
        )
        c = ledger.c
        ledger_q = (
            select(c.id, c.kind, c.amount_nano, c.note, c.created_at, c.request_id)
            .where(c.account_id == account.id)
            .order_by(c.id)
        )
        async with self.db.connect() as conn:
            keys = [dict(r._mapping) for r in await conn.execute(keys_q)]
            entries = [dict(r._mapping) for r in await conn.execute(ledger_q)]
        body = {
            "account": {
                "id": account.id,
                "email": account.email,
                "created_at": account.created_at,
                "balance_nano": account.balance_nano,
                "price_group": account.price_group,
            },
            "keys": keys,
            "ledger": entries,
            "sign_ins": [
                {k: v for k, v in row.items() if k != "id_hash"}
                for row in await self.portal.signins.listing(account.id)
            ],
            "usage_csv": f"{self.portal.brand.public_url}/dashboard/usage.csv",
        }
        return Response(
            json.dumps(body, default=_iso, indent=2),
            media_type="application/json",
            headers={
                "content-disposition": 'attachment; filename="account.json"',
                "cache-control": "no-store",
            },
        )

    async def delete(self, request: Request, session: Session, account: Any) -> Response:
        form = await self.portal.form(request, session)
        if form is None:
            return Response("the form expired; reload the page and try again\n", 403)
        if form.get("confirm", "").strip().lower() != (account.email or "").lower():
            return await self.account(
                request,
                session,
                account,
                error="To delete the account, type its email address exactly.",
                status=400,
            )
        for key in await self.portal.keys.list_for_account(account.id):
            if not key.revoked:
                await self.portal.keys.revoke(key.id)
        stmt = update(accounts).where(accounts.c.id == account.id)
        async with self.db.begin() as conn:
            await conn.execute(stmt.values(disabled_at=dt.datetime.now(dt.UTC)))
        await self.portal.signins.end_all(account.id)
        response = RedirectResponse("/?notice=deleted", status_code=303)
        self.portal.sessions.end(response, KIND)
        return response

    def routes(self) -> list[BaseRoute]:
        s = self.portal.signed_in
        return [
            Route("/account", s(self.account)),
            Route("/account/alert", s(self.set_alert), methods=["POST"]),
            Route("/account/password", s(self.change_password), methods=["POST"]),
            Route("/account/sessions/{sid}/end", s(self.end_signin), methods=["POST"]),
            Route("/account/sessions/end-all", s(self.end_everywhere), methods=["POST"]),
            Route("/account/receipts/{entry_id}", s(self.receipt)),
            Route("/account/export.json", s(self.export)),
            Route("/account/delete", s(self.delete), methods=["POST"]),
        ]


def _iso(value: object) -> str:
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return aware.isoformat()
    return str(value)
