"""The customer portal end to end on a real gateway: sign up, get a key shown once, call with
both SDKs and see each request's cost on the dashboard and in the CSV; CSRF on every form;
accounts isolated from each other; sign-in throttled; password reset by a signed link."""

from __future__ import annotations

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

from gateway_support import RunningGateway, served
from tokenrelay.portal.web import dollars

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    yield from served(
        tmp_path_factory.mktemp("portal"),
        signup_credit_usd=Decimal("1.00"),
        session_secret="test-secret-0123456789",
    )


def test_sign_up_key_calls_and_costs_on_the_dashboard(gw: RunningGateway) -> None:
    b = Browser(gw.url)
    landing = b.http.get("/")
    assert "Get your API key" in landing.text
    b.sign_up("alice@example.com")
    assert b.balance() == "1.000000"  # the starting credit
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
    models = set(re.findall(r'<td data-label="Model">([a-z0-9.-]+)</td>', page))
    assert {"claude-haiku-4-5", "gpt-4o-mini"} <= models
    assert dollars(int(cost * 10**9)) in page  # the portal's one money format
    assert Decimal(b.balance()) < Decimal("1.00")

    export = b.http.get("/dashboard/usage.csv")
    assert export.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(export.text)))
    assert {r["request_id"] for r in table} == {rid for rid, _ in rows}
    spent_nano = sum(int(Decimal(r["cost_usd"]) * 10**9) for r in table)  # exact in the CSV
    assert dollars(10**9 - spent_nano) == "$" + b.balance()  # as the dashboard rounds it

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
    assert b.balance() == "1.000000"
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
