"""The dashboard of an account with 100,000 usage records renders fast: the usage table is a
keyset page over the (account_id, started_at) index, the chart and per-model sums read 30 days.
Run alone to see the figures: `pytest tests/portal/test_dashboard_scale.py -s`."""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert
from starlette.applications import Starlette

from tokenrelay.billing.engine import BillingEngine
from tokenrelay.billing.writer import ROLLUP_COLUMNS, rollup
from tokenrelay.catalog import Catalog
from tokenrelay.customers.accounts import AccountStore
from tokenrelay.customers.keys import KeyStore
from tokenrelay.portal.routes import Portal
from tokenrelay.settings import Settings
from tokenrelay.store.db import create_engine, migrate_async
from tokenrelay.store.tables import usage_daily, usage_records

ROWS = 100_000
MODELS = ["claude-haiku-4-5", "gpt-4o-mini", "gemini-2.5-flash", "deepseek-chat"]


@pytest.fixture
async def seeded(tmp_path: Path) -> AsyncIterator[tuple[Portal, str]]:
    url = f"sqlite:///{tmp_path}/scale.db"
    engine = create_engine(url)
    await migrate_async(engine)
    settings = Settings(TOKENRELAY_DATABASE_URL=url, TOKENRELAY_SESSION_SECRET="s" * 32)  # type: ignore[call-arg]
    billing = BillingEngine(settings, engine, Catalog.load())
    await billing.start(serving=False)
    keys = KeyStore(engine)
    account = await AccountStore(engine).sign_up("big@example.com", "correct horse battery")
    key, _ = await keys.create("prod", account_id=account.id)
    now = dt.datetime.now(dt.UTC)
    rows: list[dict[str, Any]] = []
    for i in range(ROWS):
        rows.append(
            {
                "request_id": f"req_{i:08d}",
                "key_id": key.id,
                "account_id": account.id,
                "model": MODELS[i % 4],
                "model_asked": MODELS[i % 4],
                "vendor": "openai",
                "stream": i % 2 == 0,
                "fast_path": False,
                "input_tokens": 100,
                "output_tokens": 50,
                "cache_read_tokens": 0,
                "cache_write_tokens": 0,
                "cache_write_1h_tokens": 0,
                "reasoning_tokens": 0,
                "usage_source": "vendor",
                "cost_nano": 1_000 + i % 7,
                "upstream_cost_nano": 900,
                "price_version_id": "catalog",
                "status": "ok",
                "attempts": 1,
                "started_at": now - dt.timedelta(seconds=25 * i),  # ~29 days
            }
        )
    async with engine.begin() as conn:
        for start in range(0, ROWS, 5_000):
            await conn.execute(insert(usage_records), rows[start : start + 5_000])
        # What the settlement writers keep up to date, built here in one go.
        daily = rollup(
            (
                r["account_id"],
                r["started_at"].date().isoformat(),
                r["model"],
                r["vendor"],
                r["status"],
                r["input_tokens"],
                r["output_tokens"],
                r["cost_nano"],
                r["upstream_cost_nano"],
                0,
            )
            for r in rows
        )
        await conn.execute(
            insert(usage_daily), [dict(zip(ROLLUP_COLUMNS, d, strict=True)) for d in daily]
        )
    portal = Portal(settings, keys, billing, lambda: [])
    try:
        yield portal, account.id
    finally:
        await billing.close()
        await engine.dispose()


async def _timed(client: httpx.AsyncClient, path: str, n: int = 7) -> tuple[float, str]:
    times, text = [], ""
    for _ in range(n):
        t0 = time.perf_counter()
        r = await client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, r.text[:300]
        text = r.text
    return statistics.median(times), text


async def test_dashboard_renders_fast_with_100k_usage_rows(seeded: tuple[Portal, str]) -> None:
    portal, _ = seeded
    app = Starlette(routes=portal.routes())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://portal") as client:
        r = await client.get("/login")
        pre = r.cookies.get("tr_pre")
        import re

        token = re.search(r'name="csrf" value="([0-9a-f]+)"', r.text)
        assert token and pre
        r = await client.post(
            "/login",
            data={
                "email": "big@example.com",
                "password": "correct horse battery",
                "csrf": token.group(1),
            },
        )
        assert r.status_code == 303, r.text
        full, page = await _timed(client, "/dashboard")
        assert page.count("<tr data-request-id=") == 50
        assert "gemini-2.5-flash" in page and "chart_days" not in page
        deep = re.search(r'hx-get="/dashboard/usage\?([^"]+)"', page)
        assert deep
        nxt, _ = await _timed(client, "/dashboard/usage?" + deep.group(1).replace("&amp;", "&"))
        filtered, _ = await _timed(client, "/dashboard/usage?model=gpt-4o-mini")
    print(
        f"\ndashboard at {ROWS} rows: full page {full:.1f} ms, next usage page {nxt:.1f} ms, "
        f"filtered page {filtered:.1f} ms (medians of 7, in-process ASGI, SQLite)"
    )
    # The figures are printed, not asserted: a timed assertion fails on a loaded machine and
    # proves nothing on an idle one (the 100 ms target is measured by this test's output).
