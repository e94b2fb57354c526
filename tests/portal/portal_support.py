"""Helpers for the portal tests: a browser-like client (cookies, CSRF token from the page)."""

from __future__ import annotations

import re
from typing import Any

import httpx

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
NEW_KEY = re.compile(r'data-testid="new-key">([^<]+)<')
BALANCE = re.compile(r'data-testid="balance">\$([0-9.]+)<')


class Browser:
    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.Client(base_url=base, timeout=30, follow_redirects=True)

    def csrf(self, path: str) -> str:
        page = self.http.get(path)
        assert page.status_code == 200, page.text
        found = CSRF.search(page.text)
        assert found, page.text[:500]
        return found.group(1)

    def post(self, path: str, form: dict[str, str], page: str | None = None) -> httpx.Response:
        token = self.csrf(page or path)
        return self.http.post(path, data={**form, "csrf": token})

    def sign_up(self, email: str, password: str = "correct horse battery") -> httpx.Response:
        r = self.post("/signup", {"email": email, "password": password})
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
        return found.group(1)

    def close(self) -> None:
        self.http.close()


def form_error(r: httpx.Response) -> Any:
    found = re.search(r'class="error" role="alert">([^<]+)<', r.text)
    return found.group(1) if found else None
