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
from gateway_support import RunningGateway, start_gateway


@pytest.fixture(scope="module", params=BACKENDS)
def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("account")
    with backend(request.param, tmp) as b:
        gateway, thread = start_gateway(
            tmp,
            database_url=b.database_url,
            redis_url=b.redis_url,
            session_secret="account-page-secret-0123",
            signup_credit_usd=Decimal("2.50"),
            support_email="help@example.com",
        )
        yield gateway
        gateway.server.should_exit = True
        thread.join(timeout=10)


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
    assert "$2.50 USD" in receipt.text and "receipts-a@example.com" in receipt.text
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
    assert re.search(r'data-testid="alert">\$5\.00<', c.http.get("/account").text)
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
