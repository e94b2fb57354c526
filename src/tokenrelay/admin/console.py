"""The operator console at /admin: sign-in (password, then TOTP once enrolled), server-side
operator sessions, roles, CSRF, and the page plumbing the console's pages (pages.py) share.

Operators sign in with their own email and password (`tokenrelay admin create-user`), never
with the shared admin API token. Every change goes through the operator service layer
(actions.py), which checks the operator's role again: a page that shows no button is not
what keeps a viewer from acting.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from tokenrelay.admin.actions import ActionError, Actor, Forbidden, NotFound, OperatorActions
from tokenrelay.admin.operators import ROLES, Operator, OperatorStore
from tokenrelay.customers.accounts import SignupError
from tokenrelay.money import usd
from tokenrelay.portal.brand import load_brand
from tokenrelay.portal.security import Session, Sessions
from tokenrelay.portal.throttle import SignInGuard, client_ip, shared_store
from tokenrelay.portal.web import dollars
from tokenrelay.settings import Settings

HERE = Path(__file__).parent
KIND = "operator"
PRE = "tr_oppre"  # binds the sign-in form's CSRF token before there is a session
HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
# The console's own templates first; `base.html` (the brand) comes from the portal.
templates = Environment(
    loader=ChoiceLoader(
        [FileSystemLoader(HERE / "templates"), FileSystemLoader(HERE.parent / "portal/templates")]
    ),
    autoescape=select_autoescape(["html"]),
)
templates.filters["dollars"] = dollars
templates.filters["usd"] = usd

EXPIRED = "the form expired; reload the page and try again"


@dataclass(frozen=True, slots=True)
class View:
    """A signed-in operator's page; drawn again after a form, with its error and status."""

    request: Request
    operator: Operator
    session: Session
    error: str | None = None
    status: int = 200


Handler = Callable[[View], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Post:
    """A console form post whose CSRF token matched, by a signed-in operator."""

    request: Request
    operator: Operator
    session: Session
    form: dict[str, str]

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])[:100]

    def field(self, name: str) -> str:
        return self.form.get(name, "")

    @property
    def actor(self) -> Actor:
        return Actor(self.operator.email, self.operator.role)

    @property
    def view(self) -> View:
        return View(self.request, self.operator, self.session)

    async def again(self, page: Handler, error: str, status: int) -> Response:
        return await page(View(self.request, self.operator, self.session, error, status))


class Shell:
    """What every console page needs: sessions, forms, rendering, the signed-in operator."""

    def __init__(self, settings: Settings, actions: OperatorActions) -> None:
        self.settings = settings
        self.actions = actions
        self.operators = OperatorStore(actions.engine)
        self.sessions = Sessions(settings)
        store = shared_store(settings)
        self.sign_in_guard = SignInGuard.of(store, "operator", settings)
        self.brand = load_brand(settings)

    def page(
        self,
        request: Request,
        name: str,
        status: int = 200,
        *,
        session: Session | None = None,
        **ctx: Any,
    ) -> HTMLResponse:
        pre = session or self._pre(request)
        body = templates.get_template(name).render(
            csrf=self.sessions.csrf_token(pre), path=request.url.path, brand=self.brand, **ctx
        )
        response = HTMLResponse(body, status_code=status, headers=HEADERS)
        if session is None and request.cookies.get(PRE) != pre.nonce:
            response.set_cookie(PRE, pre.nonce, httponly=True, samesite="strict", max_age=3600)
        return response

    def render(self, v: View, name: str, **ctx: Any) -> HTMLResponse:
        """A signed-in operator's page (with the error it is drawn again with, if any)."""
        return self.page(
            v.request, name, v.status, session=v.session, operator=v.operator, error=v.error, **ctx
        )

    def _pre(self, request: Request) -> Session:
        nonce = request.cookies.get(PRE) or secrets.token_urlsafe(16)
        return Session("", nonce[:64])

    async def form(self, request: Request, session: Session | None) -> dict[str, str] | None:
        """The form's fields, or None when its CSRF token does not match the session."""
        try:
            form = await request.form(max_files=0, max_fields=50, max_part_size=64 * 1024)
        except Exception:
            return None
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if not self.sessions.csrf_ok(session or self._pre(request), fields.get("csrf")):
            return None
        return fields

    def signed_in(self, handler: Handler, role: str = "viewer") -> Callable[[Request], Any]:
        """Only a live operator session (its row still there) with at least `role`."""

        async def endpoint(request: Request) -> Response:
            session = self.sessions.read(request, KIND)
            operator = (
                await self.operators.session_operator(session.subject, session.tag)
                if session and session.tag
                else None
            )
            if session is None or operator is None:
                if request.method == "GET":
                    return RedirectResponse("/admin/login", status_code=303)
                return plain(401, "sign in first")
            if not operator.can(role):
                return plain(403, f"{operator.role} operators may not do this")
            return await handler(View(request, operator, session))

        return endpoint

    def posting(
        self, handler: Callable[[Post], Awaitable[Response]], role: str
    ) -> Callable[[Request], Any]:
        """A form post: signed in with at least `role`, and the form's CSRF token matches."""

        async def with_form(v: View) -> Response:
            form = await self.form(v.request, v.session)
            if form is None:
                return plain(403, EXPIRED)
            return await handler(Post(v.request, v.operator, v.session, form))

        return self.signed_in(with_form, role)

    async def act(self, action: Awaitable[Any], done: str, page: Handler, post: Post) -> Response:
        """Run an action: post/redirect/get on success; the page again with the error."""
        try:
            await action
        except (ActionError, SignupError) as exc:
            return await post.again(page, _sentence(str(exc)), 400)
        except Forbidden as exc:
            return await post.again(page, _sentence(str(exc)), 403)
        except NotFound:
            return await post.again(page, "Not found.", 404)
        return RedirectResponse(done, status_code=303)


