"""Key forms: create a key (shown in full once), revoke one of the account's own keys."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tokenrelay.money import MoneyError, parse_nano
from tokenrelay.portal import key_snippets
from tokenrelay.portal.dashboard import DashboardPages
from tokenrelay.portal.security import Session
from tokenrelay.portal.web import EXPIRED, plain

log = logging.getLogger("tokenrelay.portal")


class KeyForms(DashboardPages):
    async def create_key(
        self, request: Request, session: Session, account: Any, form: dict[str, str]
    ) -> Response:
        if not account.email_verified:
            error = "Confirm your email address first: the link is in your inbox."
            return await self.dashboard(request, session, account, error=error, status=403)
        try:
            fields = _key_fields(form)
        except ValueError as exc:
            return await self.dashboard(request, session, account, error=str(exc), status=400)
        unknown = key_snippets.unknown_models(fields.get("allowed_models", []), self.models())
        if unknown:
            return await self.dashboard(request, session, account, error=unknown, status=400)
        if not await self.once(account.id, form):
            return RedirectResponse("/dashboard?notice=again", status_code=303)
        info, plaintext = await self.keys.create(account_id=account.id, **fields)
        log.info("account %s created key %s", account.id, info.id)
        response = RedirectResponse("/dashboard", status_code=303)
        self.sessions.flash(response, session, new_key=plaintext)
        return response

    async def revoke_key(self, request: Request, session: Session, account: Any) -> Response:
        """GET asks to confirm (a revoked key cannot come back); POST revokes."""
        key = await self.keys.get(request.path_params["key_id"])
        if key is None or key.account_id != account.id:  # someone else's key: not found
            return plain(404, "no such key")
        if request.method == "GET":
            return self.page(request, "confirm_revoke.html", session=session, key=key, account=True)
        form = await self.form(request, session)
        if form is None:
            return plain(403, EXPIRED)
        await self.keys.revoke(key.id)
        response = RedirectResponse("/dashboard", status_code=303)
        self.sessions.flash(response, session, message=f"Key {key.name} is revoked.")
        return response


def _key_fields(form: dict[str, str]) -> dict[str, Any]:
    name = form.get("name", "").strip()
    if not name or len(name) > 200:
        raise ValueError("Name: 1 to 200 characters.")
    out: dict[str, Any] = {"name": name}
    for field in ("rpm", "tpm"):
        raw = form.get(field, "").strip()
        if raw:
            if not raw.isdigit() or not 0 < int(raw) < 2**31:
                raise ValueError(f"{field}: a positive whole number.")
            out[field] = int(raw)
    models = [m.strip() for m in form.get("models", "").split(",") if m.strip()]
    if models:
        if len(models) > 100 or any(len(m) > 200 for m in models):
            raise ValueError("Allowed models: at most 100 model ids.")
        out["allowed_models"] = models
    for field, column in (("daily_cap", "daily_cap_nano"), ("monthly_cap", "monthly_cap_nano")):
        raw = form.get(field, "").strip()
        if raw:
            try:
                out[column] = parse_nano(raw)
            except MoneyError:
                raise ValueError(f"{field.replace('_', ' ')}: an amount in USD.") from None
    expires = form.get("expires", "").strip()
    if expires:
        try:
            day = dt.date.fromisoformat(expires)
        except ValueError:
            raise ValueError("Expires on: a date (YYYY-MM-DD).") from None
        out["expires_at"] = dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(days=1)
    return out
