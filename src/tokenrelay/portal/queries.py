"""Dashboard and console reads. Usage pages are keyset-paginated on (started_at, request_id)
over the (account_id, started_at) index: a page costs the same at row 100 and row 100,000."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select

from tokenrelay.billing.engine import BillingEngine
from tokenrelay.billing.holds import MemoryHolds
from tokenrelay.store.async_core import AsyncEngine
from tokenrelay.store.tables import (
    accounts,
    audit_log,
    batch_lines,
    batches,
    usage_daily,
    usage_records,
)

PAGE = 50
CSV_MAX = 100_000


@dataclass(frozen=True, slots=True)
class UsageFilter:
    account_id: str
    model: str | None = None
    key_id: str | None = None
    since: dt.datetime | None = None


def _where(f: UsageFilter) -> list[Any]:
    u = usage_records.c
    clauses: list[Any] = [u.account_id == f.account_id]
    if f.model:
        clauses.append(u.model == f.model)
    if f.key_id:
        clauses.append(u.key_id == f.key_id)
    if f.since:
        clauses.append(u.started_at >= f.since)
    return clauses


Cursor = tuple[dt.datetime, str]  # (started_at, request_id) of the last row of a page


def page_cursor(at: str | None, rid: str | None) -> Cursor | None:
    """The cursor a "next page" link carries (its `at` and `rid`); None: the first page."""
    if not at or not rid:
        return None
    try:
        when = dt.datetime.fromisoformat(at)
    except ValueError:
        return None
    return utc(when), rid[:100]


async def usage_page(
    engine: AsyncEngine, f: UsageFilter, before: Cursor | None, limit: int = PAGE
) -> tuple[list[dict[str, Any]], Cursor | None]:
    return await newest_usage(engine, _where(f), before, limit)


async def newest_usage(
    engine: AsyncEngine, clauses: list[Any], before: Cursor | None, limit: int = PAGE
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """Usage records newest first, keyset-paginated on (started_at, request_id), so page 1 and
    page 20,000 cost the same: the rows and the cursor of the next page (None at the end)."""
    u = usage_records.c
    query = select(usage_records).where(*clauses)
    if before is not None:
        at, rid = as_stored(engine, before[0]), before[1]
        query = query.where(or_(u.started_at < at, and_(u.started_at == at, u.request_id < rid)))
    query = query.order_by(u.started_at.desc(), u.request_id.desc()).limit(limit + 1)
    async with engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    for r in rows:
        r["started_at"] = utc(r["started_at"])
    cursor = (rows[-1]["started_at"], rows[-1]["request_id"]) if more and rows else None
    return rows, cursor


async def usage_csv_rows(engine: AsyncEngine, f: UsageFilter) -> list[dict[str, Any]]:
    u = usage_records.c
    query = (
        select(usage_records)
        .where(*_where(f))
        .order_by(u.started_at.desc(), u.request_id.desc())
        .limit(CSV_MAX)
    )
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


def _since_day(days: int) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=days - 1)).date().isoformat()


async def daily_spend(
    engine: AsyncEngine, account_id: str, days: int = 30
) -> list[tuple[str, int]]:
    d = usage_daily.c
    query = (
        select(d.day, func.sum(d.cost_nano))
        .where(d.account_id == account_id, d.day >= _since_day(days))
        .group_by(d.day)
        .order_by(d.day)
    )
    async with engine.connect() as conn:
        return [(str(day), int(c or 0)) for day, c in await conn.execute(query)]


def _bucket(engine: AsyncEngine, column: Any, hourly: bool) -> Any:
    """The UTC day (or hour) of a timestamp as text, in either database's dialect."""
    if engine.dialect.name == "postgresql":
        fmt = 'YYYY-MM-DD"T"HH24' if hourly else "YYYY-MM-DD"
        return func.to_char(func.timezone("UTC", column), fmt)
    return func.strftime("%Y-%m-%dT%H" if hourly else "%Y-%m-%d", column)


async def usage_series(
    engine: AsyncEngine, account_id: str, since: dt.datetime, *, hourly: bool = False
) -> list[tuple[str, str, str, int, int]]:
    """(bucket, model, key id, requests, cost nano) per UTC day (or hour) since `since`: the
    dashboard's charts by model and by key (the daily roll-up has no key)."""
    u = usage_records.c
    bucket = _bucket(engine, u.started_at, hourly).label("bucket")
    query = (
        select(bucket, u.model, u.key_id, func.count(), func.sum(u.cost_nano))
        .where(u.account_id == account_id, u.started_at >= since)
        .group_by(bucket, u.model, u.key_id)
        .order_by(bucket)
    )
    async with engine.connect() as conn:
        return [
            (str(b), str(m), str(k), int(n), int(c or 0))
            for b, m, k, n, c in await conn.execute(query)
        ]


# ---------------------------------------------------------------- operator console


