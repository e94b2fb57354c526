"""The storefront in Debian's chromium, at desktop width and at 390 px: the price search and
vendor filters, the docs' client tabs and copy buttons, the error page, no Content-Security-
Policy violation anywhere (every script comes from the package), nothing wider than the
screen, and a page of another site that tries to frame the portal gets nothing.

`TOKENRELAY_SCREENSHOTS=docs/screenshots pytest tests/browser` saves each page visited.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import expect

from gateway_support import RunningGateway, free_port, served
from mail_outbox import last_link

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
SHOTS = os.environ.get("TOKENRELAY_SCREENSHOTS")
WIDTHS = {"desktop": {"width": 1200, "height": 900}, "mobile": {"width": 390, "height": 844}}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    port = free_port()
    yield from served(
        tmp_path_factory.mktemp("storefront-browser"),
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        session_secret="storefront-browser-secret",
        site_name="Acme AI",
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        missing = "chromium not installed (apt-get install -y chromium)"
        pytest.fail(missing) if os.environ.get("CI") else pytest.skip(missing)
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def shot(page: object, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def fits(page: object) -> bool:
    return int(page.evaluate("document.documentElement.scrollWidth")) <= int(  # type: ignore[attr-defined]
        page.evaluate("window.innerWidth")  # type: ignore[attr-defined]
    )


@pytest.mark.parametrize("size", WIDTHS)
def test_storefront_pages_in_the_browser(gw: RunningGateway, browser: object, size: str) -> None:
    ctx = browser.new_context(viewport=WIDTHS[size])  # type: ignore[attr-defined]
    page = ctx.new_page()
    violations: list[str] = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )

    page.goto(gw.url + "/")
    expect(page.get_by_test_id("site-name")).to_have_text("Acme AI", use_inner_text=True)
    assert page.locator("table.prices tbody tr:visible").count() >= 25
    assert fits(page)
    shot(page, f"10-landing-{size}")

    page.goto(gw.url + "/pricing")
    page.get_by_label("Search models").fill("claude")
    rows = page.locator("table.prices tbody tr:visible")
    assert rows.count() > 0
    assert all(r.get_attribute("data-vendor") == "anthropic" for r in rows.all())
    page.get_by_label("Search models").fill("")
    page.get_by_label("Anthropic").uncheck()
    assert page.locator('tr[data-vendor="anthropic"]:visible').count() == 0
    assert page.locator('tr[data-vendor="openai"]:visible').count() > 0
    page.get_by_label("Search models").fill("no-such-model-xyz")
    assert page.get_by_text("No model matches").is_visible()
    assert fits(page)
    shot(page, f"11-pricing-{size}")

    page.goto(gw.url + "/docs")
    assert page.get_by_role("navigation", name="Contents").is_visible()
    # One tab choice switches every section to that client.
    page.locator("#t-send-js-chat").click()
    assert page.locator("#p-send-js-chat").is_visible()
    assert page.locator("#p-stream-js-chat").is_visible()
    assert not page.locator("#p-send-py-anthropic").is_visible()
    assert page.locator("#p-send-js-chat button.copy").is_visible()
    assert fits(page)
    shot(page, f"12-docs-{size}")

    page.goto(gw.url + "/no-such-page")
    expect(page.get_by_test_id("error-title")).to_have_text("Page not found", use_inner_text=True)
    shot(page, f"13-not-found-{size}")

    page.goto(gw.url + "/signup")
    page.get_by_label("Email").fill(f"{size}@example.com")
    page.get_by_label("Password (at least 10 characters)").fill("correct horse battery")
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url("**/dashboard")
    # Keys wait for the address to be confirmed: the mailed link does that.
    page.goto(last_link("email verification", f"{size}@example.com"))
    page.wait_for_url("**/dashboard?notice=verified")
    page.get_by_text("Create a key").click()
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_test_id("new-key")).to_have_text(re.compile("^sk-aic-"), use_inner_text=True)
    assert page.get_by_text("export ANTHROPIC_API_KEY=sk-aic-").first.is_visible()
    assert fits(page)
    shot(page, f"14-new-key-{size}")
    page.goto(gw.url + "/dashboard")
    assert page.get_by_text("No requests yet.").is_visible()  # an empty state that says what to do
    assert fits(page)
    shot(page, f"15-dashboard-{size}")
    page.goto(gw.url + "/account")
    assert page.get_by_role("button", name="Delete my account").is_visible()
    assert fits(page)
    shot(page, f"16-account-{size}")
    assert violations == []
    ctx.close()


class _Framer(BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:
        body = f'<!doctype html><iframe id="f" src="{self.target}/dashboard"></iframe>'.encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_another_site_cannot_frame_the_portal(gw: RunningGateway, browser: object) -> None:
    _Framer.target = gw.url
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Framer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(f"http://localhost:{server.server_address[1]}/")
        page.wait_for_load_state("load")
        frame = page.frame_locator("#f")
        # Blocked: chromium shows its own error page in the frame, never the sign-in form.
        assert frame.get_by_label("Email").count() == 0
        assert frame.locator("text=Acme AI").count() == 0
        page.close()
    finally:
        server.shutdown()
