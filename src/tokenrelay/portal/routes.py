"""The customer portal: sign-up/in, password reset, dashboard, keys, credit (the storefront
pages: storefront.py, docs_page.py, account_page.py).

Every page that shows or changes an account reads the account id from the signed session
cookie, never from the request: key ids in forms are checked against that account. Every POST
carries the session's CSRF token. Keys appear in full once, in the response that created them.
Each concern lives in its own module; `Portal` puts them together and lists the routes.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from tokenrelay.portal.auth import AuthPages
from tokenrelay.portal.credit_forms import CreditForms
from tokenrelay.portal.key_forms import KeyForms
from tokenrelay.portal.web import HERE, plain

_plain = plain  # the operator console's name for it
FORM_URLS = (
    "/dashboard/keys",
    "/dashboard/redeem",
    "/dashboard/stripe",
    "/verify/resend",
    "/logout",
)

__all__ = ["Portal", "_plain"]


class Portal(AuthPages, KeyForms, CreditForms):
    def routes(self) -> list[BaseRoute]:
        s, form = self.signed_in, self.posted
        stripe_routes = (
            [
                Route("/dashboard/stripe", form(self.stripe_checkout), methods=["POST"]),
                Route("/stripe/webhook", self.stripe.webhook, methods=["POST"]),
            ]
            if self.stripe
            else []
        )
        return [
            *stripe_routes,
            Route("/signup", self.signup, methods=["GET", "POST"]),
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/reset", self.reset, methods=["GET", "POST"]),
            Route("/reset/confirm", self.reset_confirm, methods=["GET", "POST"]),
            Route("/verify", self.verify),
            Route("/verify/resend", form(self.resend_verification), methods=["POST"]),
            Route("/dashboard", s(self.dashboard)),
            Route("/dashboard/usage", s(self.usage_fragment)),
            Route("/dashboard/usage.csv", s(self.usage_csv)),
            Route("/dashboard/keys", form(self.create_key), methods=["POST"]),
            Route("/dashboard/keys/{key_id}/revoke", s(self.revoke_key), methods=["GET", "POST"]),
            Route("/dashboard/redeem", form(self.redeem_code), methods=["POST"]),
            # A form's URL opened (a bookmark, a reload after the redirect): the dashboard.
            *[Route(path, _to_dashboard, methods=["GET"]) for path in FORM_URLS],
            Mount("/static/portal", StaticFiles(directory=HERE / "static"), name="portal"),
        ]


async def _to_dashboard(request: Request) -> Response:
    return RedirectResponse("/dashboard", status_code=303)
