"""The account page over real HTTP, on SQLite and on PostgreSQL + Redis: top-ups with printable
receipts (never another account's), a low-balance alert threshold, the export, and deletion
(the balance's fate stated first; afterwards the keys answer 401 and the pages need a sign-in)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import openai
import pytest
from portal_support import Browser, form_error

from backends import BACKENDS, backend
from gateway_support import RunningGateway, served


@pytest.fixture(scope="module", params=BACKENDS)
def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("account")
    with backend(request.param, tmp) as b:
        yield from served(
            tmp,
            database_url=b.database_url,
            redis_url=b.redis_url,
            session_secret="account-page-secret-0123",
            signup_credit_usd=Decimal("2.50"),
            support_email="help@example.com",
        )


def test_top_ups_have_receipts_only_their_owner_sees(gw: RunningGateway) -> None:
    a, b = Browser(gw.url), Browser(gw.url)
    a.sign_up("receipts-a@example.com")
    b.sign_up("receipts-b@example.com")
    page = a.http.get("/account").text
    assert "$2.50" in page.split('data-testid="topups"')[1]
    link = re.search(r'href="(/account/receipts/\d+)"', page)
    assert link is not None
    receipt = a.http.get(link.group(1))
    assert receipt.status_code == 200
    assert "$2.500000 USD" in receipt.text and "receipts-a@example.com" in receipt.text
    assert b.http.get(link.group(1)).status_code == 404  # another account's entry
    assert a.http.get("/account/receipts/nope").status_code == 404
    a.close()
    b.close()


def test_the_low_balance_alert_threshold(gw: RunningGateway) -> None:
    c = Browser(gw.url)
    c.sign_up("alert@example.com")
    r = c.post("/account/alert", {"threshold": "abc"}, page="/account")
    assert r.status_code == 400 and "Alert threshold" in (form_error(r) or "")
    r = c.post("/account/alert", {"threshold": "5.00"}, page="/account")
    assert r.status_code == 200
    assert re.search(r'data-testid="alert">\$5\.000000<', c.http.get("/account").text)
    r = c.post("/account/alert", {"threshold": ""}, page="/account")
    assert "(now off)" in c.http.get("/account").text
    c.close()


def test_export_then_delete_the_account(gw: RunningGateway, tmp_path: Path) -> None:
    c = Browser(gw.url)
    c.sign_up("leaving@example.com")
    key = c.create_key("laptop")
    exported = c.http.get("/account/export.json")
    data = json.loads(exported.text)
    assert data["account"]["email"] == "leaving@example.com"
    assert [k["name"] for k in data["keys"]] == ["laptop"] and key not in exported.text
    assert any(e["amount_nano"] == 2_500_000_000 for e in data["ledger"])
    assert len(data["sign_ins"]) == 1 and data["sign_ins"][0]["created_at"].endswith("+00:00")

    page = c.http.get("/account").text
    assert "not paid out automatically" in page and "$2.50" in page.split('id="h-delete"')[1]
    r = c.post("/account/delete", {"confirm": "someone@else.example"}, page="/account")
    assert r.status_code == 400
    r = c.post("/account/delete", {"confirm": "Leaving@Example.com"}, page="/account")
    assert r.status_code == 200 and "account is deleted" in r.text
    assert c.http.get("/dashboard").url.path == "/login"
    client = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
    c.close()


def _sign_in(gw: RunningGateway, email: str, password: str, agent: str) -> Browser:
    c = Browser(gw.url)
    c.http.headers["user-agent"] = agent
    r = c.post("/login", {"email": email, "password": password})
    assert r.status_code == 200 and r.url.path == "/dashboard", r.text[:300]
    return c


def test_sessions_list_sign_out_one_and_everywhere(gw: RunningGateway) -> None:
    email, pw = "devices@example.com", "correct horse battery"
    laptop = Browser(gw.url)
    laptop.sign_up(email, pw)
    phone = _sign_in(gw, email, pw, "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Safari/604.1")
    desk = _sign_in(gw, email, pw, "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0 Safari/537.36")
    page = laptop.http.get("/account").text
    table = page.split('data-testid="sessions"')[1].split("</table>")[0]
    assert table.count("<tr data-session=") == 3
    assert "Safari on iPhone" in table and "Chrome on Linux" in table
    assert table.count("(this browser)") == 1

    # Sign the phone out from the laptop: the phone's next page asks for a sign-in.
    phone_row = next(r for r in table.split("<tr ")[1:] if "iPhone" in r)
    action = re.search(r'action="(/account/sessions/[0-9a-f]+/end)"', phone_row)
    assert action is not None
    r = laptop.post(action.group(1), {}, page="/account")
    assert r.url.path == "/account" and "That sign-in has ended." in r.text
    assert phone.http.get("/dashboard").url.path == "/login"
    assert desk.http.get("/dashboard").url.path == "/dashboard"
    assert laptop.http.get("/account").text.count("<tr data-session=") == 2

    # Everywhere: this browser too.
    r = desk.post("/account/sessions/end-all", {}, page="/account")
    assert r.url.path == "/login"
    assert laptop.http.get("/dashboard").url.path == "/login"
    assert desk.http.get("/account").url.path == "/login"
    for c in (laptop, phone, desk):
        c.close()


def test_password_change_ends_the_other_sessions(gw: RunningGateway) -> None:
    email, old, new = "rotate@example.com", "correct horse battery", "staple battery horse"
    here = Browser(gw.url)
    here.sign_up(email, old)
    elsewhere = _sign_in(gw, email, old, "Mozilla/5.0 (Windows NT 10.0) Firefox/131.0")

    r = here.post("/account/password", {"current": "not it at all", "new": new}, page="/account")
    assert r.status_code == 400 and "current password" in (form_error(r) or "")
    r = here.post("/account/password", {"current": old, "new": "short"}, page="/account")
    assert r.status_code == 400
    assert elsewhere.http.get("/dashboard").url.path == "/dashboard"  # nothing changed yet

    r = here.post("/account/password", {"current": old, "new": new}, page="/account")
    assert r.status_code == 200 and r.url.path == "/account"
    assert "every other sign-in has ended" in r.text
    assert r.text.count("<tr data-session=") == 1  # this browser, signed in again
    assert here.http.get("/dashboard").url.path == "/dashboard"
    assert elsewhere.http.get("/dashboard").url.path == "/login"
    # The new password signs in, the old one no longer does.
    assert Browser(gw.url).post("/login", {"email": email, "password": old}).status_code == 401
    _sign_in(gw, email, new, "curl/8.5").close()
    here.close()
    elsewhere.close()
