"""The operator console over real HTTP on a real gateway (emulated vendors): every change goes
through the operator service layer, role checks hold server-side, money moves once per form,
a disabled account is refused at once, price changes reach /v1/models at once, TOTP guards
sign-in and server-side sessions end everywhere."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal

import httpx
import openai
import pyotp
import pytest
from portal_support import CSRF, Browser, operator, sign_in

from backends import BACKENDS, backend
from gateway_support import ADMIN_TOKEN, RunningGateway, served

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module", params=BACKENDS)
def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("console")
    with backend(request.param, tmp) as b:
        yield from served(
            tmp,
            database_url=b.database_url,
            redis_url=b.redis_url,
            signup_credit_usd=Decimal("1.00"),
            session_secret="console-test-secret-0123",
        )


def customer(gw: RunningGateway, email: str) -> tuple[Browser, str, str]:
    """A signed-up customer with a key; (browser, key, account id)."""
    b = Browser(gw.url)
    b.sign_up(email)
    key = b.create_key("k")
    page = b.http.get("/dashboard").text
    found = re.search(r'<tr data-key-id="([^"]+)">', page)
    assert found
    info = httpx.get(f"{gw.url}/admin/v1/keys/{found.group(1)}", headers=ADMIN).json()
    return b, key, info["account_id"]


def chat(
    gw: RunningGateway, key: str, model: str = "gpt-4o-mini"
) -> openai.types.chat.ChatCompletion:
    client = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "[[words:7]] hi"}], max_tokens=20
    )


def test_credit_adjustment_with_reason_once_per_form_and_bounded_by_role(
    gw: RunningGateway,
) -> None:
    cust, key, account = customer(gw, "paying@example.com")
    chat(gw, key)
    ops = operator(gw, "owner@example.com")
    overview = ops.http.get("/admin?range=24h").text
    assert "gpt-4o-mini" in re.search(r'data-testid="top-models">(.*?)</table>', overview, re.S)[1]
    found = ops.http.get("/admin/customers", params={"q": "paying@"}).text
    assert f"/admin/customers/{account}" in found
    assert account in ops.http.get("/admin/customers", params={"q": key[-4:]}).text

    page = f"/admin/customers/{account}"
    r = ops.post(f"{page}/credit", {"amount": "2.5"}, page)
    assert r.status_code == 400 and "reason" in r.text.lower()  # no reason, no money
    before = Decimal(cust.balance())
    token = CSRF.search(ops.http.get(page).text)
    idem = re.search(r'name="idem" value="([^"]+)"', ops.http.get(page).text)
    assert token and idem
    form = {"amount": "2.5", "reason": "goodwill", "idem": idem[1], "csrf": token[1]}
    for _ in range(2):  # a double submit of the same form credits once
        r = ops.http.post(f"{page}/credit", data=form)
        assert r.status_code == 200 and r.url.path == page
    assert Decimal(cust.balance()) == before + Decimal("2.5")
    trail = re.search(r'data-testid="audit">(.*?)</table>', r.text, re.S)
    assert trail and "owner@example.com" in trail[1] and "goodwill" in trail[1]

    support = operator(gw, "support@example.com", "support")
    r = support.post(f"{page}/credit", {"amount": "60", "reason": "too much"}, page)
    assert r.status_code == 403  # support: at most $50 an adjustment
    r = support.post(f"{page}/credit", {"amount": "5", "reason": "refund"}, page)
    assert r.status_code == 200 and Decimal(cust.balance()) == before + Decimal("7.5")
    viewer = operator(gw, "viewer@example.com", "viewer")
    token = CSRF.search(viewer.http.get(page).text)
    assert token
    r = viewer.http.post(f"{page}/credit", data={"amount": "1", "reason": "x", "csrf": token[1]})
    assert r.status_code == 403 and Decimal(cust.balance()) == before + Decimal("7.5")


def test_disabled_account_is_refused_at_once_and_signed_out(gw: RunningGateway) -> None:
    cust, key, account = customer(gw, "abuser@example.com")
    chat(gw, key)  # the key is cached as good
    ops = operator(gw, "disabler@example.com")
    page = f"/admin/customers/{account}"
    r = ops.post(f"{page}/disable", {"disabled": "yes", "reason": "chargeback"}, page)
    assert r.status_code == 200 and 'data-testid="status">disabled' in r.text
    with pytest.raises(openai.AuthenticationError):
        chat(gw, key)
    assert cust.http.get("/dashboard").url.path == "/login"  # its session ended
    again = Browser(gw.url)
    r = again.post("/login", {"email": "abuser@example.com", "password": "correct horse battery"})
    assert r.status_code == 401
    ops.post(f"{page}/disable", {"disabled": "no", "reason": "resolved"}, page)
    assert chat(gw, key).choices[0].message.content


def test_prices_groups_overrides_and_hidden_models_reach_billing_and_v1_models(
    gw: RunningGateway,
) -> None:
    ops = operator(gw, "pricer@example.com")
    assert "sells at list price" in ops.http.get("/admin").text  # a new install is warned
    r = ops.post("/admin/price-groups", {"group": "retail", "multiplier": "1.5"}, "/admin/models")
    assert r.status_code == 200 and "33.3% margin" in r.text  # a preview, nothing saved yet
    assert "retail" not in re.search(r'data-testid="groups">(.*?)</table>', r.text, re.S)[1]
    r = ops.post(
        "/admin/price-groups",
        {"group": "retail", "multiplier": "1.5", "step": "save"},
        "/admin/models",
    )
    assert r.status_code == 200 and r.url.path == "/admin/models"
    assert "sells at list price" not in ops.http.get("/admin").text

    _, key, account = customer(gw, "retail@example.com")
    page = f"/admin/customers/{account}"
    ops.post(f"{page}/group", {"group": "retail"}, page)
    ops.post(
        "/admin/price-overrides",
        {"group": "retail", "model": "gpt-4o", "multiplier": "2"},
        "/admin/models",
    )
    for model, factor in (("gpt-4o-mini", Decimal("1.5")), ("gpt-4o", Decimal(2))):
        chat(gw, key, model)
        rec = httpx.get(f"{gw.url}/admin/v1/usage", headers=ADMIN, params={"limit": 1}).json()[
            "data"
        ][0]
        assert rec["model"] == model
        nano = Decimal(rec["upstream_cost_usd"]) * 10**9
        assert Decimal(rec["cost_usd"]) * 10**9 == -((-nano * factor) // 1)

    # A list-price change is on /v1/models at once (it was billed but not shown before).
    set_price = {"model": "gpt-4o-mini", "input": "0.33", "output": "1.23"}
    assert httpx.post(f"{gw.url}/admin/v1/prices", headers=ADMIN, json=set_price).status_code == 201
    listed = httpx.get(f"{gw.proxy}/v1/models", headers={"authorization": f"Bearer {key}"}).json()
    mini = next(m for m in listed["data"] if m["id"] == "gpt-4o-mini")
    assert mini["pricing"]["input_per_mtok"] == "0.33"

    ops.post("/admin/models/visibility", {"model": "gpt-4o", "hidden": "yes"}, "/admin/models")
    listed = httpx.get(f"{gw.proxy}/v1/models", headers={"authorization": f"Bearer {key}"}).json()
    assert "gpt-4o" not in {m["id"] for m in listed["data"]}
    with pytest.raises(openai.NotFoundError):
        chat(gw, key, "gpt-4o")
    ops.post("/admin/models/visibility", {"model": "gpt-4o", "hidden": "no"}, "/admin/models")
    assert chat(gw, key, "gpt-4o").choices


def test_code_batches_counts_export_and_revoke(gw: RunningGateway) -> None:
    ops = operator(gw, "codes@example.com")
    r = ops.post("/admin/codes", {"count": "3", "amount": "1.00"})
    codes = re.search(r'data-testid="codes">([^<]+)<', r.text)
    batch = re.search(r"batch \((batch_[0-9a-f]+)\)|batch (batch_[0-9a-f]+)", r.text)
    assert codes and batch
    batch_id = batch[1] or batch[2]
    cust, _, account = customer(gw, "redeemer@example.com")
    first, second = codes[1].split()[:2]
    assert "added" in cust.post("/dashboard/redeem", {"code": first}, "/dashboard").text
    row = re.search(rf'data-batch="{batch_id}">(.*?)</tr>', ops.http.get("/admin/codes").text, re.S)
    assert row and [c for c in re.findall(r"<td>(\d+)</td>", row[1])] == ["3", "1", "2", "0"]
    exported = ops.http.get(f"/admin/codes/{batch_id}.csv").text
    assert "redeemer@example.com" in exported and account in exported

    r = ops.post(f"/admin/codes/{batch_id}/revoke", {}, "/admin/codes")
    assert "cannot be undone" in r.text  # a confirmation step first
    r = ops.post(f"/admin/codes/{batch_id}/revoke", {"confirm": "yes"}, "/admin/codes")
    row = re.search(rf'data-batch="{batch_id}">(.*?)</tr>', r.text, re.S)
    assert row and re.findall(r"<td>(\d+)</td>", row[1]) == ["3", "1", "0", "2"]
    refused = cust.post("/dashboard/redeem", {"code": second}, "/dashboard")
    assert refused.status_code == 400


def test_request_log_filters_pages_and_details(gw: RunningGateway) -> None:
    _, key, account = customer(gw, "logged@example.com")
    for _ in range(3):
        chat(gw, key)
    ops = operator(gw, "logs@example.com")
    page = ops.http.get("/admin/requests", params={"account": account}).text
    rows = re.findall(r'href="/admin/requests/([^"]+)"', page)
    assert len(rows) == 3 and "Prompts and replies are not stored" in page
    assert (
        ops.http.get("/admin/requests", params={"account": account, "status": "error"}).text.count(
            'href="/admin/requests/'
        )
        == 0
    )
    detail = ops.http.get(f"/admin/requests/{rows[0]}").text
    assert "gpt-4o-mini" in detail and "upstream cost" in detail


def test_operators_roles_totp_and_sign_out_everywhere(gw: RunningGateway) -> None:
    owner = operator(gw, "boss@example.com")
    r = owner.post(
        "/admin/operators",
        {"email": "helper@example.com", "password": "operator password 1", "role": "viewer"},
    )
    assert r.url.path == "/admin/operators" and "helper@example.com" in r.text
    helper = sign_in(gw, "helper@example.com")
    r = helper.post(
        "/admin/operators",
        {"email": "x@example.com", "password": "operator password 1", "role": "owner"},
    )
    assert r.status_code == 403  # a viewer adds nobody

    enrol = owner.http.get("/admin/two-factor").text
    secret = re.search(r'data-testid="totp-secret">([A-Z2-7]+)<', enrol)
    assert secret
    r = owner.post(
        "/admin/two-factor", {"secret": secret[1], "code": "000000"}, "/admin/two-factor"
    )
    assert r.status_code == 400
    r = owner.post(
        "/admin/two-factor",
        {"secret": secret[1], "code": pyotp.TOTP(secret[1]).now()},
        "/admin/two-factor",
    )
    assert 'data-testid="my-2fa">on' in r.text
    no_code = Browser(gw.url).post(
        "/admin/login", {"email": "boss@example.com", "password": "operator password 1"}
    )
    assert no_code.status_code == 401
    second = sign_in(gw, "boss@example.com", pyotp.TOTP(secret[1]).now())

    r = second.post("/admin/logout", {"everywhere": "1"}, "/admin/operators")
    assert r.url.path == "/admin/login"
    assert owner.http.get("/admin").url.path == "/admin/login"  # the other session ended too

    owner = sign_in(gw, "boss@example.com", pyotp.TOTP(secret[1]).now())
    owner.post(
        "/admin/operators/remove",
        {"email": "helper@example.com", "confirm": "yes"},
        "/admin/operators",
    )
    assert helper.http.get("/admin").url.path == "/admin/login"


def test_admin_api_disables_an_account_through_the_same_service_layer(
    gw: RunningGateway,
) -> None:
    _, key, account = customer(gw, "api-disabled@example.com")
    chat(gw, key)
    url = f"{gw.url}/admin/v1/accounts/{account}"
    assert httpx.post(f"{url}/disable", headers=ADMIN, json={}).status_code == 400  # no reason
    r = httpx.post(f"{url}/disable", headers=ADMIN, json={"reason": "chargeback"})
    assert r.status_code == 200 and r.json() == {"id": account, "disabled": True}
    with pytest.raises(openai.AuthenticationError):
        chat(gw, key)
    assert httpx.post(f"{url}/enable", headers=ADMIN, json={"reason": "ok"}).status_code == 200
    assert chat(gw, key).choices
    nobody = f"{gw.url}/admin/v1/accounts/acct_nobody/disable"
    assert httpx.post(nobody, headers=ADMIN, json={"reason": "x"}).status_code == 404
    ops = operator(gw, "api-audit@example.com")
    trail = ops.http.get(f"/admin/customers/{account}").text
    assert "admin-api" in trail and "chargeback" in trail