async def customers(engine: AsyncEngine, limit: int = 200) -> list[dict[str, Any]]:
    query = select(accounts).order_by(accounts.c.created_at.desc()).limit(limit)
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


async def margins(engine: AsyncEngine, by: str, days: int = 30) -> list[dict[str, Any]]:
    """Revenue (customer cost), upstream cost, margin and error rate, grouped by `by`
    (vendor | model | day) over the last `days` days, from the daily roll-up."""
    d = usage_daily.c
    key = {"vendor": d.vendor, "model": d.model, "day": d.day}[by]
    query = (
        select(
            key,
            func.sum(d.requests),
            func.sum(d.cost_nano),
            func.sum(d.upstream_cost_nano),
            func.sum(d.errors),
        )
        .where(d.day >= _since_day(days))
        .group_by(key)
        .order_by(key)
    )
    async with engine.connect() as conn:
        rows = await conn.execute(query)
        return [
            {
                by: str(k),
                "requests": int(n),
                "revenue": int(r or 0),
                "upstream": int(c or 0),
                "margin": int(r or 0) - int(c or 0),
                "error_rate": (int(e or 0) / int(n)) if n else 0.0,
            }
            for k, n, r, c, e in rows
        ]


async def audit(engine: AsyncEngine, limit: int = 100) -> list[dict[str, Any]]:
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


# A batch line's states (batches/store.py; the portal does not import the request path).
# Waiting to run or to go to its vendor: held per line in process; on Redis only the batch's
# admission check held their sum, and each line holds once it runs (batches/jobs.py).
LINE_WAITING = ("pending", "queued")
BATCH_STATUSES = ("in_progress", "cancelling", "ended")
BATCHES_SHOWN = 20


def batch_holds(billing: BillingEngine) -> tuple[str, ...]:
    """The line states whose worst case is held against the balance under `billing`."""
    if not billing.enabled:
        return ()
    running = ("running", "submitting", "at_vendor", "collecting")
    return (*LINE_WAITING, *running) if isinstance(billing.holds, MemoryHolds) else running


async def batch_rows(
    engine: AsyncEngine,
    account_id: str | None = None,
    status: str | None = None,
    limit: int = BATCHES_SHOWN,
    held_states: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Batches newest first (one account's, or every account's for the console), each with its
    lines done/failed/cancelled, what its lines were billed so far and the hold still held
    for its lines in `held_states` (`batch_holds`)."""
    b = batches.c
    q = (
        select(
            b.id,
            b.api,
            b.endpoint,
            b.status,
            b.total,
            b.account_id,
            b.created_at,
            b.ended_at,
            accounts.c.email,
        )
        .select_from(batches.join(accounts, accounts.c.id == b.account_id, isouter=True))
        .where(b.deleted_at.is_(None))
        .order_by(b.created_at.desc(), b.id.desc())
        .limit(limit)
    )
    if account_id is not None:
        q = q.where(b.account_id == account_id)
    if status:
        q = q.where(b.status == status)
    ln = batch_lines.c
    async with engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(q)]
        ids = [r["id"] for r in rows]
        if not ids:
            return []
        counts: dict[str, dict[str, int]] = {}
        held: dict[str, int] = {}
        cost: dict[str, int] = {}
        # A line's cost is what its settlement billed (its usage record `<batch id>-<line no>`
        # has the same), written with its result: one pass over the batch's lines, where a
        # join to the usage records took 1.4 s for 20 batches of 10,000 lines.
        lines = (
            select(
                ln.batch_id, ln.status, func.count(), func.sum(ln.hold_nano), func.sum(ln.cost_nano)
            )
            .where(ln.batch_id.in_(ids))
            .group_by(ln.batch_id, ln.status)
        )
        for batch_id, line_status, n, hold, spent in await conn.execute(lines):
            counts.setdefault(batch_id, {})[line_status] = int(n)
            cost[batch_id] = cost.get(batch_id, 0) + int(spent or 0)
            if line_status in held_states:
                held[batch_id] = held.get(batch_id, 0) + int(hold or 0)
    for r in rows:
        c = counts.get(r["id"], {})
        r["done"] = c.get("succeeded", 0)
        r["failed"] = c.get("errored", 0) + c.get("expired", 0)
        r["cancelled"] = c.get("cancelled", 0)
        r["cost_nano"] = cost.get(r["id"], 0)
        r["held_nano"] = held.get(r["id"], 0)
        r["created_at"] = utc(r["created_at"])
        r["ended_at"] = utc(r["ended_at"]) if r["ended_at"] else None
    return rows


def utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; they were stored in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def as_stored(engine: AsyncEngine, at: dt.datetime) -> dt.datetime:
    """`at` (aware) as the database compares it: SQLite stores naive UTC."""
    return at.replace(tzinfo=None) if engine.url.get_backend_name() == "sqlite" else at
