"""Security headers on every response of the web pages and the admin/account API (not the
proxy's hot path, which never reaches this app).

A strict Content-Security-Policy: scripts and styles only from the package's own static files
(no inline script, no eval), no framing by any site (`frame-ancestors 'none'` and, for older
browsers, X-Frame-Options), no referrer beyond the origin, and HSTS when the public URL is
https (a plain-http deployment would lock itself out with it).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokenrelay.portal.brand import Brand


def policy(brand: Brand) -> str:
    images = "'self' data:"
    if brand.logo_url:  # the operator's logo may live on its own CDN
        parts = urlsplit(brand.logo_url)
        images += f" {parts.scheme}://{parts.netloc}"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {images}",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self' https://checkout.stripe.com",
            "frame-ancestors 'none'",
        ]
    )


def security_headers(brand: Brand) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-security-policy", policy(brand).encode()),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"strict-origin-when-cross-origin"),
        (b"cross-origin-opener-policy", b"same-origin"),
    ]
    if brand.https:
        headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
    return headers


class SecurityHeaders:
    """ASGI middleware: adds the headers to each response that does not set them itself."""

    def __init__(self, app: ASGIApp, brand: Brand) -> None:
        self.app = app
        self.headers = security_headers(brand)
        self.names = {name for name, _ in self.headers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                own = [h for h in message.get("headers", []) if h[0].lower() not in self.names]
                message["headers"] = own + self.headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
