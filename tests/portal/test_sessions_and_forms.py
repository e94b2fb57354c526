"""Sessions end on the server and forms do what they say once (issue 20, items 6 and 10): a
signed-out cookie opens nothing on any replica; a form that creates a key does so once however
often it is sent, its URL opened is the dashboard, not a JSON error; revoking asks first."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from portal_support import Browser

from backends import backend
from gateway_support import RunningGateway, served

SECRET = "sessions-secret-0123456789"


def _gateway(tmp: Path, **overrides: object) -> Iterator[RunningGateway]:
    yield from served(tmp, session_secret=SECRET, **overrides)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    yield from _gateway(tmp_path_factory.mktemp("sessions"))


def cookie_of(b: Browser) -> str:
    return str(b.http.cookies.get("tr_customer"))


def opens_dashboard(base: str, cookie: str) -> bool:
    r = httpx.get(base + "/dashboard", cookies={"tr_customer": cookie})
    return r.status_code == 200


def test_a_signed_out_cookie_opens_nothing(gw: RunningGateway) -> None:
    b = Browser(gw.url)
    b.sign_up("leaver@example.com")
    stolen = cookie_of(b)
    assert opens_dashboard(gw.url, stolen)
    assert b.post("/logout", {}, page="/dashboard").url.path == "/"
    assert not opens_dashboard(gw.url, stolen)
    # Signing in again starts a new session; the old one stays ended.
    r = b.post("/login", {"email": "leaver@example.com", "password": "correct horse battery"})
    assert r.url.path == "/dashboard" and not opens_dashboard(gw.url, stolen)


def test_signing_out_on_one_replica_ends_the_session_on_the_other() -> None:
    with tempfile.TemporaryDirectory() as tmp, backend("postgres+redis", tmp) as store:
        shared = {"database_url": store.database_url, "redis_url": store.redis_url}
        for name in ("a", "b"):
            (Path(tmp) / name).mkdir()
        first, second = _gateway(Path(tmp) / "a", **shared), _gateway(Path(tmp) / "b", **shared)
        a, b = next(first), next(second)
        browser = Browser(a.url)
        browser.sign_up("replica@example.com")
        cookie = cookie_of(browser)
        assert opens_dashboard(b.url, cookie)
        browser.post("/logout", {}, page="/dashboard")
        assert not opens_dashboard(b.url, cookie)
        for gen in (first, second):
            next(gen, None)


def key_rows(b: Browser) -> list[str]:
    return re.findall(r'<tr data-key-id="([^"]+)">', b.http.get("/dashboard").text)


def test_a_form_sent_twice_creates_one_key(gw: RunningGateway) -> None:
    b = Browser(gw.url)
    b.sign_up("twice@example.com")
    tokens = b.form_tokens("/dashboard")
    first = b.http.post("/dashboard/keys", data={"name": "once", **tokens})
    assert first.url.path == "/dashboard" and 'data-testid="new-key"' in first.text
    # The back button and "send again", or a double click: the same form, the same token.
    again = b.http.post("/dashboard/keys", data={"name": "once", **tokens})
    assert again.status_code == 200 and "sent already" in again.text
    assert 'data-testid="new-key"' not in again.text
    assert len(key_rows(b)) == 1
    # The key is shown once: the next look at the dashboard no longer has it.
    assert 'data-testid="new-key"' not in b.http.get("/dashboard").text
    # Without the one-time token a form creates nothing.
    csrf_only = {"csrf": tokens["csrf"]}
    b.http.post("/dashboard/keys", data={"name": "untokened", **csrf_only})
    assert len(key_rows(b)) == 1


def test_form_urls_opened_in_a_browser_lead_to_the_dashboard(gw: RunningGateway) -> None:
    b = Browser(gw.url)
    b.sign_up("urls@example.com")
    for path in ("/dashboard/keys", "/dashboard/redeem", "/logout", "/verify/resend"):
        r = b.http.get(path)
        assert r.status_code == 200 and r.url.path == "/dashboard", path
        assert r.headers["content-type"].startswith("text/html"), path


def test_revoking_asks_first(gw: RunningGateway) -> None:
    b = Browser(gw.url)
    b.sign_up("revoker@example.com")
    b.create_key("precious")
    (key_id,) = key_rows(b)
    ask = b.http.get(f"/dashboard/keys/{key_id}/revoke")
    assert ask.status_code == 200 and "cannot be" in ask.text and "precious" in ask.text
    assert "revoked" not in b.http.get("/dashboard").text  # asking changed nothing
    done = b.post(f"/dashboard/keys/{key_id}/revoke", {}, page=f"/dashboard/keys/{key_id}/revoke")
    assert done.url.path == "/dashboard" and "precious is revoked" in done.text


playwright_api = pytest.importorskip("playwright.sync_api")


def test_reloading_after_create_key_in_a_browser_creates_no_second_key(
    gw: RunningGateway,
) -> None:
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("chromium not installed")
    b = Browser(gw.url)
    b.sign_up("reloader@example.com")
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"]
        )
        context = chromium.new_context(base_url=gw.url)
        context.add_cookies([{"name": "tr_customer", "value": cookie_of(b), "url": gw.url}])
        page = context.new_page()
        page.goto("/dashboard")
        page.get_by_text("Create a key").click()
        page.get_by_label("Name").fill("laptop")
        page.get_by_role("button", name="Create key").click()
        assert page.get_by_test_id("new-key").inner_text().startswith("sk-aic-")
        page.reload()
        page.reload()
        assert page.locator("tr[data-key-id]").count() == 1
        assert page.get_by_test_id("new-key").count() == 0  # shown once
        chromium.close()
