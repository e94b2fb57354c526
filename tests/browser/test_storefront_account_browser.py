"""The dashboard and the account page in Debian's chromium, at desktop width and at 390 px:
the chart of spend and requests switched between model and key, each request's billing reason,
the CSV with its receipts; sign-ins listed and ended (one, then everywhere), a password change
that signs the other browser out, and a printable receipt. Nothing wider than the screen, no
Content-Security-Policy violation.

`TOKENRELAY_SCREENSHOTS=docs/screenshots pytest tests/browser` saves each page visited.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import openai
import pytest
from playwright.sync_api import expect
from test_storefront_browser import WIDTHS, fits, shot

from gateway_support import RunningGateway, free_port, served
from mail_outbox import last_link

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    port = free_port()
    yield from served(
        tmp_path_factory.mktemp("account-browser"),
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        session_secret="account-browser-secret-01",
        site_name="Acme AI",
        signup_credit_usd=Decimal("2.00"),
        signup_per_ip_hour=20,  # every browser here signs up from 127.0.0.1
    )


def _watch_csp(page: object) -> list[str]:
    violations: list[str] = []
    page.on(  # type: ignore[attr-defined]
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    return violations


def _sign_up(gw: RunningGateway, page: object, email: str) -> None:
    page.goto(gw.url + "/signup")  # type: ignore[attr-defined]
    page.get_by_label("Email").fill(email)  # type: ignore[attr-defined]
    page.get_by_label("Password (at least 10 characters)").fill(PASSWORD)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign up").click()  # type: ignore[attr-defined]
    page.wait_for_url("**/dashboard")  # type: ignore[attr-defined]
    page.goto(last_link("email verification", email))  # type: ignore[attr-defined]
    page.wait_for_url("**/dashboard?notice=verified")  # type: ignore[attr-defined]


def _create_key(page: object, name: str) -> str:
    page.get_by_text("Create a key").click()  # type: ignore[attr-defined]
    page.get_by_label("Name").fill(name)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Create key").click()  # type: ignore[attr-defined]
    return str(page.get_by_test_id("new-key").inner_text())  # type: ignore[attr-defined]


def _sign_in(gw: RunningGateway, page: object, email: str, password: str) -> None:
    page.goto(gw.url + "/login")  # type: ignore[attr-defined]
    page.get_by_label("Email").fill(email)  # type: ignore[attr-defined]
    page.get_by_label("Password").fill(password)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign in").click()  # type: ignore[attr-defined]
    page.wait_for_url("**/dashboard")  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", WIDTHS)
def test_dashboard_chart_requests_and_csv(
    gw: RunningGateway, browser: object, size: str, tmp_path: Path
) -> None:
    ctx = browser.new_context(viewport=WIDTHS[size])  # type: ignore[attr-defined]
    page = ctx.new_page()
    violations = _watch_csp(page)
    _sign_up(gw, page, f"chart-{size}@example.com")
    assert page.get_by_test_id("chart-empty").is_visible()
    keys = {name: _create_key(page, name) for name in ("laptop", "ci")}
    for name, model in (("laptop", "gpt-4o-mini"), ("ci", "claude-haiku-4-5"), ("ci", "gpt-4o")):
        client = openai.OpenAI(api_key=keys[name], base_url=gw.proxy + "/v1", max_retries=0)
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "[[words:5]] hi"}], max_tokens=20
        )

    page.goto(gw.url + "/dashboard?days=7")
    legend = page.locator("#usage-chart .u-legend")
    legend.wait_for()
    assert page.locator("#usage-chart canvas").is_visible()
    assert "gpt-4o-mini" in legend.inner_text() and "claude-haiku-4-5" in legend.inner_text()
    page.get_by_label("split by", exact=True).select_option("key")
    page.get_by_label("Show", exact=True).select_option("requests")
    legend = page.locator("#usage-chart .u-legend")
    assert "laptop" in legend.inner_text() and "ci" in legend.inner_text()
    assert "Requests by key" in str(page.locator("#usage-chart").get_attribute("aria-label"))
    expect(page.get_by_test_id("requests")).to_have_text("3", use_inner_text=True)

    rows = page.locator('table[data-testid="usage"] tr[data-request-id]')
    assert rows.count() == 3
    first = rows.first
    reason = first.get_by_role("link", name="completed")
    box = reason.bounding_box()
    assert box is not None and box["x"] + box["width"] <= WIDTHS[size]["width"]  # not cut off
    expect(first.get_by_test_id("cached-reasoning")).to_contain_text("cached", use_inner_text=True)
    cost = first.locator("td[data-label=Cost]")
    expect(cost).to_have_text(re.compile(r"^\$0\.0000"), use_inner_text=True)
    assert fits(page)
    shot(page, f"17-dashboard-usage-{size}")

    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    text = Path(download.value.path()).read_text()
    table = list(csv.DictReader(io.StringIO(text)))
    assert len(table) == 3 and all(r["receipt"].count(".") == 1 for r in table)
    assert all(r["started_at"].endswith("Z") for r in table)

    first.get_by_role("link", name="completed").click()
    page.wait_for_url("**/docs#reason-completed")
    assert page.locator("#reason-completed").is_visible()
    assert violations == []
    ctx.close()


@pytest.mark.parametrize("size", WIDTHS)
def test_sessions_password_and_receipts(gw: RunningGateway, browser: object, size: str) -> None:
    email = f"account-{size}@example.com"
    here = browser.new_context(
        viewport=WIDTHS[size],
        user_agent="Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0 Safari/537.36",
    )  # type: ignore[attr-defined]
    page = here.new_page()
    violations = _watch_csp(page)
    _sign_up(gw, page, email)
    phone = browser.new_context(
        viewport=WIDTHS["mobile"],
        user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Safari/604.1",
    )  # type: ignore[attr-defined]
    other = phone.new_page()
    _sign_in(gw, other, email, PASSWORD)

    page.goto(gw.url + "/account")
    sessions = page.get_by_test_id("sessions")
    assert sessions.locator("tr[data-session]").count() == 2
    expect(sessions).to_contain_text("Safari on iPhone", use_inner_text=True)
    expect(sessions).to_contain_text("(this browser)", use_inner_text=True)
    assert fits(page)
    shot(page, f"18-account-sessions-{size}")

    # End the phone's sign-in from here: its next page is the sign-in form.
    sessions.locator("tr", has_text="iPhone").get_by_role("button", name="Sign out there").click()
    assert page.get_by_text("That sign-in has ended.").is_visible()
    other.goto(gw.url + "/dashboard")
    assert other.url.endswith("/login")

    # A new password: the other browser (signed in again) is signed out, this one stays.
    _sign_in(gw, other, email, PASSWORD)
    page.goto(gw.url + "/account")
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password (at least 10 characters)").fill("staple battery horse")
    page.get_by_role("button", name="Change password").click()
    assert page.get_by_text("every other sign-in has ended").is_visible()
    other.goto(gw.url + "/dashboard")
    assert other.url.endswith("/login")
    assert page.get_by_test_id("sessions").locator("tr[data-session]").count() == 1

    # The starting credit's receipt, printable: the site's header and links stay off paper.
    page.get_by_role("link", name="Receipt").first.click()
    expect(page.get_by_test_id("receipt-amount")).to_have_text("$2.000000 USD", use_inner_text=True)
    page.emulate_media(media="print")
    assert not page.locator("header").first.is_visible()
    assert page.get_by_test_id("receipt").is_visible()
    page.emulate_media(media="screen")
    assert fits(page)
    shot(page, f"19-receipt-{size}")

    page.goto(gw.url + "/account")
    page.get_by_role("button", name="Sign out everywhere").click()
    page.wait_for_url("**/login")
    page.goto(gw.url + "/account")
    assert page.url.endswith("/login")
    assert violations == []
    here.close()
    phone.close()