def plain(status: int, message: str) -> Response:
    return Response(message + "\n", status_code=status, media_type="text/plain", headers=HEADERS)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


class SignIn:
    """Sign-in, sign-out (here, everywhere), the operator list and two-factor enrolment."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self.ops = shell.operators

    def _login_page(self, request: Request, status: int = 200, **ctx: Any) -> Response:
        return self.shell.page(request, "console_login.html", status, **ctx)

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return self._login_page(request)
        form = await self.shell.form(request, None)
        if form is None:
            return plain(403, EXPIRED)
        email = form.get("email", "").strip().lower()[:320]
        ip = client_ip(request)
        wait = await self.shell.sign_in_guard.wait(ip, email)
        if wait is not None:
            refused = self._login_page(request, 429, error="Too many attempts.", email=email)
            refused.headers["retry-after"] = str(int(wait) + 1)
            return refused
        operator = await self.ops.authenticate(
            email, form.get("password", ""), form.get("code", "")
        )
        await self.shell.sign_in_guard.result(ip, email, operator is not None)
        if operator is None:
            return self._login_page(
                request, 401, error="Wrong email, password or one-time code.", email=email
            )
        response = RedirectResponse("/admin", status_code=303)
        ttl = self.shell.settings.session_ttl_s
        session_id = await self.ops.start_session(operator.email, ttl)
        self.shell.sessions.start(response, request, KIND, operator.email, session_id)
        return response

    async def logout(self, p: Post) -> Response:
        if p.field("everywhere"):
            await self.ops.end_all_sessions(p.operator.email)
        else:
            await self.ops.end_session(p.session.tag)
        response = RedirectResponse("/admin/login", status_code=303)
        self.shell.sessions.end(response, KIND)
        return response

    async def operators(self, v: View, **extra: Any) -> Response:
        return self.shell.render(
            v,
            "console_operators.html",
            operators=await self.ops.list(),
            roles=ROLES,
            changed=v.request.query_params.get("changed") == "1",
            **extra,
        )

    async def add_operator(self, p: Post) -> Response:
        create = self.ops.create(p.field("email"), p.field("password"), p.field("role"))
        return await self.shell.act(create, "/admin/operators", self.operators, p)

    async def remove_operator(self, p: Post) -> Response:
        email = p.field("email")
        if p.field("confirm") != "yes":  # cannot be undone: ask once more
            return await self.operators(p.view, confirm_remove=email)
        target = await self.ops.get(email)
        if target is None:
            return await p.again(self.operators, "Not found.", 404)
        if target.role == "owner" and await self.ops.owners() <= 1:
            return await p.again(self.operators, "The last owner cannot be removed.", 400)
        await self.ops.remove(email)
        await self.shell.actions.audit(p.actor, "operator_removed", None, None, email)
        return RedirectResponse("/admin/operators", status_code=303)

    async def change_password(self, p: Post) -> Response:
        """Your own password: the current one first; your other sessions end."""
        try:
            done = await self.ops.change_password(
                p.operator.email, p.field("current"), p.field("new"), p.session.tag
            )
        except SignupError as exc:
            return await p.again(self.operators, _sentence(f"new password: {exc}"), 400)
        if not done:
            return await p.again(self.operators, "The current password is wrong.", 400)
        await self.shell.actions.audit(p.actor, "password_changed", None, None, p.operator.email)
        return RedirectResponse("/admin/operators?changed=1", status_code=303)

    async def two_factor(self, v: View) -> Response:
        """GET: a new secret to scan; POST: the secret and a code from the app turn it on."""
        request, operator, session = v.request, v.operator, v.session
        if request.method == "GET":
            secret = self.ops.new_secret()
            return self.shell.page(
                request,
                "console_2fa.html",
                session=session,
                operator=operator,
                secret=secret,
                uri=self.ops.provisioning_uri(operator.email, secret),
            )
        form = await self.shell.form(request, session)
        if form is None:
            return plain(403, EXPIRED)
        secret = form.get("secret", "")[:64]
        if not await self.ops.enroll(operator.email, secret, form.get("code", "")):
            if not self.ops.valid_secret(secret):
                secret = self.ops.new_secret()  # a tampered form: start over with a new one
            return self.shell.page(
                request,
                "console_2fa.html",
                400,
                session=session,
                operator=operator,
                secret=secret,
                uri=self.ops.provisioning_uri(operator.email, secret),
                error="That code does not match; try the newest one your app shows.",
            )
        who = Actor(operator.email, operator.role)
        await self.shell.actions.audit(who, "two_factor_on", None, None, operator.email)
        return RedirectResponse("/admin/operators", status_code=303)

    def routes(self) -> list[BaseRoute]:
        s, post = self.shell.signed_in, self.shell.posting
        return [
            Route("/admin/login", self.login, methods=["GET", "POST"]),
            Route("/admin/logout", post(self.logout, "viewer"), methods=["POST"]),
            Route("/admin/operators", s(self.operators)),
            Route("/admin/operators", post(self.add_operator, "owner"), methods=["POST"]),
            Route("/admin/operators/remove", post(self.remove_operator, "owner"), methods=["POST"]),
            Route("/admin/password", post(self.change_password, "viewer"), methods=["POST"]),
            Route("/admin/two-factor", s(self.two_factor), methods=["GET", "POST"]),
            Mount("/static/console", StaticFiles(directory=HERE / "static"), name="console"),
        ]
