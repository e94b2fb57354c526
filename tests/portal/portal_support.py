"""Helpers for the portal tests: a browser-like client (cookies, CSRF token from the page), and
an operator signed in to the console."""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import Any
from urllib.parse import urlsplit

import httpx

from gateway_support import RunningGateway
from mail_outbox import last_link
from tokenrelay.admin.operators import OperatorStore
from tokenrelay.store.db import create_engine

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
ONCE = re.compile(r'name="once" value="([^"]+)"')
NEW_KEY = re.compile(r'data-testid="new-key">([^<]+)<')
BALANCE = re.compile(r'data-testid="balance">\$([0-9.,]+)<')


class Browser:
    def __init__(self, base: str) -> None:
        self.base = base
        # Each browser is another customer at an address of its own, as the gateway sees it
        # through the trusted proxy in front (127.0.0.1): per-address throttles apply per test.
        address = (
            f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
        )
        self.http = httpx.Client(
            base_url=base,
            timeout=30,
            follow_redirects=True,
            headers={"x-forwarded-for": address},
        )

    def csrf(self, path: str) -> str:
        page = self.http.get(path)
        assert page.status_code == 200, page.text
        found = CSRF.search(page.text)
        assert found, page.text[:500]
        return found.group(1)

    def form_tokens(self, path: str) -> dict[str, str]:
        """The hidden tokens a browser sends back with a form of this page: the CSRF token and,
        on forms that create keys or move money, the one-time token."""
        page = self.http.get(path)
        assert page.status_code == 200, page.text
        found = CSRF.search(page.text)
        assert found, page.text[:500]
        once = ONCE.search(page.text)
        return {"csrf": found.group(1), **({"once": once.group(1)} if once else {})}

    def post(self, path: str, form: dict[str, str], page: str | None = None) -> httpx.Response:
        return self.http.post(path, data={**form, **self.form_tokens(page or path)})

    def sign_up(
        self, email: str, password: str = "correct horse battery", *, verify: bool = True
    ) -> httpx.Response:
        """Sign up and, unless told not to, open the link of the verification mail."""
        r = self.post("/signup", {"email": email, "password": password})
        assert r.status_code == 200 and r.url.path == "/dashboard", r.text[:500]
        if verify:
            # The mailed link names the public URL; this browser reaches the same gateway here.
            link = urlsplit(last_link("email verification", email))
            r = self.http.get(f"{link.path}?{link.query}")
            assert r.status_code == 200 and r.url.path == "/dashboard", r.text[:500]
        return r

    def create_key(self, name: str = "laptop", **extra: str) -> str:
        r = self.post("/dashboard/keys", {"name": name, **extra}, page="/dashboard")
        assert r.status_code == 200, r.text[:500]
        found = NEW_KEY.search(r.text)
        assert found, r.text[:500]
        return found.group(1)

    def balance(self) -> str:
        page = self.http.get("/dashboard")
        found = BALANCE.search(page.text)
        assert found, page.text[:500]
        return found.group(1).replace(",", "")  # as shown, without thousands separators

    def close(self) -> None:
        self.http.close()


def form_error(r: httpx.Response) -> Any:
    found = re.search(r'class="error" role="alert">([^<]+)<', r.text)
    return found.group(1) if found else None


def operator(gw: RunningGateway, email: str, role: str = "owner") -> Browser:
    async def create() -> None:
        engine = create_engine(gw.settings.database_url)
        try:
            await OperatorStore(engine).create(email, "operator password 1", role)
        finally:
            await engine.dispose()

    asyncio.run(create())
    return sign_in(gw, email)


def sign_in(gw: RunningGateway, email: str, code: str = "") -> Browser:
    ops = Browser(gw.url)
    r = ops.post(
        "/admin/login",
        {"email": email, "password": "operator password 1", "code": code},
    )
    assert r.url.path == "/admin", r.text[:300]
    return ops
