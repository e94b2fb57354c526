"""The customer portal: landing, docs, sign-up/in, password reset, dashboard.

Every page that shows or changes an account reads the account id from the signed session
cookie, never from the request: key ids in forms are checked against that account. Every POST
carries the session's CSRF token. Keys appear in full once, in the response that created them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from tokenrelay.customers.accounts import AccountStore, SignupError
from tokenrelay.money import MoneyError, parse_nano, usd
from tokenrelay.portal import client_setup, mail, queries
from tokenrelay.portal.security import Session, Sessions, Throttle
from tokenrelay.portal.topups import RedeemError, redeem

if TYPE_CHECKING:
    from tokenrelay.billing.engine import BillingEngine
    from tokenrelay.customers.keys import KeyStore
    from tokenrelay.portal.stripe_pay import StripeTopUps
    from tokenrelay.settings import Settings

log = logging.getLogger("tokenrelay.portal")

HERE = Path(__file__).parent
KIND = "customer"
PRE = "pre"  # the pre-session cookie that binds the CSRF token of sign-up and sign-in forms
templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    enable_async=False,
)
templates.filters["usd"] = usd


def _cli_setups(base: str, examples: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Each coding CLI's setup as the tests run it (client_setup), for a model of the catalog."""
    key = "sk-aic-..."
    model = next((m for v, m in examples if v == "anthropic"), examples[0][1] if examples else "")
    other = next((m for v, m in examples if v not in ("anthropic", "openai")), model)

    def exports(env: dict[str, str]) -> str:
        return "\n".join(f"export {k}={v}" for k, v in env.items())

    return [
        {
            "name": "Claude Code",
            "api": "Anthropic Messages",
            "files": [],
            "shell": exports(client_setup.claude_code_env(base, key)) + f"\nclaude --model {model}",
        },
        {
            "name": "Codex CLI",
            "api": "OpenAI Responses",
            "files": [("~/.codex/config.toml", client_setup.codex_config(base, other))],
            "shell": exports(client_setup.codex_env(key))
            + '\ncodex exec "Explain this repository"',
        },
        {
            "name": "Gemini CLI",
            "api": "Gemini generateContent",
            "files": [("~/.gemini/settings.json", client_setup.gemini_settings_json())],
            "shell": exports(client_setup.gemini_env(base, key))
            + f'\ngemini -m {other} -p "Explain this repository"',
        },
    ]


def dollars(nano: int) -> str:
    """ "$1.25", "-$0.50": the sign before the currency, as people write it."""
    return f"-${usd(-nano)}" if nano < 0 else f"${usd(nano)}"


templates.filters["dollars"] = dollars
_SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


