"""The console's reads by status and a customer's top-ups stay index range scans on a ledger
and a usage table of millions of rows, although those indexes leave out the rows every request
writes (debits, requests that ended ok: store/tables.py, migration 0019). The queries must
state the partial index's condition themselves; without it SQLite scans the table."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert

from tokenrelay.admin import reads
from tokenrelay.store.db import create_engine, create_if_new
from tokenrelay.store.tables import accounts


def _plans(db: Path, run: Any) -> list[str]:
    """What SQLite's planner does for each statement `run(engine)` executes."""
    seen: list[tuple[str, Any]] = []

    async def main() -> None:
        engine = create_engine(f"sqlite:///{db}")
        try:
            await create_if_new(engine)

            @event.listens_for(engine.sync_engine, "before_cursor_execute")
            def record(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
                seen.append((statement, params))

            await run(engine)
        finally:
            await engine.dispose()

    asyncio.run(main())
    conn = sqlite3.connect(db)
    try:
        return [
            " / ".join(r[-1] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            for sql, params in seen
        ]
    finally:
        conn.close()


def test_the_request_log_filtered_by_a_failed_status_reads_the_status_index(
    tmp_path: Path,
) -> None:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)

    async def run(engine: Any) -> None:
        await reads.requests(engine, reads.RequestFilter(status="error", since=since), None)

    [plan] = [p for p in _plans(tmp_path / "t.db", run) if "usage_records" in p]
    assert "USING INDEX ix_usage_records_status_started_at (status=?" in plan, plan


def test_a_customers_top_ups_read_the_account_index(tmp_path: Path) -> None:
    async def run(engine: Any) -> None:
        async with engine.begin() as conn:
            now = dt.datetime.now(dt.UTC)
            values = {"id": "acct_x", "name": "x", "price_group": "default", "created_at": now}
            await conn.execute(insert(accounts).values(values))
        assert await reads.customer(engine, "acct_x") is not None

    plans = [p for p in _plans(tmp_path / "t.db", run) if "ledger" in p]
    assert plans and all("INDEX ix_ledger_account_id (account_id=?)" in p for p in plans), plans
