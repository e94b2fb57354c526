"""What every portal page shares: templates, the page renderer, forms with their CSRF check,
the signed-in guard and the plain-text answers of refused requests."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from tokenrelay.billing import policy
from tokenrelay.customers.accounts import AccountStore, mailbox_key
from tokenrelay.money import usd
from tokenrelay.portal import key_snippets
from tokenrelay.portal.brand import load_brand
from tokenrelay.portal.once import SpentTokens
from tokenrelay.portal.security import Session, Sessions
from tokenrelay.portal.signins import SignIns, describe, session_id
from tokenrelay.portal.throttle import Backoff, Quota, SignInGuard, client_ip, shared_store

if TYPE_CHECKING:
    from tokenrelay.billing.engine import BillingEngine
    from tokenrelay.customers.keys import KeyStore
    from tokenrelay.portal.stripe_pay import StripeTopUps
    from tokenrelay.settings import Settings

HERE = Path(__file__).parent
KIND = "customer"
PRE = "pre"  # the pre-session cookie that binds the CSRF token of sign-up and sign-in forms
EXPIRED = "the form expired; reload the page and try again"


# Every amount the portal shows has this many decimals: a request costing $0.000021 and a
# balance of $4.999979 read alike (whole cents would show most requests as $0.00). Exports
# (CSV, JSON) keep the exact nano-USD amounts.
PLACES = 6


def dollars(nano: int) -> str:
    """ "$1,234.500000", "-$0.500000": the one money format of the portal's pages, rounded
    half up to a micro-dollar, the sign before the currency as people write it."""
    step = 10 ** (9 - PLACES)
    micro = (abs(nano) + step // 2) // step
    whole, frac = divmod(micro, 10**PLACES)
    text = f"${whole:,}.{frac:0{PLACES}d}"
    return "-" + text if nano < 0 and micro else text


templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    enable_async=False,
)
templates.filters["usd"] = usd
templates.filters["dollars"] = dollars
templates.globals["key_snippets"] = key_snippets.snippets
templates.filters["device"] = describe
# Each billing reason code, as a customer would describe how the request ended.
templates.globals["billing_reasons"] = {str(r.outcome): r.when for r in policy.TABLE}
SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


class PortalBase:
    def __init__(
        self,
        settings: Settings,
        keys: KeyStore,
        billing: BillingEngine,
        models: Callable[[], list[dict[str, Any]]],
    ) -> None:
        self.settings = settings
        self.brand = load_brand(settings)
        self.keys = keys
        self.billing = billing
        self.db = billing.engine
        self.accounts = AccountStore(self.db)
        self.sessions = Sessions(settings)
        store = shared_store(settings)
        self.sign_in_guard = SignInGuard.of(store, "signin", settings)
        # Redemption codes have 100 random bits; guessing is slowed anyway, per account and IP.
        window = settings.login_window_s
        self.code_throttle = Backoff(store, "code", settings.login_attempts, window)
        self.signups_per_ip = Quota(store, "signup-ip", settings.signup_per_ip_hour, 3600)
        self.signups = Quota(store, "signup", settings.signup_per_hour, 3600)
        self.verification_mails = Quota(store, "verify-mail", 3, 3600)
        self.spent = SpentTokens(self.db)
        self.signins = SignIns(self.db)
        dotless = {d.strip().lower() for d in settings.signup_dotless_domains.split(",")}
        self.dotless_domains = frozenset(d for d in dotless if d)
        self.models = models
        self.stripe: StripeTopUps | None = None
        if settings.stripe_secret_key is not None:
            from tokenrelay.portal.stripe_pay import StripeTopUps

            self.stripe = StripeTopUps(settings, billing)

    def mailbox_key(self, email: str) -> str:
        strip_plus = self.settings.signup_plus_tags == "strip"
        return mailbox_key(email, strip_plus, self.dotless_domains)

    async def session(self, request: Request, kind: str) -> Session | None:
        """The signed-in session of this cookie, unless it was signed out (on any replica)."""
        session = self.sessions.read(request, kind)
        if session is None:
            return None
        if kind == KIND:  # a customer's sign-in is its row: one query, gone once ended
            return session if await self.signins.active(session.subject, session.nonce) else None
        return None if await self.spent.spent("session", session.nonce) else session

    async def start_session(self, response: Response, request: Request, account: Any) -> None:
        """Sign the customer in (the cookie) and list the sign-in on the account page."""
        nonce = self.sessions.start(response, request, KIND, account.id, account.password_tag)
        user_agent = request.headers.get("user-agent", "")
        await self.signins.add(account.id, nonce, user_agent, client_ip(request))

    async def end_session(self, response: Response, session: Session, kind: str) -> None:
        """Sign out: the cookie goes, and the sign-in's row (a customer's) or its nonce is used
        up for as long as it could live."""
        if kind == KIND:
            await self.signins.end(session.subject, session_id(session.nonce))
        else:
            await self.spent.spend("session", session.nonce, self.settings.session_ttl_s)
        self.sessions.end(response, kind)

    async def visitor(self, request: Request) -> tuple[Session, Any] | None:
        """The signed-in customer's session and account, or None (signed out, the account
        disabled, or its password changed since this sign-in)."""
        session = await self.session(request, KIND)
        account = await self.accounts.get(session.subject) if session else None
        if (
            session is None
            or account is None
            or account.disabled
            or session.tag != account.password_tag
        ):
            return None
        return session, account

    async def once(self, account_id: str, form: dict[str, str]) -> bool:
        """Whether this form (its `once` token) is sent for the first time: a reload, a double
        click or a back-and-resend creates no second key and moves no money twice."""
        token = form.get("once", "")
        return bool(token) and await self.spent.spend("form", f"{account_id}:{token}", 86400)

    def page(self, request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        session = ctx.pop("session", None) or self.pre_session(request)
        body = templates.get_template(name).render(
            csrf=self.sessions.csrf_token(session),
            # Forms that create keys or move money send it back; it is used up once.
            once=secrets.token_urlsafe(16),
            brand=self.brand,
            signup_open=self.settings.signup != "off",
            **ctx,
        )
        response = HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)
        if session.subject == "" and request.cookies.get("tr_" + PRE) != session.nonce:
            response.set_cookie(
                "tr_" + PRE, session.nonce, httponly=True, samesite="lax", max_age=3600
            )
        return response

    def pre_session(self, request: Request) -> Session:
        nonce = request.cookies.get("tr_" + PRE) or secrets.token_urlsafe(16)
        return Session("", nonce[:64])

    async def form(self, request: Request, session: Session) -> dict[str, str] | None:
        """The form's fields, or None when its CSRF token does not match the session."""
        try:
            form = await request.form(max_files=0, max_fields=50)
        except Exception:
            return None
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if not self.sessions.csrf_ok(session, fields.get("csrf")):
            return None
        return fields

    def signed_in(
        self, handler: Callable[[Request, Session, Any], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            found = await self.visitor(request)
            if found is None:
                if request.method == "GET":
                    return RedirectResponse("/login", status_code=303)
                return plain(401, "sign in first")
            return await handler(request, *found)

        return endpoint

    def posted(
        self, handler: Callable[[Request, Session, Any, dict[str, str]], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A signed-in form's endpoint: the handler gets the form's fields once its CSRF token
        matches the session (a stale or foreign form: 403)."""

        async def checked(request: Request, session: Session, account: Any) -> Response:
            form = await self.form(request, session)
            if form is None:
                return plain(403, EXPIRED)
            return await handler(request, session, account, form)

        return self.signed_in(checked)


def field(name: str, label: str, kind: str, autocomplete: str, value: str = "") -> dict[str, Any]:
    # A password is never written back into a form.
    return {
        "name": name,
        "label": label,
        "type": kind,
        "autocomplete": autocomplete,
        "required": True,
        "value": "" if kind == "password" else value,
    }


def plain(status: int, message: str) -> Response:
    return Response(message + "\n", status_code=status, media_type="text/plain")
