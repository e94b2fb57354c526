"""The portal and console in a real browser (Debian's chromium through Playwright): sign up,
get a key, call through both SDKs and see each request with its cost, redeem a code, pay
through a simulated Checkout webhook, export CSV, revoke a key (the SDK then gets 401), the
operator adjusts credit and sees the margin.

With TOKENRELAY_SCREENSHOTS=<dir> (docs/screenshots in the repository) every page visited is
saved there: `TOKENRELAY_SCREENSHOTS=docs/screenshots pytest tests/browser`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from playwright.sync_api import expect

from gateway_support import RunningGateway, served
from mail_outbox import last_link
from tokenrelay.portal.web import dollars

pytest.importorskip("playwright.sync_api")
SECRET = "whsec_browser_test"
SHOTS = os.environ.get("TOKENRELAY_SCREENSHOTS")


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    yield from served(
        tmp_path_factory.mktemp("browser"),
        session_secret="browser-test-secret-0123",
        signup_credit_usd=Decimal("1.00"),
        stripe_secret_key="sk_test_unused",
        stripe_webhook_secret=SECRET,
    )


def shot(page: object, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def signed(payload: bytes) -> dict[str, str]:
    t = int(time.time())
    sig = hmac.new(SECRET.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return {"stripe-signature": f"t={t},v1={sig}", "content-type": "application/json"}


def test_customer_and_operator_in_the_browser(
    gw: RunningGateway, browser: object, tmp_path: Path
) -> None:
    ctx = browser.new_context(accept_downloads=True, viewport={"width": 1100, "height": 900})  # type: ignore[attr-defined]
    page = ctx.new_page()
    page.goto(gw.url + "/")
    shot(page, "01-landing")
    page.get_by_role("link", name="Get your API key").first.click()
    page.get_by_label("Email").fill("browser@example.com")
    page.get_by_label("Password (at least 10 characters)").fill("correct horse battery")
    shot(page, "02-signup")
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url("**/dashboard")
    # No credit and no key before the address is confirmed: the mailed link does that.
    expect(page.get_by_test_id("balance")).to_have_text("$0.000000", use_inner_text=True)
    assert page.get_by_text("Create a key").count() == 0
    page.goto(last_link("email verification", "browser@example.com"))
    page.wait_for_url("**/dashboard?notice=verified")
    expect(page.get_by_test_id("balance")).to_have_text("$1.000000", use_inner_text=True)

    page.get_by_text("Create a key").click()
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_test_id("new-key").inner_text().strip()
    assert key.startswith("sk-aic-")
    shot(page, "03-new-key")

    claude = anthropic.Anthropic(api_key=key, base_url=gw.proxy, max_retries=0)
    a = claude.messages.with_raw_response.create(
        model="claude-haiku-4-5", max_tokens=30, messages=[{"role": "user", "content": "hi"}]
    )
    gpt = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
    o = gpt.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=30, messages=[{"role": "user", "content": "hi"}]
    )
    page.goto(gw.url + "/dashboard")
    usage = page.get_by_test_id("usage").inner_text()
    for raw, model in ((a, "claude-haiku-4-5"), (o, "gpt-4o-mini")):
        assert model in usage
        cost_nano = int(Decimal(raw.headers["x-tokenrelay-cost-usd"]) * 10**9)
        assert dollars(cost_nano) in usage  # the portal's one money format
    shot(page, "04-dashboard")

    # The operator signs in (own account), creates a code batch, sees the margin.
    made = subprocess.run(
        [
            str(Path(sys.executable).parent / "tokenrelay"),
            "admin",
            "create-user",
            "ops@example.com",
        ],
        env={
            **os.environ,
            "TOKENRELAY_DATABASE_URL": gw.settings.database_url,
            "TOKENRELAY_ADMIN_PASSWORD": "operator password 1",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    assert "operator password" not in made.stdout + made.stderr
    ops = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()  # type: ignore[attr-defined]
    ops.goto(gw.url + "/admin")
    ops.get_by_label("Email").fill("ops@example.com")
    ops.get_by_label("Password").fill("operator password 1")
    ops.get_by_role("button", name="Sign in").click()
    ops.wait_for_url("**/admin")
    expect(ops.get_by_test_id("top-models")).to_contain_text("gpt-4o-mini", use_inner_text=True)
    ops.goto(gw.url + "/admin/codes")
    ops.get_by_label("How many").fill("2")
    ops.get_by_label("Amount each, USD").fill("3.00")
    ops.get_by_role("button", name="Create batch").click()
    code = ops.get_by_test_id("codes").inner_text().split()[0]
    shot(ops, "07-console-codes")

    page.get_by_label("Redemption code").fill(code)
    page.get_by_role("button", name="Redeem").click()
    assert "$3.000000 added" in page.content()
    balance = Decimal(page.get_by_test_id("balance").inner_text().lstrip("$"))

    # Paid through Checkout: the webhook (signed as Stripe signs it) credits the account.
    ops.goto(gw.url + "/admin/customers?q=browser%40example.com")
    account = re.search(r"acct_[0-9a-f]+", ops.get_by_test_id("customers").inner_text())
    assert account
    body = json.dumps(
        {
            "id": "evt_b1",
            "object": "event",
            "type": "checkout.session.completed",
            "data": {
                "object": {
                    "id": "cs_b1",
                    "object": "checkout.session",
                    "payment_status": "paid",
                    "amount_total": 1000,
                    "payment_intent": "pi_b1",
                    "metadata": {"account_id": account.group(0)},
                }
            },
        }
    ).encode()
    assert httpx.post(f"{gw.url}/stripe/webhook", content=body, headers=signed(body)).is_success
    page.goto(gw.url + "/dashboard")
    assert Decimal(page.get_by_test_id("balance").inner_text().lstrip("$")) == balance + 10

    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    csv_text = Path(download.value.path()).read_text()
    assert csv_text.count("\n") == 3 and "gpt-4o-mini" in csv_text

    page.get_by_role("link", name="Revoke key laptop").click()  # asks first
    page.get_by_role("button", name="Revoke key laptop").click()
    page.wait_for_url("**/dashboard")
    assert "revoked" in page.content()
    shot(page, "05-revoked")
    with pytest.raises(openai.AuthenticationError):
        gpt.chat.completions.create(
            model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )

    ops.goto(gw.url + f"/admin/customers/{account.group(0)}")
    ops.get_by_label("Amount in USD (negative to debit)").fill("-0.50")
    ops.get_by_label("Reason").first.fill("test adjustment")
    ops.get_by_role("button", name="Apply").click()
    ops.wait_for_url(f"**/admin/customers/{account.group(0)}")
    expect(ops.get_by_test_id("audit")).to_contain_text("test adjustment", use_inner_text=True)
    shot(ops, "08-console")
    page.goto(gw.url + "/dashboard")
    assert Decimal(page.get_by_test_id("balance").inner_text().lstrip("$")) == balance + Decimal(
        "9.50"
    )
    page.goto(gw.url + "/docs")
    shot(page, "06-docs")
    # Narrow screen: the dashboard still fits (responsive).
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(gw.url + "/dashboard")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "09-dashboard-mobile")
    ctx.close()
