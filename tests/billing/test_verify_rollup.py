"""`ledger verify` checks every column of usage_daily against the usage records, both ways:
a tampered roll-up row (tripled upstream cost, zeroed tokens, moved to another day) and a row
for an account without usage are each reported (issue 21, item 8)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncEngine

from backends import BACKENDS, backend
from tokenrelay.billing import ledger
from tokenrelay.billing.engine import BillingEngine
from tokenrelay.billing.writer import UsageRecord
from tokenrelay.catalog import Catalog
from tokenrelay.customers.keys import KeyStore
from tokenrelay.settings import Settings
from tokenrelay.store.db import create_engine, migrate_async
from tokenrelay.store.tables import usage_daily

d = usage_daily.c


@pytest.fixture(params=BACKENDS)
async def served(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A database holding three settled requests of one account (two models)."""
    with backend(request.param, tmp_path) as store:
        engine = create_engine(store.database_url)
        await migrate_async(engine)
        key, _ = await KeyStore(engine).create("audited", Decimal(10))
        settings = Settings(TOKENRELAY_DATABASE_URL=store.database_url)  # type: ignore[call-arg]
        billing = BillingEngine(settings, engine, Catalog.load())
        await billing.start(serving=False)
        try:
            for model, tokens in (("gpt-4o", 100), ("gpt-4o", 250), ("gpt-4o-mini", 40)):
                rid = "req-" + uuid.uuid4().hex
                admission = await billing.admit(key, rid, model, 1_000, 1_000)
                record = UsageRecord(request_id=rid, key_id=key.id, model=model, vendor="openai")
                record.input_tokens, record.output_tokens = tokens, tokens // 2
                await billing.settle(admission, record)
        finally:
            await billing.close()
        assert await ledger.verify(engine) == []
        yield engine
        await engine.dispose()


async def _tampered(engine: AsyncEngine, statement: Any) -> list[str]:
    async with engine.begin() as conn:
        await conn.execute(statement)
    return await ledger.verify(engine)


async def test_tripled_upstream_cost_fails_verify(served: AsyncEngine) -> None:
    problems = await _tampered(
        served,
        update(usage_daily)
        .where(d.model == "gpt-4o")
        .values(upstream_cost_nano=d.upstream_cost_nano * 3),
    )
    assert len(problems) == 1 and "upstream_cost_nano" in problems[0], problems


async def test_zeroed_tokens_fail_verify(served: AsyncEngine) -> None:
    problems = await _tampered(
        served, update(usage_daily).where(d.model == "gpt-4o-mini").values(output_tokens=0)
    )
    assert len(problems) == 1 and "output_tokens 0 != 20" in problems[0], problems


async def test_a_row_moved_to_2020_fails_verify(served: AsyncEngine) -> None:
    problems = await _tampered(
        served, update(usage_daily).where(d.model == "gpt-4o").values(day="2020-01-01")
    )
    # Both directions: the day that lost its row, and the 2020 row without records.
    assert len(problems) == 2, problems
    assert any("2020-01-01" in p and "without any usage record" in p for p in problems)
    assert any("missing" in p for p in problems)


async def test_a_row_for_an_account_without_usage_fails_verify(served: AsyncEngine) -> None:
    row = {
        "account_id": "acct_nobody",
        "day": "2026-12-01",
        "model": "gpt-4o",
        "vendor": "openai",
        "requests": 1,
        "errors": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_nano": 1_000_000_000,
        "upstream_cost_nano": 0,
    }
    problems = await _tampered(served, insert(usage_daily).values(**row))
    assert len(problems) == 1 and "acct_nobody" in problems[0], problems
