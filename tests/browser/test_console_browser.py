"""The operator console in a real browser (Debian's chromium through Playwright), one test per
page's main flow, each page also at 390 px wide. With TOKENRELAY_SCREENSHOTS=docs/screenshots
the pages are saved as console-*.png."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pyotp
import pytest
from playwright.sync_api import expect

sys.path.insert(0, str(Path(__file__).parents[1] / "portal"))
from portal_support import Browser

from gateway_support import ADMIN_TOKEN, RunningGateway, start_gateway
from tokenrelay.admin.operators import OperatorStore
from tokenrelay.store.db import create_engine

pytest.importorskip("playwright.sync_api")
SHOTS = os.environ.get("TOKENRELAY_SCREENSHOTS")
PASSWORD = "operator password 1"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    gateway, thread = start_gateway(
        tmp_path_factory.mktemp("console-browser"),
        session_secret="console-browser-secret-01",
        signup_credit_usd=Decimal("1.00"),
        secret_key="console-browser-fernet-secret",
    )

    async def seed() -> None:
        engine = create_engine(gateway.settings.database_url)
        try:
            await OperatorStore(engine).create("owner@example.com", PASSWORD, "owner")
        finally:
            await engine.dispose()

    asyncio.run(seed())
    yield gateway
    gateway.server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def customer(gw: RunningGateway) -> dict[str, str]:
    """A customer with a key and three requests behind it."""
    made = httpx.post(
        f"{gw.url}/admin/v1/keys",
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        json={"name": "shop", "credits_usd": "5.00"},
    ).json()
    client = openai.OpenAI(api_key=made["key"], base_url=gw.proxy + "/v1", max_retries=0)
    for model in ("gpt-4o-mini", "gpt-4o-mini", "gpt-4o"):
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "[[words:9]] hi"}], max_tokens=30
        )
    return {"key": made["key"], "account": made["account_id"]}


@pytest.fixture()
def ops(gw: RunningGateway, browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
    page = ctx.new_page()
    sign_in(page, gw, "owner@example.com")
    yield page
    ctx.close()


def sign_in(page: Any, gw: RunningGateway, email: str, code: str = "") -> None:
    page.goto(gw.url + "/admin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    if code:
        page.get_by_label("One-time code (if two-factor is on)").fill(code)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/admin")


def shot_and_narrow(page: Any, name: str) -> None:
    """Saved for the docs, then checked at 390 px: nothing wider than the screen."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"console-{name}.png"), full_page=True)
    size = page.viewport_size
    page.set_viewport_size({"width": 390, "height": 800})
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, name
    page.set_viewport_size(size)


def test_overview_charts_ranges_and_tops(ops: Any, customer: dict[str, str]) -> None:
    ops.goto(ops.url.split("/admin")[0] + "/admin?range=24h")
    expect(ops.get_by_test_id("requests")).to_have_text("3", use_inner_text=True)
    expect(ops.get_by_test_id("top-models")).to_contain_text("gpt-4o", use_inner_text=True)
    expect(ops.get_by_test_id("top-customers")).to_contain_text(
        customer["account"], use_inner_text=True
    )
    assert ops.locator(".uplot").count() == 3  # the three charts drew
    expect(ops.get_by_test_id("warning")).to_contain_text(
        "sells at list price", use_inner_text=True
    )
    ops.get_by_role("link", name="30d").click()
    ops.wait_for_url("**range=30d")
    expect(ops.get_by_test_id("requests")).to_have_text("3", use_inner_text=True)
    shot_and_narrow(ops, "overview")


