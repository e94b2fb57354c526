"""Hypothesis over every form of the customer portal and the operator console (issue 20): each
POST route the pages serve gets generated bodies, signed in as a verified customer and as an
operator, with valid CSRF and one-time tokens most of the time (so the fields reach the code
behind them), any field names and values, and raw bodies of any content type. No answer is a
5xx, and the ledger still adds up.

Examples per form: TOKENRELAY_FUZZ_EXAMPLES (default 20); the count of bodies tried is printed
(`pytest tests/fuzz/test_portal_forms_fuzz.py -s`).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).parents[1] / "portal"))
from portal_support import Browser

from gateway_support import RunningGateway, served
from tokenrelay.admin.operators import OperatorStore
from tokenrelay.billing import ledger
from tokenrelay.store.db import create_engine

EXAMPLES = int(os.environ.get("TOKENRELAY_FUZZ_EXAMPLES", "20"))
OPERATOR = ("fuzz-ops@example.com", "operator password 1")
# Every field name some form reads, and a few it does not.
FIELDS = [
    "email", "password", "code", "name", "rpm", "tpm", "models", "daily_cap", "monthly_cap",
    "expires", "usd", "account_id", "amount", "reason", "count", "group", "multiplier", "x",
    "vendor", "base_url", "key", "weight", "region", "drained", "ip", "blocked", "step",
    "current", "new",
]  # fmt: skip
ADDRESSES = (f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" for n in itertools.count(1))
TRIED: dict[str, int] = {}
# What a form's path names: a deployment that exists (its forms reach the code behind them),
# ids that do not.
PATH_VALUES = {
    "{key_id}": "key_missing",
    "{vendor}": "openai",
    "{name}": "default",
    "{account_id}": "acct_missing",
    "{batch_id}": "batch_missing",
}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    yield from served(
        tmp_path_factory.mktemp("forms"),
        session_secret="forms-fuzz-secret-0123456789",
        signup_credit_usd=Decimal("1.00"),
        signup_per_ip_hour=10**6,
        signup_per_hour=10**6,
    )


def form_paths(gw: RunningGateway) -> list[str]:
    """Every POST route of the pages (not the JSON APIs, not Stripe's webhook)."""
    httpx.get(gw.url + "/", timeout=30)  # the pages join the routes with the first one asked for
    app: Any = gw.server.config.app
    paths = [
        r.path
        for r in app._other.routes
        if isinstance(r, Route)
        and "POST" in (r.methods or ())
        and not r.path.startswith(("/api/", "/admin/v1", "/stripe/"))
    ]
    return sorted(paths, key=lambda p: (p.endswith("/logout"), p))  # signing out comes last


@pytest.fixture(scope="module")
def signed_in(gw: RunningGateway) -> dict[str, Browser]:
    customer = Browser(gw.url)
    customer.sign_up("fuzzed@example.com")
    customer.create_key("target")

    async def operator() -> None:
        engine = create_engine(gw.settings.database_url)
        try:
            await OperatorStore(engine).create(*OPERATOR)
        finally:
            await engine.dispose()

    asyncio.run(operator())
    ops = Browser(gw.url)
    r = ops.post("/admin/login", {"email": OPERATOR[0], "password": OPERATOR[1]})
    assert r.url.path == "/admin"
    return {"customer": customer, "operator": ops}


values = st.one_of(
    st.text(max_size=200),
    st.sampled_from(["", "0", "-1", "1e309", "NaN", "10", "100", "1.5", "2030-01-01", "TR-"]),
    st.from_regex(r"TR-[A-Z2-7]{20}", fullmatch=True),
    st.integers().map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
)
form_bodies = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=20), values, max_size=8)
raw_bodies = st.tuples(
    st.sampled_from(
        ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain", "", "a/b"]
    ),
    st.binary(max_size=2000),
)


def test_every_form_is_fuzzed(gw: RunningGateway) -> None:
    paths = form_paths(gw)
    assert {
        "/signup",
        "/login",
        "/dashboard/keys",
        "/admin/customers/{account_id}/credit",
        "/admin/codes",
        "/admin/upstreams",
        "/admin/upstreams/{vendor}/{name}/key",
        "/admin/signups",
        "/admin/password",
    } <= set(paths)


def fuzz_form(browser: Browser, page: str, path: str, who: str) -> None:
    """Generated bodies to one form, as `browser` (its tokens taken from `page`)."""

    @given(fields=form_bodies, raw=raw_bodies, tokens=st.booleans(), as_raw=st.booleans())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(fields: dict[str, str], raw: tuple[str, bytes], tokens: bool, as_raw: bool) -> None:
        address = {"x-forwarded-for": next(ADDRESSES)}
        if as_raw:
            headers = {**address, **({"content-type": raw[0]} if raw[0] else {})}
            r = browser.http.post(path, content=raw[1], headers=headers)
        else:
            sent = {**fields, **(browser.form_tokens(page) if tokens else {})}
            r = browser.http.post(path, data=sent, headers=address)
        TRIED[who] = TRIED.get(who, 0) + 1
        assert r.status_code < 500, (path, r.status_code, r.text[:300])

    run()


@pytest.mark.parametrize("who", ["customer", "operator", "nobody"])
def test_no_form_answers_5xx(gw: RunningGateway, signed_in: dict[str, Browser], who: str) -> None:
    browser = signed_in.get(who) or Browser(gw.url)
    page = "/admin" if who == "operator" else "/dashboard" if who == "customer" else "/login"
    for path in form_paths(gw):
        for param, value in PATH_VALUES.items():
            path = path.replace(param, value)
        fuzz_form(browser, page, path, who)
    print(f"\n{who}: {TRIED.get(who, 0)} bodies over {len(form_paths(gw))} forms, 5xx = 0")


def test_the_ledger_adds_up_after_fuzzing(gw: RunningGateway) -> None:
    async def problems() -> list[Any]:
        engine = create_engine(gw.settings.database_url)
        try:
            return list(await ledger.verify(engine))
        finally:
            await engine.dispose()

    assert asyncio.run(problems()) == []
    assert httpx.get(gw.url + "/healthz").status_code == 200
