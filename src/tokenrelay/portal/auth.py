"""Sign-up, sign-in, sign-out and password reset."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tokenrelay.customers.accounts import SignupError, check_sign_up
from tokenrelay.money import parse_nano
from tokenrelay.portal import mail
from tokenrelay.portal.security import Session
from tokenrelay.portal.throttle import client_ip
from tokenrelay.portal.topups import RedeemError, redeem
from tokenrelay.portal.web import EXPIRED, KIND, PortalBase, field, plain
from tokenrelay.store.async_core import AsyncEngine
from tokenrelay.store.tables import signup_blocks

log = logging.getLogger("tokenrelay.portal")


class SignupTooMany(SignupError):
    """Over the per-address or the global sign-up quota."""


class SignupBlocked(SignupError):
    """An operator blocked sign-ups from this address (the console's sign-ups per IP)."""


async def signup_blocked(engine: AsyncEngine, ip: str) -> bool:
    async with engine.connect() as conn:
        found = await conn.scalar(select(signup_blocks.c.ip).where(signup_blocks.c.ip == ip[:64]))
    return found is not None


class AuthPages(PortalBase):
    async def throttled(self, request: Request, name: str) -> float | None:
        """Seconds to wait before another sign-in attempt for `name` from this client."""
        return await self.sign_in_guard.wait(client_ip(request), name)

    async def sign_in_result(self, request: Request, name: str, ok: bool) -> None:
        await self.sign_in_guard.result(client_ip(request), name, ok)

    def _signup_fields(self, email: str = "") -> list[dict[str, Any]]:
        fields = [
            field("email", "Email", "email", "email", email),
            field("password", "Password (at least 10 characters)", "password", "new-password"),
        ]
        if self.settings.signup == "invite":
            fields.append(field("code", "Invitation code", "text", "off"))
        return fields

    async def signup(self, request: Request) -> Response:
        if self.settings.signup == "off":
            return plain(404, "sign-up is closed")
        ctx: dict[str, Any] = {
            "heading": "Create your account",
            "action": "/signup",
            "submit": "Sign up",
        }
        links = [{"href": "/login", "text": "Have an account? Sign in"}]
        if request.method == "GET":
            return self.page(
                request, "auth_form.html", fields=self._signup_fields(), links=links, **ctx
            )
        pre = self.pre_session(request)
        form = await self.form(request, pre)
        if form is None:
            return plain(403, EXPIRED)
        email, password = form.get("email", ""), form.get("password", "")
        code = form.get("code", "").strip()
        ip = client_ip(request)
        try:
            if self.settings.signup == "invite" and not code:
                raise SignupError("sign-up needs an invitation code")
            check_sign_up(email, password)  # a typo does not count against the quotas
            if await signup_blocked(self.db, ip):
                raise SignupBlocked("Sign-up from this address is blocked; contact support.")
            if not (await self.signups_per_ip.take(ip) and await self.signups.take()):
                raise SignupTooMany("Too many new accounts from here just now; try again later.")
            account = await self.accounts.sign_up(email, password, mailbox=self.mailbox_key, ip=ip)
            if code:
                try:
                    await redeem(self.billing, account.id, code)
                except RedeemError as exc:
                    # Invite-only: no account without a valid code (it has no keys, no
                    # ledger rows yet). Open sign-up keeps the account and says why.
                    if self.settings.signup == "invite":
                        await self.accounts.delete_unused(account.id)
                        raise SignupError(f"invitation code: {exc}") from None
                    code = ""
                    notice = True
                else:
                    notice = False
            else:
                notice = False
        except SignupError as exc:
            return self.page(
                request,
                "auth_form.html",
                429
                if isinstance(exc, SignupTooMany)
                else 403
                if isinstance(exc, SignupBlocked)
                else 400,
                fields=self._signup_fields(email),
                links=links,
                error=str(exc),
                **ctx,
            )
        await self.send_verification(account.id, account.email or "")
        target = "/dashboard?notice=code" if notice else "/dashboard"
        response = RedirectResponse(target, status_code=303)
        await self.start_session(response, request, account)
        log.info("account %s signed up", account.id)
        return response

    async def login(self, request: Request) -> Response:
        fields = [
            field("email", "Email", "email", "email"),
            field("password", "Password", "password", "current-password"),
        ]
        ctx: dict[str, Any] = {"heading": "Sign in", "action": "/login", "submit": "Sign in"}
        links = [{"href": "/reset", "text": "Forgot your password?"}]
        if self.settings.signup != "off":
            links.append({"href": "/signup", "text": "New here? Get your API key"})
        if request.method == "GET":
            return self.page(request, "auth_form.html", fields=fields, links=links, **ctx)
        form = await self.form(request, self.pre_session(request))
        if form is None:
            return plain(403, EXPIRED)
        email = form.get("email", "").strip().lower()[:320]
        wait = await self.throttled(request, f"email:{email}")
        if wait is not None:
            refused = self.page(
                request,
                "auth_form.html",
                429,
                fields=fields,
                links=links,
                error="Too many failed sign-ins; try again in a few minutes.",
                **ctx,
            )
            refused.headers["retry-after"] = str(int(wait) + 1)
            return refused
        account = await self.accounts.authenticate(email, form.get("password", ""))
        if account is None:
            await self.sign_in_result(request, f"email:{email}", False)
            return self.page(
                request,
                "auth_form.html",
                401,
                fields=fields,
                links=links,
                error="Wrong email or password.",
                **ctx,
            )
        await self.sign_in_result(request, f"email:{email}", True)
        response = RedirectResponse("/dashboard", status_code=303)
        await self.start_session(response, request, account)
        return response

    async def logout(self, request: Request) -> Response:
        session = await self.session(request, KIND)
        if session is None:
            return RedirectResponse("/", status_code=303)  # signed out already
        if await self.form(request, session) is None:
            return plain(403, EXPIRED)
        response = RedirectResponse("/", status_code=303)
        await self.end_session(response, session, KIND)
        return response

    # ------------------------------------------------------------------ email verification

    async def send_verification(self, account_id: str, email: str) -> None:
        token = self.sessions.verify_token(account_id, email)
        link = f"{self.settings.public_base()}/verify?t={token}"
        await mail.send_verification(self.settings, email, link)

    async def verify(self, request: Request) -> Response:
        """The link in the verification mail: the address is confirmed, the starting credit
        (if the operator gives one) credited once, by its idempotency key."""
        subject = self.sessions.verify_subject(request.query_params.get("t", ""))
        account = await self.accounts.get(subject[0]) if subject else None
        if subject is None or account is None or account.email != subject[1]:
            return plain(
                400, "this confirmation link is invalid or has expired; sign in to get another"
            )
        await self.accounts.mark_verified(account.id, subject[1])
        if self.settings.signup_credit_usd > 0:
            nano = parse_nano(self.settings.signup_credit_usd)  # exact: checked at start
            await self.billing.credit_account(
                account.id, nano, "sign-up credit", f"signup:{account.id}"
            )
        log.info("account %s verified its email", account.id)
        return RedirectResponse("/dashboard?notice=verified", status_code=303)

    async def resend_verification(
        self, request: Request, session: Session, account: Any, form: dict[str, str]
    ) -> Response:
        if account.email_verified or not account.email:
            return RedirectResponse("/dashboard", status_code=303)
        if not await self.verification_mails.take(account.id):
            return RedirectResponse("/dashboard?notice=wait", status_code=303)
        await self.send_verification(account.id, account.email)
        return RedirectResponse("/dashboard?notice=sent", status_code=303)

    async def reset(self, request: Request) -> Response:
        ctx: dict[str, Any] = {
            "heading": "Reset your password",
            "action": "/reset",
            "submit": "Send link",
        }
        fields = [field("email", "Email", "email", "email")]
        if request.method == "GET":
            return self.page(request, "auth_form.html", fields=fields, links=[], **ctx)
        form = await self.form(request, self.pre_session(request))
        if form is None:
            return plain(403, EXPIRED)
        account = await self.accounts.by_email(form.get("email", ""))
        if account is not None and account.email:
            token = self.sessions.reset_token(account.id, account.password_tag)
            link = f"{self.settings.public_base()}/reset/confirm?t={token}"
            await mail.send_reset(self.settings, account.email, link, self.brand.site_name)
        # The same answer whether or not the email has an account.
        return self.page(
            request,
            "auth_form.html",
            fields=fields,
            links=[],
            message="If the address has an account, a reset link is on its way.",
            **ctx,
        )

    async def reset_confirm(self, request: Request) -> Response:
        token = request.query_params.get("t", "")
        subject = self.sessions.reset_subject(token)
        account = await self.accounts.get(subject[0]) if subject else None
        if subject is None or account is None or account.password_tag != subject[1]:
            return plain(400, "this reset link is invalid or has expired; ask for a new one")
        ctx: dict[str, Any] = {
            "heading": "Choose a new password",
            "action": f"/reset/confirm?t={token}",
            "submit": "Set password",
        }
        fields = [field("password", "New password", "password", "new-password")]
        if request.method == "GET":
            return self.page(request, "auth_form.html", fields=fields, links=[], **ctx)
        form = await self.form(request, self.pre_session(request))
        if form is None:
            return plain(403, EXPIRED)
        try:
            await self.accounts.set_password(account.id, form.get("password", ""))
        except SignupError as exc:
            return self.page(
                request, "auth_form.html", 400, fields=fields, links=[], error=str(exc), **ctx
            )
        # A new password ends every sign-in (the old password may be what leaked).
        await self.signins.end_all(account.id)
        fresh = await self.accounts.get(account.id)
        response = RedirectResponse("/dashboard", status_code=303)
        await self.start_session(response, request, fresh or account)
        return response
