"""The public storefront: landing page, /pricing, the favicon, the brand's stylesheet and the
HTML error pages browsers get (API paths keep their JSON errors, server/app.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from tokenrelay.portal import prices
from tokenrelay.portal.brand import Brand

if TYPE_CHECKING:
    from tokenrelay.portal.routes import Portal

HERE = Path(__file__).parent
FAVICON = (HERE / "static" / "favicon.svg").read_bytes()
# The client APIs and coding CLIs served: the landing page, --help and the README name these.
CLIENT_APIS = (
    ("Anthropic Messages", "/api/proxy/v1/messages", "anthropic SDKs, Claude Code"),
    ("OpenAI Chat Completions", "/api/proxy/v1/chat/completions", "openai SDKs, most tools"),
    ("OpenAI Responses", "/api/proxy/v1/responses", "openai SDKs, Codex CLI"),
    ("Gemini generateContent", "/api/proxy/v1beta/models/…", "google-genai SDKs, Gemini CLI"),
)
CODING_CLIS = ("Claude Code", "Codex CLI", "Gemini CLI")
_ERROR_TITLES = {
    400: "Bad request",
    403: "Forbidden",
    404: "Page not found",
    405: "Method not allowed",
    500: "Something went wrong",
}


class Storefront:
    def __init__(self, portal: Portal, vendor_status: Callable[[], dict[str, str]]) -> None:
        self.portal = portal
        self.vendor_status = vendor_status

    async def _visitor(self, request: Request) -> tuple[Any, int]:
        """The signed-in account (or None) and the multiplier of its price group."""
        found = await self.portal.visitor(request)
        account = found[1] if found else None
        group = account.price_group if account is not None else None
        return account, await prices.multiplier_ppm(self.portal.db, group)

    def _catalog(self, ppm: int) -> dict[str, Any]:
        rows = prices.price_rows(self.portal.models(), ppm)
        status = self.vendor_status()
        return {
            "prices": rows,
            "vendors": prices.vendors_of(rows),
            "vendor_status": [
                (name, state, prices.STATUS_TEXT[state])
                for v, name in prices.vendors_of(rows)
                for state in [status.get(v, "unavailable")]
            ],
            "own_price": ppm != 1_000_000,
        }

    async def landing(self, request: Request) -> Response:
        account, ppm = await self._visitor(request)
        deleted = request.query_params.get("notice") == "deleted"
        return self.portal.page(
            request,
            "landing.html",
            message="Your account is deleted and its keys revoked." if deleted else None,
            account=account is not None,
            apis=CLIENT_APIS,
            clis=CODING_CLIS,
            signed_in_price=account is not None,
            **self._catalog(ppm),
        )

    async def pricing(self, request: Request) -> Response:
        account, ppm = await self._visitor(request)
        return self.portal.page(
            request,
            "pricing.html",
            account=account is not None,
            signed_in_price=account is not None,
            **self._catalog(ppm),
        )

    async def favicon(self, request: Request) -> Response:
        return Response(
            FAVICON, media_type="image/svg+xml", headers={"cache-control": "max-age=86400"}
        )

    async def brand_css(self, request: Request) -> Response:
        return Response(
            self.portal.brand.css(), media_type="text/css", headers={"cache-control": "max-age=300"}
        )

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.landing),
            Route("/pricing", self.pricing),
            Route("/favicon.ico", self.favicon),
            Route("/brand.css", self.brand_css),
        ]


def wants_html(request: Request) -> bool:
    """A browser asking for a page: not an API path, and HTML accepted."""
    path = request.url.path
    if path.startswith(("/api/", "/admin/v1", "/v1/", "/v1beta/")):
        return False
    return "text/html" in request.headers.get("accept", "")


def error_page(
    brand: Brand, status: int, message: str, headers: dict[str, str] | None = None
) -> HTMLResponse:
    from tokenrelay.portal.web import templates

    body = templates.get_template("error.html").render(
        brand=brand,
        status=status,
        title=_ERROR_TITLES.get(status, "Error"),
        message=message,
        signup_open=False,
    )
    return HTMLResponse(body, status_code=status, headers=headers)