class Portal:
    def __init__(
        self,
        settings: Settings,
        keys: KeyStore,
        billing: BillingEngine,
        models: Callable[[], list[dict[str, Any]]],
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.billing = billing
        self.db = billing.engine
        self.accounts = AccountStore(self.db)
        self.sessions = Sessions(settings)
        self.throttle = Throttle(settings.login_attempts, settings.login_window_s)
        # Per client IP, looser: many customers may share one address (NAT, an office).
        self.ip_throttle = Throttle(settings.login_attempts * 10, settings.login_window_s)
        self.models = models
        self.stripe: StripeTopUps | None = None
        if settings.stripe_secret_key is not None:
            from tokenrelay.portal.stripe_pay import StripeTopUps

            self.stripe = StripeTopUps(settings, billing)

    # ------------------------------------------------------------------ plumbing

    def page(self, request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        session = ctx.pop("session", None) or self.pre_session(request)
        body = templates.get_template(name).render(
            csrf=self.sessions.csrf_token(session),
            signup_open=self.settings.signup != "off",
            **ctx,
        )
        response = HTMLResponse(body, status_code=status, headers=_SECURITY_HEADERS)
        if session.subject == "" and request.cookies.get("tr_" + PRE) != session.nonce:
            response.set_cookie(
                "tr_" + PRE, session.nonce, httponly=True, samesite="lax", max_age=3600
            )
        return response

    def throttled(self, request: Request, name: str) -> float | None:
        """Seconds to wait before another sign-in attempt for `name` from this client."""
        ip = request.client.host if request.client else ""
        waits = [self.throttle.blocked(name), self.ip_throttle.blocked(ip)]
        return max((w for w in waits if w is not None), default=None)

    def sign_in_result(self, request: Request, name: str, ok: bool) -> None:
        ip = request.client.host if request.client else ""
        if ok:
            self.throttle.succeeded(name)
        else:
            self.throttle.failed(name)
            self.ip_throttle.failed(ip)

    def pre_session(self, request: Request) -> Session:
        import secrets

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
            session = self.sessions.read(request, KIND)
            account = await self.accounts.get(session.subject) if session else None
            if (
                session is None
                or account is None
                or account.disabled
                or session.tag != account.password_tag
            ):
                if request.method == "GET":
                    return RedirectResponse("/login", status_code=303)
                return _plain(401, "sign in first")
            return await handler(request, session, account)

        return endpoint

    # ------------------------------------------------------------------ public pages

    async def landing(self, request: Request) -> Response:
        session = self.sessions.read(request, KIND)
        return self.page(request, "landing.html", account=session is not None)

    async def docs(self, request: Request) -> Response:
        models = self.models()
        examples: list[tuple[str, str]] = []
        for m in models:
            if m.get("vendor") not in {v for v, _ in examples}:
                examples.append((m.get("vendor", ""), m["id"]))
        session = self.sessions.read(request, KIND)
        base = str(request.base_url).rstrip("/")
        return self.page(
            request,
            "docs.html",
            base=base,
            models=models,
            examples=examples,
            clis=_cli_setups(base, examples),
            account=session is not None,
        )

    # ------------------------------------------------------------------ sign-up, sign-in

    def _signup_fields(self, email: str = "") -> list[dict[str, Any]]:
        fields = [
            _field("email", "Email", "email", "email", email),
            _field("password", "Password (at least 10 characters)", "password", "new-password"),
        ]
        if self.settings.signup == "invite":
            fields.append(_field("code", "Invitation code", "text", "off"))
        return fields

    async def signup(self, request: Request) -> Response:
        if self.settings.signup == "off":
            return _plain(404, "sign-up is closed")
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
            return _plain(403, "the form expired; reload the page and try again")
        email, password = form.get("email", ""), form.get("password", "")
        code = form.get("code", "").strip()
        try:
            if self.settings.signup == "invite" and not code:
                raise SignupError("sign-up needs an invitation code")
            account = await self.accounts.sign_up(email, password)
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
                400,
                fields=self._signup_fields(email),
                links=links,
                error=str(exc),
                **ctx,
            )
        if self.settings.signup_credit_usd > 0:
            nano = int(self.settings.signup_credit_usd * 10**9)
            await self.billing.credit_account(
                account.id, nano, "sign-up credit", f"signup:{account.id}"
            )
        target = "/dashboard?notice=code" if notice else "/dashboard"
        response = RedirectResponse(target, status_code=303)
        self.sessions.start(response, request, KIND, account.id, account.password_tag)
        log.info("account %s signed up", account.id)
        return response

    async def login(self, request: Request) -> Response:
        fields = [
            _field("email", "Email", "email", "email"),
            _field("password", "Password", "password", "current-password"),
        ]
        ctx: dict[str, Any] = {"heading": "Sign in", "action": "/login", "submit": "Sign in"}
        links = [{"href": "/reset", "text": "Forgot your password?"}]
        if self.settings.signup != "off":
            links.append({"href": "/signup", "text": "New here? Get your API key"})
        if request.method == "GET":
            return self.page(request, "auth_form.html", fields=fields, links=links, **ctx)
        form = await self.form(request, self.pre_session(request))
        if form is None:
            return _plain(403, "the form expired; reload the page and try again")
        email = form.get("email", "").strip().lower()[:320]
        wait = self.throttled(request, f"email:{email}")
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
            self.sign_in_result(request, f"email:{email}", False)
            return self.page(
                request,
                "auth_form.html",
                401,
                fields=fields,
                links=links,
                error="Wrong email or password.",
                **ctx,
            )
        self.sign_in_result(request, f"email:{email}", True)
        response = RedirectResponse("/dashboard", status_code=303)
        self.sessions.start(response, request, KIND, account.id, account.password_tag)
        return response

    async def logout(self, request: Request) -> Response:
        session = self.sessions.read(request, KIND)
        form = await self.form(request, session) if session else None
        if form is None:
            return _plain(403, "the form expired; reload the page and try again")
        response = RedirectResponse("/", status_code=303)
        self.sessions.end(response, KIND)
        return response

    async def reset(self, request: Request) -> Response:
        ctx: dict[str, Any] = {
            "heading": "Reset your password",
            "action": "/reset",
            "submit": "Send link",
        }
        fields = [_field("email", "Email", "email", "email")]
        if request.method == "GET":
            return self.page(request, "auth_form.html", fields=fields, links=[], **ctx)
        form = await self.form(request, self.pre_session(request))
        if form is None:
            return _plain(403, "the form expired; reload the page and try again")
        account = await self.accounts.by_email(form.get("email", ""))
        if account is not None and account.email:
            token = self.sessions.reset_token(account.id, account.password_tag)
            link = f"{str(request.base_url).rstrip('/')}/reset/confirm?t={token}"
            await mail.send_reset(self.settings, account.email, link)
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
            return _plain(400, "this reset link is invalid or has expired; ask for a new one")
        ctx: dict[str, Any] = {
            "heading": "Choose a new password",
            "action": f"/reset/confirm?t={token}",
            "submit": "Set password",
        }
        fields = [_field("password", "New password", "password", "new-password")]
        if request.method == "GET":
            return self.page(request, "auth_form.html", fields=fields, links=[], **ctx)
        form = await self.form(request, self.pre_session(request))
        if form is None:
            return _plain(403, "the form expired; reload the page and try again")
        try:
            await self.accounts.set_password(account.id, form.get("password", ""))
        except SignupError as exc:
            return self.page(
                request, "auth_form.html", 400, fields=fields, links=[], error=str(exc), **ctx
            )
        fresh = await self.accounts.get(account.id)
        response = RedirectResponse("/dashboard", status_code=303)
        tag = fresh.password_tag if fresh else ""
        self.sessions.start(response, request, KIND, account.id, tag)
        return response

    # ------------------------------------------------------------------ dashboard

    def _filter(self, request: Request, account_id: str) -> queries.UsageFilter:
        q = request.query_params
        return queries.UsageFilter(
            account_id, (q.get("model") or None), (q.get("key") or None), None
        )

    async def _usage_ctx(self, request: Request, account: Any) -> dict[str, Any]:
        await self.billing.writer.flush()  # this process's settled requests are in the DB
        f = self._filter(request, account.id)
        before = _cursor(request)
        rows, cursor = await queries.usage_page(self.db, f, before)
        for r in rows:
            r["cost_usd"] = usd(int(r["cost_nano"]))
        next_cursor = None
        if cursor is not None:
            params = {"model": f.model or "", "key": f.key_id or ""}
            params |= {"at": cursor[0].isoformat(), "rid": cursor[1]}
            next_cursor = urlencode(params)
        return {
            "rows": rows,
            "next_cursor": next_cursor,
            "filter_model": f.model,
            "filter_key": f.key_id,
        }

    async def dashboard(
        self,
        request: Request,
        session: Session,
        account: Any,
        *,
        new_key: str | None = None,
        message: str | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        usage_ctx = await self._usage_ctx(request, account)
        keys = await self.keys.list_for_account(account.id)
        daily = await queries.daily_spend(self.db, account.id)
        models = await queries.per_model(self.db, account.id)
        for m in models:
            m["cost_usd"] = usd(int(m["cost"] or 0))
        fresh = await self.accounts.get(account.id)
        if request.query_params.get("notice") == "paid":
            message = message or "Payment received: the credit appears once Stripe confirms it."
        if request.query_params.get("notice") == "code":
            error = error or "Your account is ready, but the code could not be redeemed."
        return self.page(
            request,
            "dashboard.html",
            status,
            session=session,
            account=fresh,
            balance=dollars(fresh.balance_nano if fresh else 0),
            spent30=usd(sum(c for _, c in daily)),
            chart_days=list(_last_days(30)),
            chart_costs=[dict(daily).get(d, 0) / 1e9 for d in _last_days(30)],
            keys=keys,
            key_names={k.id: k.name for k in keys},
            models=models,
            new_key=new_key,
            stripe_amounts=self.stripe.amounts if self.stripe else [],
            message=message,
            error=error,
            **usage_ctx,
        )

    async def usage_fragment(self, request: Request, session: Session, account: Any) -> Response:
        keys = await self.keys.list_for_account(account.id)
        ctx = await self._usage_ctx(request, account)
        body = templates.get_template("usage_rows.html").render(
            key_names={k.id: k.name for k in keys}, **ctx
        )
        return HTMLResponse(body, headers=_SECURITY_HEADERS)

    async def usage_csv(self, request: Request, session: Session, account: Any) -> Response:
        await self.billing.writer.flush()
        rows = await queries.usage_csv_rows(self.db, self._filter(request, account.id))
        out = io.StringIO()
        columns = [
            "request_id", "started_at", "key_id", "model", "vendor", "stream", "input_tokens",
            "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
            "status", "reason", "duration_ms",
        ]  # fmt: skip
        writer = csv.writer(out)
        writer.writerow([*columns, "cost_usd"])
        for r in rows:
            writer.writerow([_csv_safe(r[c]) for c in columns] + [usd(int(r["cost_nano"]))])
        return Response(
            out.getvalue(),
            media_type="text/csv",
            headers={
                "content-disposition": 'attachment; filename="usage.csv"',
                **_SECURITY_HEADERS,
            },
        )

    async def create_key(self, request: Request, session: Session, account: Any) -> Response:
        form = await self.form(request, session)
        if form is None:
            return _plain(403, "the form expired; reload the page and try again")
        try:
            fields = _key_fields(form)
        except ValueError as exc:
            return await self.dashboard(request, session, account, error=str(exc), status=400)
        info, plaintext = await self.keys.create(account_id=account.id, **fields)
        log.info("account %s created key %s", account.id, info.id)
        return await self.dashboard(request, session, account, new_key=plaintext)

    async def revoke_key(self, request: Request, session: Session, account: Any) -> Response:
        form = await self.form(request, session)
        if form is None:
            return _plain(403, "the form expired; reload the page and try again")
        key = await self.keys.get(request.path_params["key_id"])
        if key is None or key.account_id != account.id:  # someone else's key: not found
            return _plain(404, "no such key")
        await self.keys.revoke(key.id)
        return RedirectResponse("/dashboard", status_code=303)

    async def redeem_code(self, request: Request, session: Session, account: Any) -> Response:
        form = await self.form(request, session)
        if form is None:
            return _plain(403, "the form expired; reload the page and try again")
        try:
            amount = await redeem(self.billing, account.id, form.get("code", ""))
        except RedeemError as exc:
            return await self.dashboard(request, session, account, error=str(exc), status=400)
        return await self.dashboard(
            request, session, account, message=f"${usd(amount)} added to your balance."
        )

    async def stripe_checkout(self, request: Request, session: Session, account: Any) -> Response:
        form = await self.form(request, session)
        if form is None:
            return _plain(403, "the form expired; reload the page and try again")
        if self.stripe is None:
            return _plain(404, "card payments are not configured")
        raw = form.get("usd", "")
        try:
            url = await self.stripe.checkout_url(
                account.id, int(raw) if raw.isdigit() else -1, str(request.base_url).rstrip("/")
            )
        except ValueError as exc:
            return await self.dashboard(request, session, account, error=str(exc), status=400)
        except Exception as exc:  # Stripe unreachable or refusing: nothing was charged
            log.warning("stripe checkout failed: %s", type(exc).__name__)
            return await self.dashboard(
                request, session, account, error="Card payments are unavailable.", status=502
            )
        return RedirectResponse(url, status_code=303)

    def routes(self) -> list[BaseRoute]:
        s = self.signed_in
        stripe_routes = (
            [
                Route("/dashboard/stripe", s(self.stripe_checkout), methods=["POST"]),
                Route("/stripe/webhook", self.stripe.webhook, methods=["POST"]),
            ]
            if self.stripe
            else []
        )
        return [
            *stripe_routes,
            Route("/", self.landing),
            Route("/docs", self.docs),
            Route("/signup", self.signup, methods=["GET", "POST"]),
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/reset", self.reset, methods=["GET", "POST"]),
            Route("/reset/confirm", self.reset_confirm, methods=["GET", "POST"]),
            Route("/dashboard", s(self.dashboard)),
            Route("/dashboard/usage", s(self.usage_fragment)),
            Route("/dashboard/usage.csv", s(self.usage_csv)),
            Route("/dashboard/keys", s(self.create_key), methods=["POST"]),
            Route("/dashboard/keys/{key_id}/revoke", s(self.revoke_key), methods=["POST"]),
            Route("/dashboard/redeem", s(self.redeem_code), methods=["POST"]),
            Mount("/static/portal", StaticFiles(directory=HERE / "static"), name="portal"),
        ]


def _field(name: str, label: str, kind: str, autocomplete: str, value: str = "") -> dict[str, Any]:
    # A password is never written back into a form.
    return {
        "name": name,
        "label": label,
        "type": kind,
        "autocomplete": autocomplete,
        "required": True,
        "value": "" if kind == "password" else value,
    }


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


def _last_days(n: int) -> list[str]:
    """The last `n` UTC days, oldest first: the chart shows days without spend as zero."""
    today = dt.datetime.now(dt.UTC).date()
    return [(today - dt.timedelta(days=i)).isoformat() for i in range(n - 1, -1, -1)]


def _cursor(request: Request) -> tuple[dt.datetime, str] | None:
    at, rid = request.query_params.get("at"), request.query_params.get("rid")
    if not at or not rid:
        return None
    try:
        when = dt.datetime.fromisoformat(at)
    except ValueError:
        return None
    # Stored naive (SQLite) or aware (PostgreSQL), UTC either way.
    return when.replace(tzinfo=None) if when.tzinfo else when, rid[:100]


def _csv_safe(value: Any) -> Any:
    """No spreadsheet formulas out of customer-controlled text."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def _plain(status: int, message: str) -> Response:
    return Response(message + "\n", status_code=status, media_type="text/plain")
