"""The customer portal end to end on a real gateway: sign up, get a key shown once, call with
both SDKs and see each request's cost on the dashboard and in the CSV; CSRF on every form;
accounts isolated from each other; sign-in throttled; password reset by a signed link."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import re
from collections.abc import Iterator
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest
from portal_support import Browser, form_error

from gateway_support import ADMIN_TOKEN, RunningGateway, start_gateway
from tokenrelay.customers.accounts import AdminUsers
from tokenrelay.store.db import create_engine

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    gateway, thread = start_gateway(
        tmp_path_factory.mktemp("portal"),
        signup_credit_usd=Decimal("1.00"),
        session_secret="test-secret-0123456789",
    )
    yield gateway
    gateway.server.should_exit = True
    thread.join(timeout=10)


def test_sign_up_key_calls_and_costs_on_the_dashboard(gw: RunningGateway) -> None:
    b = Browser(gw.url)
    landing = b.http.get("/")
    assert "Get your API key" in landing.text
    b.sign_up("alice@example.com")
    assert b.balance() == "1.00"  # the starting credit
    key = b.create_key("laptop")
    assert key.startswith("sk-aic-")
    assert key not in b.http.get("/dashboard").text  # shown once

    claude = anthropic.Anthropic(api_key=key, base_url=gw.proxy, max_retries=0)
    reply = claude.messages.with_raw_response.create(
        model="claude-haiku-4-5",
        max_tokens=50,
        messages=[{"role": "user", "content": "[[words:5]] hi"}],
    )
    gpt = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
    streamed = gpt.chat.completions.create(
        model="gpt-4o-mini",
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "[[words:5]] hi"}],
    )
    assert any(c.usage for c in streamed)
    cost = Decimal(reply.headers["x-tokenrelay-cost-usd"])

    page = b.http.get("/dashboard").text
    rows = re.findall(r'<tr data-request-id="([^"]+)">(.*?)</tr>', page, re.S)
    assert len(rows) == 2
    assert {"claude-haiku-4-5", "gpt-4o-mini"} <= set(re.findall(r"<td>([a-z0-9.-]+)</td>", page))
    assert f"${cost}" in page or f"${cost:.9f}".rstrip("0") in page
    assert Decimal(b.balance()) < Decimal("1.00")

    export = b.http.get("/dashboard/usage.csv")
    assert export.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(export.text)))
    assert {r["request_id"] for r in table} == {rid for rid, _ in rows}
    assert sum(Decimal(r["cost_usd"]) for r in table) == Decimal("1.00") - Decimal(b.balance())

    only_claude = b.http.get("/dashboard/usage", params={"model": "claude-haiku-4-5"}).text
    assert "claude-haiku-4-5" in only_claude and "gpt-4o-mini" not in only_claude

    # Revoked on the dashboard: the SDK gets 401 at once.
    key_id = re.search(r'<tr data-key-id="([^"]+)">', page)
    assert key_id
    r = b.post(f"/dashboard/keys/{key_id.group(1)}/revoke", {}, page="/dashboard")
    assert r.status_code == 200
    with pytest.raises(openai.AuthenticationError):
        gpt.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )


def test_forms_without_the_csrf_token_change_nothing(gw: RunningGateway) -> None:
    b = Browser(gw.url)
    b.sign_up("csrf@example.com")
    for path, form in [
        ("/dashboard/keys", {"name": "sneaky"}),
        ("/dashboard/redeem", {"code": "TR-AAAAAAAAAAAAAAAAAAAA"}),
        ("/logout", {}),
    ]:
        r = b.http.post(path, data=form)
        assert r.status_code == 403, (path, r.text)
        r = b.http.post(path, data={**form, "csrf": "0" * 64})
        assert r.status_code == 403, (path, r.text)
    page = b.http.get("/dashboard").text
    assert "sneaky" not in page and 'data-key-id="' not in page
    # A sign-up form posted from elsewhere (no pre-session cookie, no token) is refused too.
    other = Browser(gw.url)
    r = other.http.post("/signup", data={"email": "x@example.com", "password": PASSWORD})
    assert r.status_code == 403


def test_one_account_cannot_see_or_revoke_another_accounts_keys(gw: RunningGateway) -> None:
    a, b = Browser(gw.url), Browser(gw.url)
    a.sign_up("a@example.com")
    b.sign_up("b@example.com")
    a_key = a.create_key("a-key")
    a_page = a.http.get("/dashboard").text
    a_key_id = re.search(r'<tr data-key-id="([^"]+)">', a_page)
    assert a_key_id
    client = openai.OpenAI(api_key=a_key, base_url=gw.proxy + "/v1", max_retries=0)
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )

    r = b.post(f"/dashboard/keys/{a_key_id.group(1)}/revoke", {}, page="/dashboard")
    assert r.status_code == 404
    b_page = b.http.get("/dashboard").text
    assert a_key_id.group(1) not in b_page and "a-key" not in b_page
    assert "No requests yet." in b_page
    assert (
        b.http.get("/dashboard/usage.csv", params={"key": a_key_id.group(1)}).text.count("\n") == 1
    )  # the header only: a filter on another account's key finds nothing
    client.chat.completions.create(  # still alive
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    # Signed out: no dashboard, no actions.
    anon = Browser(gw.url)
    assert anon.http.get("/dashboard").url.path == "/login"
    r = anon.http.post(f"/dashboard/keys/{a_key_id.group(1)}/revoke", data={})
    assert r.status_code == 401


def test_bad_input_gets_a_clear_4xx(gw: RunningGateway) -> None:
    b = Browser(gw.url)
    r = b.post("/signup", {"email": "not-an-email", "password": PASSWORD})
    assert r.status_code == 400 and "valid email" in (form_error(r) or "")
    r = b.post("/signup", {"email": "short@example.com", "password": "short"})
    assert r.status_code == 400 and "at least 10" in (form_error(r) or "")
    b.sign_up("bad@example.com")
    r = b.post("/signup", {"email": "BAD@example.com", "password": PASSWORD})
    assert r.status_code == 400 and "exists" in (form_error(r) or "")
    r = b.post("/dashboard/keys", {"name": "k", "rpm": "-1"}, page="/dashboard")
    assert r.status_code == 400 and "rpm" in (form_error(r) or "")
    r = b.post("/dashboard/redeem", {"code": "hello"}, page="/dashboard")
    assert r.status_code == 400 and "not a redemption code" in (form_error(r) or "")
    r = b.post("/dashboard/redeem", {"code": "TR-AAAAAAAAAAAAAAAAAAAA"}, page="/dashboard")
    assert r.status_code == 400 and "unknown code" in (form_error(r) or "")
    assert b.balance() == "1.00"
    assert b.http.get("/dashboard/usage", params={"at": "garbage", "rid": "x"}).status_code == 200


def test_sign_in_is_throttled_after_repeated_failures(gw: RunningGateway) -> None:
    b = Browser(gw.url)
    b.sign_up("throttle@example.com")
    other = Browser(gw.url)
    codes = [
        other.post(
            "/login", {"email": "throttle@example.com", "password": "wrong password!"}
        ).status_code
        for _ in range(6)
    ]
    assert codes == [401] * 5 + [429], codes
    # Even the right password waits now.
    r = other.post("/login", {"email": "throttle@example.com", "password": PASSWORD})
    assert r.status_code == 429 and "retry-after" in r.headers


def test_password_reset_by_a_signed_link_from_the_dev_log(
    gw: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    b = Browser(gw.url)
    b.sign_up("reset@example.com")
    assert b.http.get("/dashboard").url.path == "/dashboard"
    anon = Browser(gw.url)
    with caplog.at_level(logging.WARNING, logger="tokenrelay.portal"):
        r = anon.post("/reset", {"email": "reset@example.com"})
        unknown = anon.post("/reset", {"email": "nobody@example.com"})
    assert r.status_code == 200 and unknown.text.count("reset link") == r.text.count("reset link")
    lines = [rec.getMessage() for rec in caplog.records if "password reset" in rec.getMessage()]
    assert len(lines) == 1 and PASSWORD not in lines[0]
    link = lines[0].rsplit(" ", 1)[1]
    path = link[len(gw.url) :]
    r = anon.post(path, {"password": "a brand new password"})
    assert r.status_code == 200 and r.url.path == "/dashboard"
    # The link is spent (the password changed), the old password is gone, and so is the
    # session signed in with it.
    assert anon.http.get(path).status_code == 400
    assert b.http.get("/dashboard").url.path == "/login"
    assert anon.http.get("/dashboard").url.path == "/dashboard"
    fresh = Browser(gw.url)
    assert (
        fresh.post("/login", {"email": "reset@example.com", "password": PASSWORD}).status_code
        == 401
    )
    r = fresh.post("/login", {"email": "reset@example.com", "password": "a brand new password"})
    assert r.url.path == "/dashboard"


def test_operator_console_adjusts_credit_with_a_reason_and_shows_margin(
    gw: RunningGateway,
) -> None:
    async def create_operator() -> None:
        engine = create_engine(gw.settings.database_url)
        try:
            await AdminUsers(engine).create("ops@example.com", "operator password 1")
        finally:
            await engine.dispose()

    asyncio.run(create_operator())
    customer = Browser(gw.url)
    customer.sign_up("paying@example.com")
    key = customer.create_key("prod")
    openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    # A customer session is no operator session, and the admin API token opens no page.
    assert customer.http.get("/admin").url.path == "/admin/login"
    token = Browser(gw.url)
    token.http.headers["authorization"] = f"Bearer {ADMIN_TOKEN}"
    assert token.http.get("/admin").url.path == "/admin/login"

    ops = Browser(gw.url)
    wrong = ops.post("/admin/login", {"email": "ops@example.com", "password": "not it at all"})
    assert wrong.status_code == 401
    r = ops.post("/admin/login", {"email": "ops@example.com", "password": "operator password 1"})
    assert r.url.path == "/admin", r.text[:300]
    console = r.text
    margin = re.search(r'data-testid="margin-vendor">(.*?)</table>', console, re.S)
    assert margin and "openai" in margin.group(1)
    account_id = re.search(r"<code>(acct_[0-9a-f]+)</code></td><td>paying@example.com", console)
    assert account_id

    r = ops.post("/admin/credit", {"account_id": account_id.group(1), "amount": "2.5"}, "/admin")
    assert r.status_code == 400 and "reason" in r.text  # no reason, no money
    r = ops.post(
        "/admin/credit",
        {"account_id": account_id.group(1), "amount": "lots", "reason": "x"},
        "/admin",
    )
    assert r.status_code == 400
    before = Decimal(customer.balance())
    r = ops.post(
        "/admin/credit",
        {"account_id": account_id.group(1), "amount": "2.5", "reason": "goodwill"},
        "/admin",
    )
    assert r.status_code == 200 and r.url.path == "/admin"
    assert Decimal(customer.balance()) == before + Decimal("2.5")
    audit = re.search(r'data-testid="audit">(.*?)</table>', r.text, re.S)
    assert audit and "ops@example.com" in audit.group(1) and "goodwill" in audit.group(1)

    r = ops.post("/admin/codes", {"count": "3", "amount": "1.00"}, "/admin")
    codes = re.search(r'data-testid="codes">([^<]+)<', r.text)
    assert codes and len(codes.group(1).split()) == 3
    r = customer.post("/dashboard/redeem", {"code": codes.group(1).split()[0]}, "/dashboard")
    assert r.status_code == 200 and "$1.00 added" in r.text
    assert Decimal(customer.balance()) == before + Decimal("3.5")


def test_operator_moves_an_account_into_a_dearer_price_group(gw: RunningGateway) -> None:
    async def create_operator() -> None:
        engine = create_engine(gw.settings.database_url)
        try:
            await AdminUsers(engine).create("groups@example.com", "operator password 2")
        finally:
            await engine.dispose()

    asyncio.run(create_operator())
    customer = Browser(gw.url)
    customer.sign_up("retail@example.com")
    ops = Browser(gw.url)
    page = ops.post(
        "/admin/login", {"email": "groups@example.com", "password": "operator password 2"}
    )
    account = re.search(r"<code>(acct_[0-9a-f]+)</code></td><td>retail@example.com", page.text)
    assert account
    bad = ops.post("/admin/price-groups", {"group": "retail", "multiplier": "-2"}, "/admin")
    assert bad.status_code == 400
    r = ops.post(
        "/admin/price-groups",
        {"group": "retail", "multiplier": "1.5", "account_id": account.group(1)},
        "/admin",
    )
    assert r.status_code == 200 and "retail x1.5" in r.text
    key = customer.create_key("retail-key")  # a new key: read with its account's group
    openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "[[words:7]] hi"}], max_tokens=20
    )
    page = customer.http.get("/dashboard").text
    key_id = re.search(r'<tr data-key-id="([^"]+)">', page)
    assert key_id
    records = httpx.get(
        f"{gw.url}/admin/v1/usage",
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        params={"key_id": key_id.group(1)},
    ).json()["data"]
    assert len(records) == 1
    upstream = Decimal(records[0]["upstream_cost_usd"])
    assert upstream > 0
    nano = upstream * 10**9
    assert Decimal(records[0]["cost_usd"]) * 10**9 == -((-nano * 3) // 2)  # 1.5x, rounded up


def test_docs_show_every_client_format_and_the_cli_setup_the_tests_run(gw: RunningGateway) -> None:
    """/docs names the four client formats' base URLs and shows each coding CLI's set-up as
    tokenrelay.portal.client_setup gives it: the one the real CLIs run with in tests/clients."""
    from html import unescape

    from tokenrelay.portal import client_setup

    page = unescape(httpx.get(gw.url + "/docs").text)
    assert f"{gw.url}/api/proxy/v1" in page and "x-goog-api-key" in page
    assert "OpenAI Responses" in page and "Gemini generateContent" in page
    env = client_setup.claude_code_env(gw.url, "$TOKENRELAY_API_KEY")
    assert all(f"export {k}={v}" in page for k, v in env.items())
    shown = re.search(r'model = "([^"]+)"\nmodel_provider', page)
    assert shown is not None
    assert client_setup.codex_config(gw.url, shown.group(1)) in page
    assert client_setup.gemini_settings_json() in page
    gemini = client_setup.gemini_env(gw.url, "$TOKENRELAY_API_KEY")
    assert all(f"export {k}={v}" in page for k, v in gemini.items())
