"""The web pages (storefront, portal, console) load with the first request for one
(server/app.py): the API answers without them, and then every page answers as it did when
they loaded at start, routed as before (after the API's routes, none under an API path)."""

from __future__ import annotations

from pathlib import Path

import httpx

from gateway_support import ADMIN_TOKEN, start_gateway
from tokenrelay.server.app import API_PATHS, Gateway


def test_pages_load_with_the_first_page_and_answer_as_before(tmp_path: Path) -> None:
    gw, thread = start_gateway(tmp_path)
    try:
        app = gw.server.config.app
        assert isinstance(app, Gateway) and app._other is not None
        admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        for path in ("/healthz", "/readyz", "/api/proxy/v1/models", "/admin/v1/keys"):
            assert httpx.get(gw.url + path, headers=admin).status_code in (200, 401)
        api_only = len(app._other.routes)
        r = httpx.get(gw.url + "/", headers={"accept": "text/html"})
        assert r.status_code == 200 and "<html" in r.text.lower()
        pages = app._other.routes[api_only:]
        assert pages, "the pages were loaded before any page was asked for"
        assert not [p for p in (getattr(r, "path", "") for r in pages) if p.startswith(API_PATHS)]
        for path in ("/pricing", "/login", "/signup", "/docs", "/admin/login"):
            r = httpx.get(gw.url + path, headers={"accept": "text/html"})
            assert r.status_code == 200 and "<html" in r.text.lower(), path
        missing = httpx.get(gw.url + "/no-such-page", headers={"accept": "text/html"})
        assert missing.status_code == 404 and "<html" in missing.text.lower()
        assert httpx.get(gw.url + "/api/proxy/v1/nope").json()["error"]  # the API's JSON 404
    finally:
        gw.server.should_exit = True
        thread.join(timeout=10)
