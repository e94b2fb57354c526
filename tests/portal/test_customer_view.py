"""What a customer sees (issue 20, items 6 and 8): never the upstream cost, on the account API,
the dashboard or the CSV; and an operator's sign-out ends the console session too."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal

import httpx
import openai
import pytest
from portal_support import Browser

from gateway_support import RunningGateway, served
from tokenrelay.admin.operators import OperatorStore
from tokenrelay.store.db import create_engine


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    yield from served(
        tmp_path_factory.mktemp("view"),
        session_secret="view-secret-0123456789",
        signup_credit_usd=Decimal("1.00"),
    )


def test_the_customer_never_sees_the_upstream_cost(gw: RunningGateway) -> None:
    b = Browser(gw.url)
    b.sign_up("viewer@example.com")
    key = b.create_key("laptop")
    gpt = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
    gpt.chat.completions.create(
        model="gpt-4o-mini", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
    )
    account = httpx.get(gw.proxy + "/v1/account", headers={"authorization": f"Bearer {key}"})
    assert account.status_code == 200
    (usage,) = account.json()["recent_usage"]
    assert usage["model"] == "gpt-4o-mini" and "cost_usd" in usage
    for surface in (
        account.text,
        b.http.get("/dashboard").text,
        b.http.get("/dashboard/usage.csv").text,
    ):
        assert "upstream" not in surface.lower()
        assert "price_version" not in surface


def test_an_operator_sign_out_ends_the_console_session(gw: RunningGateway) -> None:
    async def create_operator() -> None:
        engine = create_engine(gw.settings.database_url)
        try:
            await OperatorStore(engine).create("leaving-ops@example.com", "operator password 1")
        finally:
            await engine.dispose()

    asyncio.run(create_operator())
    ops = Browser(gw.url)
    r = ops.post(
        "/admin/login", {"email": "leaving-ops@example.com", "password": "operator password 1"}
    )
    assert r.url.path == "/admin"
    cookie = str(ops.http.cookies.get("tr_operator"))
    ops.post("/admin/logout", {}, page="/admin")
    old = httpx.get(gw.url + "/admin", cookies={"tr_operator": cookie})
    assert old.status_code == 303 and old.headers["location"] == "/admin/login"
