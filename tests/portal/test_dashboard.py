"""The dashboard over real HTTP, on SQLite and on PostgreSQL + Redis: spend and requests over
time by model and by key (the chart's data) with a range, each request's billing reason, one
money format, the CSV's signed receipts (the very receipt the answer carried, checkable with
the published key), and empty states that say what to do."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from html import unescape

import httpx
import openai
import pytest
from portal_support import Browser

from backends import BACKENDS, backend
from gateway_support import RunningGateway, served
from tokenrelay.billing.receipts import verify
from tokenrelay.portal.web import dollars


@pytest.fixture(scope="module", params=BACKENDS)
def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("dashboard")
    with backend(request.param, tmp) as b:
        yield from served(
            tmp,
            database_url=b.database_url,
            redis_url=b.redis_url,
            session_secret="dashboard-test-secret-01",
            signup_credit_usd=Decimal("1.00"),
        )


def test_money_has_one_format() -> None:
    assert dollars(0) == "$0.000000"
    assert dollars(21_000) == "$0.000021"
    assert dollars(499) == "$0.000000" and dollars(500) == "$0.000001"  # half up
    assert dollars(1_234_500_000_000) == "$1,234.500000"
    assert dollars(-500_000_000) == "-$0.500000" and dollars(-1) == "$0.000000"


def _chart(page: str) -> dict:
    found = re.search(r'data-chart="([^"]+)"', page)
    assert found, "no chart on the page"
    return json.loads(unescape(found.group(1)))


def test_empty_dashboard_says_what_to_do(gw: RunningGateway) -> None:
    b = Browser(gw.url)
    b.sign_up("empty-dash@example.com")
    page = b.http.get("/dashboard").text
    assert 'data-testid="chart-empty"' in page and "Create an API key below" in page
    assert "No keys yet: create one below." in page
    assert "No requests yet. Add an API key above" in page
    assert 'data-chart="' not in page
    b.create_key("first")
    assert "Make a call with one of your keys" in b.http.get("/dashboard").text
    filtered = b.http.get("/dashboard/usage", params={"model": "gpt-4o"}).text
    assert "No requests match this filter" in filtered
    b.close()


def test_chart_by_model_and_key_reasons_and_signed_csv(gw: RunningGateway) -> None:
    b = Browser(gw.url)
    b.sign_up("charts@example.com")
    keys = {name: b.create_key(name) for name in ("laptop", "ci")}
    calls = [("laptop", "gpt-4o-mini"), ("laptop", "gpt-4o-mini"), ("ci", "claude-haiku-4-5")]
    receipts = {}
    for name, model in calls:
        client = openai.OpenAI(api_key=keys[name], base_url=gw.proxy + "/v1", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model=model,
            messages=[{"role": "user", "content": "[[words:5]] hi"}],
            max_tokens=20,
            extra_headers={"x-tokenrelay-receipt": "1"},
        )
        receipts[raw.headers["x-request-id"]] = raw.headers["x-tokenrelay-receipt"]

    page = b.http.get("/dashboard?days=7").text
    chart = _chart(page)
    assert len(chart["x"]) == 7  # one point a day, empty days as zero
    by_model = dict(zip(chart["model"]["names"], chart["model"]["requests"], strict=True))
    assert sum(by_model["gpt-4o-mini"]) == 2 and sum(by_model["claude-haiku-4-5"]) == 1
    by_key = dict(zip(chart["key"]["names"], chart["key"]["requests"], strict=True))
    assert sum(by_key["laptop"]) == 2 and sum(by_key["ci"]) == 1  # keys by their names
    spent = sum(sum(line) for line in chart["model"]["cost"])
    assert spent > 0 and 'data-testid="requests">3<' in page
    hourly = _chart(b.http.get("/dashboard?days=1").text)
    assert len(hourly["x"]) == 24 and hourly["x"][1] - hourly["x"][0] == 3600

    # Each request: its billing reason (linked to the docs' table) and its cost, as shown.
    rows = re.findall(r'<tr data-request-id="([^"]+)">(.*?)</tr>', page, re.S)
    assert len(rows) == 3
    assert all('href="/docs#reason-completed"' in row for _, row in rows)
    docs = httpx.get(gw.url + "/docs").text
    assert 'id="reason-completed"' in docs and 'id="reason-client_cut_mid_stream"' in docs

    export = b.http.get("/dashboard/usage.csv")
    table = list(csv.DictReader(io.StringIO(export.text)))
    published = httpx.get(gw.url + "/.well-known/tokenrelay-receipts.json").json()
    public = base64.b64decode(published["public_key_base64"])
    for r in table:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["started_at"])
        # The very receipt the answer carried, signed again from the stored record.
        assert r["receipt"] == receipts[r["request_id"]]
        claims = verify(r["receipt"], public)
        assert claims["charged_usd"] == r["cost_usd"] and r["reason"] == "completed"
        assert dollars(int(Decimal(r["cost_usd"]) * 10**9)) in page
    b.close()