def test_customer_search_credit_and_disable(
    ops: Any, gw: RunningGateway, customer: dict[str, str]
) -> None:
    ops.get_by_role("link", name="Customers").click()
    ops.get_by_label("Search").fill(customer["key"][-4:])  # by the key's last characters
    ops.get_by_role("button", name="Search").click()
    ops.get_by_role("link", name=customer["account"]).click()
    expect(ops.get_by_test_id("balance")).to_have_text(re.compile(r"^\$4\.99"), use_inner_text=True)
    ops.get_by_label("Amount in USD (negative to debit)").fill("10")
    ops.locator("#a-why").fill("launch credit")
    ops.get_by_role("button", name="Apply").click()
    ops.wait_for_url(f"**/admin/customers/{customer['account']}")
    expect(ops.get_by_test_id("audit")).to_contain_text("launch credit", use_inner_text=True)
    expect(ops.get_by_test_id("balance")).to_have_text(
        re.compile(r"^\$14\.99"), use_inner_text=True
    )
    shot_and_narrow(ops, "customer")

    ops.locator("#d-why").fill("suspected fraud")
    ops.get_by_role("button", name="Disable account").click()
    expect(ops.get_by_test_id("status")).to_have_text("disabled", use_inner_text=True)
    client = openai.OpenAI(api_key=customer["key"], base_url=gw.proxy + "/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
    ops.locator("#d-why").fill("cleared")
    ops.get_by_role("button", name="Enable account").click()
    expect(ops.get_by_test_id("status")).to_have_text("active", use_inner_text=True)
    ops.get_by_role("link", name="Customers").click()
    shot_and_narrow(ops, "customers")


def test_models_margin_preview_then_save_and_hide(ops: Any, gw: RunningGateway) -> None:
    ops.get_by_role("link", name="Models and prices").click()
    ops.get_by_label("Group", exact=True).fill("default")
    ops.get_by_label("Multiplier", exact=True).fill("1.25")
    ops.get_by_role("button", name="Preview margin").click()
    expect(ops.get_by_test_id("preview")).to_contain_text("20.0% margin", use_inner_text=True)
    shot_and_narrow(ops, "models-preview")
    ops.get_by_role("button", name="Save default at ×1.25").click()
    ops.wait_for_url("**/admin/models")
    expect(ops.get_by_test_id("groups")).to_contain_text("×1.25", use_inner_text=True)
    assert ops.get_by_test_id("warning").count() == 0  # no longer selling at list price
    # Batch prices: the list price at the model's batch rate (half, for gpt-4o-mini).
    row = ops.locator('tr[data-model="gpt-4o-mini"]')
    listed = row.locator("td").nth(3).inner_text()
    batch = row.get_by_test_id("batch-in").inner_text()
    assert Decimal(batch.lstrip("$")) == Decimal(listed.lstrip("$")) / 2
    # A per-model override, then both changes in the versions table: who, old, new.
    ops.get_by_label("In group").select_option("default")
    ops.get_by_label("Model", exact=True).select_option("gpt-4o")
    ops.get_by_label("Multiplier for this model (empty: the group's)").fill("1.5")
    ops.get_by_role("button", name="Save override").click()
    ops.wait_for_url("**/admin/models")
    versions = ops.get_by_test_id("multiplier-versions").locator("tr")
    newest = versions.nth(1).all_inner_texts()[0]
    assert "owner@example.com" in newest and "gpt-4o" in newest and "×1.5" in newest
    group_change = versions.nth(2).locator("td").all_inner_texts()
    assert group_change[2:] == ["default", "all (the group's)", "×1", "×1.25"], group_change
    # /docs shows a few example models now; the whole list is the pricing page's and
    # /v1/models'.
    assert "grok-4.3" in httpx.get(gw.url + "/pricing").text
    ops.get_by_role("button", name="Hide grok-4.3").click()
    ops.get_by_role("button", name="Show grok-4.3").wait_for()
    assert "grok-4.3" not in httpx.get(gw.url + "/pricing").text
    assert "grok-4.3" not in _listed(gw)
    ops.get_by_role("button", name="Show grok-4.3").click()
    ops.get_by_role("button", name="Hide grok-4.3").wait_for()
    assert "grok-4.3" in httpx.get(gw.url + "/pricing").text
    assert "grok-4.3" in _listed(gw)
    shot_and_narrow(ops, "models")


def _listed(gw: RunningGateway) -> list[str]:
    made = httpx.post(
        f"{gw.url}/admin/v1/keys",
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        json={"name": "lister", "credits_usd": "1.00"},
    ).json()
    r = httpx.get(gw.proxy + "/v1/models", headers={"authorization": f"Bearer {made['key']}"})
    return [m["id"] for m in r.json()["data"]]


def test_upstreams_add_test_weight_drain_and_rotate(ops: Any, gw: RunningGateway) -> None:
    ops.get_by_role("link", name="Upstreams").click()
    assert ops.get_by_test_id("deployments-openai").locator("tr").count() >= 2
    add = ops.get_by_role("region", name="Add a deployment")
    add.get_by_label("Vendor").select_option("openai")
    add.get_by_label("Name", exact=True).fill("eu")
    add.get_by_label("Base URL").fill(f"{gw.emulator_url}/_d/eu/openai/v1")
    add.get_by_label("Key (or env:NAME)").fill("sk-browser-key-9876")
    add.get_by_label("Weight").fill("2")
    add.get_by_label("Region (optional)").fill("eu-west")
    ops.get_by_role("button", name="Add deployment").click()
    ops.wait_for_url("**/admin/upstreams")
    row = ops.locator('tr[data-deployment="openai/eu"]')
    expect(row.get_by_test_id("key")).to_have_text("…9876", use_inner_text=True)
    assert "sk-browser-key-9876" not in ops.content()  # never shown back
    ops.get_by_role("button", name="Test openai/eu").click()
    expect(ops.get_by_test_id("test-result")).to_contain_text(": 200 in ", use_inner_text=True)
    ops.get_by_text("Change openai/eu").click()
    ops.locator("#w-openai\\/eu").fill("5")
    ops.get_by_role("button", name="Save openai/eu").click()
    ops.wait_for_url("**/admin/upstreams")
    expect(row.get_by_test_id("weight")).to_have_text("5", use_inner_text=True)
    ops.get_by_role("button", name="Drain openai/eu").click()
    expect(row.get_by_test_id("state")).to_have_text(re.compile(r"^drained"), use_inner_text=True)
    ops.get_by_text("Change openai/eu").click()
    ops.locator("#k-openai\\/eu").fill("sk-rotated-key-5432")
    ops.get_by_role("button", name="Rotate key of openai/eu").click()
    expect(row.get_by_test_id("key")).to_have_text("…5432", use_inner_text=True)
    ops.get_by_role("button", name="Restore openai/eu").click()
    expect(row.get_by_test_id("state")).to_have_text(re.compile(r"^healthy"), use_inner_text=True)
    shot_and_narrow(ops, "upstreams")


def test_signups_per_address_then_block(ops: Any, gw: RunningGateway) -> None:
    def sign_up(n: int) -> Any:
        visitor = Browser(gw.url)
        visitor.http.headers["x-forwarded-for"] = "203.0.113.7"
        return visitor.post("/signup", {"email": f"farm{n}@example.com", "password": "x" * 12})

    assert [sign_up(n).url.path for n in (1, 2)] == ["/dashboard", "/dashboard"]
    ops.get_by_role("link", name="Sign-ups").click()
    row = ops.locator('tr[data-ip="203.0.113.7"]')
    expect(row.locator("td").nth(1)).to_have_text("2", use_inner_text=True)
    row.get_by_role("link", name="203.0.113.7").click()
    assert ops.get_by_test_id("ip-accounts").inner_text().count("farm") == 2
    ops.get_by_label("Reason").fill("free-credit farm")
    ops.get_by_role("button", name="Block sign-ups").click()
    ops.wait_for_url("**/admin/signups")
    expect(row.get_by_test_id("blocked")).to_contain_text("free-credit farm", use_inner_text=True)
    refused = sign_up(3)
    assert refused.status_code == 403 and "blocked" in refused.text
    shot_and_narrow(ops, "signups")
    ops.get_by_role("button", name="Unblock 203.0.113.7").click()
    expect(row.get_by_test_id("blocked")).to_have_text("no", use_inner_text=True)
    assert sign_up(4).url.path == "/dashboard"


def test_password_change_ends_the_other_sessions(
    ops: Any, gw: RunningGateway, browser: Any
) -> None:
    ops.get_by_role("link", name="Operators").click()
    ops.get_by_label("Email").fill("pw@example.com")
    ops.get_by_label("Initial password (at least 10 characters)").fill(PASSWORD)
    ops.get_by_role("button", name="Add operator").click()
    ops.wait_for_url("**/admin/operators")
    contexts = [browser.new_context(viewport={"width": 1200, "height": 900}) for _ in range(2)]
    here, elsewhere = (c.new_page() for c in contexts)
    try:
        sign_in(here, gw, "pw@example.com")
        sign_in(elsewhere, gw, "pw@example.com")
        here.get_by_role("link", name="Operators").click()
        here.get_by_label("Current password").fill("wrong password 1")
        here.get_by_label("New password (at least 10 characters)").fill("new operator pw 2")
        here.get_by_role("button", name="Change password").click()
        expect(here.get_by_role("alert")).to_contain_text(
            "current password is wrong", use_inner_text=True
        )
        here.get_by_label("Current password").fill(PASSWORD)
        here.get_by_label("New password (at least 10 characters)").fill("new operator pw 2")
        here.get_by_role("button", name="Change password").click()
        expect(here.get_by_test_id("changed")).to_contain_text(
            "other sessions ended", use_inner_text=True
        )
        here.goto(gw.url + "/admin/requests")  # this session goes on
        assert here.url.endswith("/admin/requests")
        elsewhere.goto(gw.url + "/admin/requests")  # the other one ended
        assert elsewhere.url.endswith("/admin/login")
    finally:
        for c in contexts:
            c.close()


def test_codes_batch_export_and_revoke(ops: Any) -> None:
    ops.get_by_role("link", name="Codes").click()
    ops.get_by_label("How many").fill("4")
    ops.get_by_label("Amount each, USD").fill("2.50")
    ops.get_by_role("button", name="Create batch").click()
    assert len(ops.get_by_test_id("codes").inner_text().split()) == 4
    batch = re.search(r"batch_[0-9a-f]+", ops.get_by_role("alert").inner_text())
    assert batch
    with ops.expect_download() as download:
        ops.locator(f'a[href="/admin/codes/{batch[0]}.csv"]').click()
    assert Path(download.value.path()).read_text().count("\n") == 5
    ops.get_by_role("button", name=f"Revoke open codes of {batch[0]}").click()
    assert "cannot be undone" in ops.content()
    ops.get_by_role("button", name="Yes, revoke the open codes").click()
    ops.wait_for_url("**/admin/codes")
    cells = ops.locator(f'tr[data-batch="{batch[0]}"] td').all_inner_texts()
    assert cells[2:6] == ["4", "0", "0", "4"]
    shot_and_narrow(ops, "codes")


def test_request_log_filter_and_detail(ops: Any, customer: dict[str, str]) -> None:
    ops.get_by_role("link", name="Requests").click()
    assert "Prompts and replies are not stored" in ops.content()
    ops.get_by_label("Model").fill("gpt-4o")
    ops.get_by_role("button", name="Filter").click()
    rows = ops.get_by_test_id("requests").locator("tr")
    assert rows.count() == 2  # the header and the one gpt-4o request
    expect(rows.nth(1).get_by_test_id("reason")).to_have_text(  # billing reason
        "completed", use_inner_text=True
    )
    expect(rows.nth(1).get_by_test_id("deployment")).to_have_text(
        "openai/default", use_inner_text=True
    )
    shot_and_narrow(ops, "requests")
    rows.nth(1).locator("a").first.click()
    detail = ops.get_by_test_id("request").inner_text()
    assert "gpt-4o" in detail and customer["account"] in detail and "completed" in detail
    assert "openai/default" in detail


def test_operators_add_two_factor_and_sign_out_everywhere(
    ops: Any, gw: RunningGateway, browser: Any
) -> None:
    ops.get_by_role("link", name="Operators").click()
    ops.get_by_label("Email").fill("help@example.com")
    ops.get_by_label("Initial password (at least 10 characters)").fill(PASSWORD)
    ops.get_by_label("Role").select_option("support")
    ops.get_by_role("button", name="Add operator").click()
    expect(ops.get_by_test_id("operators")).to_contain_text("help@example.com", use_inner_text=True)

    helper_ctx = browser.new_context(viewport={"width": 1200, "height": 900})
    helper = helper_ctx.new_page()
    sign_in(helper, gw, "help@example.com")
    helper.get_by_role("link", name="Operators").click()
    helper.get_by_role("link", name="Turn it on").click()
    secret = helper.get_by_test_id("totp-secret").inner_text()
    helper.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
    helper.get_by_role("button", name="Turn on two-factor").click()
    expect(helper.get_by_test_id("my-2fa")).to_have_text("on", use_inner_text=True)
    shot_and_narrow(helper, "operators")
    helper.get_by_role("button", name="Sign out everywhere").click()
    helper.wait_for_url("**/admin/login")
    sign_in(helper, gw, "help@example.com", pyotp.TOTP(secret).now())
    expect(helper.get_by_test_id("operator")).to_contain_text("support", use_inner_text=True)
    helper_ctx.close()
