"""What the console pages read. Every query is bounded and indexed so a page costs about the
same at 10,000 customers and 1,000,000 usage records: money and request counts come from the
daily roll-up (`usage_daily`), hours and latencies from index range scans of `usage_records`
with a per-bucket sample, lists are paginated (keyset for the request log)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, literal, or_, select, union_all

from tokenrelay.portal.queries import Cursor, as_stored, newest_usage, utc
from tokenrelay.store.async_core import AsyncEngine
from tokenrelay.store.tables import (
    LEDGER_NOT_DEBIT,
    USAGE_NOT_OK,
    accounts,
    api_keys,
    audit_log,
    ledger,
    price_multiplier_versions,
    redemption_codes,
    signup_blocks,
    usage_daily,
    usage_records,
)

PAGE = 50
LOW_BALANCE_NANO = 10**9  # "running low" without a threshold of the customer's own: under $1
LATENCY_SAMPLE = 200  # requests per chart bucket for p50/p95 (a sample, said on the page)


@dataclass(frozen=True, slots=True)
class Range:
    start: dt.datetime
    end: dt.datetime
    hourly: bool  # hour buckets (a day or less) or day buckets

    @classmethod
    def named(cls, name: str, start: str = "", end: str = "") -> Range:
        now = dt.datetime.now(dt.UTC)
        if name == "custom":
            try:
                a = dt.datetime.combine(dt.date.fromisoformat(start), dt.time(), dt.UTC)
                b = dt.datetime.combine(dt.date.fromisoformat(end), dt.time(), dt.UTC)
            except ValueError:
                return cls.named("7d")
            b += dt.timedelta(days=1)
            if not a < b or b - a > dt.timedelta(days=366):
                return cls.named("7d")
            return cls(a, b, b - a <= dt.timedelta(days=1))
        days = {"24h": 1, "7d": 7, "30d": 30}.get(name, 7)
        if days == 1:
            return cls(now - dt.timedelta(hours=24), now, True)
        first = (now - dt.timedelta(days=days - 1)).date()
        return cls(dt.datetime.combine(first, dt.time(), dt.UTC), now, False)

    def buckets(self) -> list[dt.datetime]:
        step = dt.timedelta(hours=1) if self.hourly else dt.timedelta(days=1)
        at = (
            self.start.replace(minute=0, second=0, microsecond=0)
            if self.hourly
            else dt.datetime.combine(self.start.date(), dt.time(), dt.UTC)
        )
        out = []
        while at < self.end:
            out.append(at)
            at += step
        return out


def _day(at: dt.datetime) -> str:
    return at.date().isoformat()


# ---------------------------------------------------------------- overview


class Overview:
    """The overview's reads, with what time makes final kept in memory: a bucket (hour or day)
    that ended over an hour ago no longer changes (requests settle within minutes), so its
    totals and latency sample are read once per process. The top lists sum the roll-up over
    every customer: they are kept for TOPS_TTL_S (the page says as of when). A 30-day overview
    then reads today's roll-up rows and today's latency sample."""

    TOPS_TTL_S = 120.0
    SETTLED = dt.timedelta(hours=1)

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._final: dict[tuple[str, str], Any] = {}
        self._tops: dict[tuple[str, str], tuple[float, Any]] = {}

    async def read(self, r: Range) -> dict[str, Any]:
        buckets = r.buckets()
        keys = [b.isoformat() for b in buckets]
        settled = dt.datetime.now(dt.UTC) - self.SETTLED
        step = dt.timedelta(hours=1) if r.hourly else dt.timedelta(days=1)
        final = {k for b, k in zip(buckets, keys, strict=True) if b + step <= settled}
        async with self.engine.connect() as conn:
            # An hour and a day can start at the same instant: the grain is part of the key.
            grain = "hour" if r.hourly else "day"
            series = await self._memo(
                f"series/{grain}", keys, final, lambda todo: self._totals(conn, r, buckets, todo)
            )
            latency = await self._memo(
                f"latency/{grain}",
                keys,
                final,
                lambda todo: _latency(conn, self.engine, buckets, r, todo),
            )
            top_customers, top_models, as_of = await self._top_lists(conn, r)
        rows = [series.get(k) or [0, 0, 0, 0] for k in keys]
        lat = [latency.get(k) or (None, None, None, None) for k in keys]
        totals = [sum(v[i] for v in rows) for i in range(4)]
        return {
            "x": [b.timestamp() for b in buckets],
            "revenue": [v[0] / 1e9 for v in rows],
            "upstream": [v[1] / 1e9 for v in rows],
            "margin": [(v[0] - v[1]) / 1e9 for v in rows],
            "requests": [v[2] for v in rows],
            "error_rate": [(v[3] / v[2] * 100) if v[2] else 0 for v in rows],
            **{name: [v[i] for v in lat] for i, name in enumerate(LATENCY_SERIES)},
            "totals": {
                "revenue": totals[0],
                "upstream": totals[1],
                "margin": totals[0] - totals[1],
                "requests": totals[2],
                "error_rate": totals[3] / totals[2] if totals[2] else 0.0,
            },
            "top_customers": top_customers,
            "top_models": top_models,
            "tops_as_of": as_of,
        }

    async def _memo(
        self,
        kind: str,
        keys: list[str],
        final: set[str],
        load: Callable[[list[str]], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        todo = [k for k in keys if (kind, k) not in self._final]
        fresh = await load(todo) if todo else {}
        if len(self._final) > 100_000:  # bounded (a year of hours and days, several times)
            self._final.clear()
        for k in todo:
            if k in final:
                self._final[(kind, k)] = fresh.get(k)
        return {k: fresh[k] if k in fresh else self._final.get((kind, k)) for k in keys}

    async def _totals(
        self, conn: Any, r: Range, buckets: list[dt.datetime], todo: list[str]
    ) -> dict[str, list[int]]:
        """Revenue, upstream cost, requests and errors of the buckets in `todo`: hours from
        the records (one grouped index range scan), days from the roll-up."""
        wanted = [b for b in buckets if b.isoformat() in todo]
        if r.hourly:
            u = usage_records.c
            if self.engine.url.get_backend_name() == "sqlite":
                bucket: Any = func.strftime("%Y-%m-%dT%H:00:00+00:00", u.started_at)
            else:
                bucket = func.date_trunc("hour", func.timezone("UTC", u.started_at))
            sums: list[Any] = [
                func.sum(u.cost_nano),
                func.sum(u.upstream_cost_nano),
                func.count(),
                func.count().filter(u.status != "ok"),
            ]
            where = [
                u.started_at >= as_stored(self.engine, wanted[0]),
                u.started_at < as_stored(self.engine, wanted[-1] + dt.timedelta(hours=1)),
            ]
        else:
            d = usage_daily.c
            bucket = d.day
            sums = [
                func.sum(d.cost_nano),
                func.sum(d.upstream_cost_nano),
                func.sum(d.requests),
                func.sum(d.errors),
            ]
            where = [d.day.in_([_day(b) for b in wanted])]
        out = {}
        for at, *vals in await conn.execute(select(bucket, *sums).where(*where).group_by(bucket)):
            when = at if isinstance(at, dt.datetime) else dt.datetime.fromisoformat(str(at))
            if not r.hourly:
                when = dt.datetime.combine(when.date(), dt.time())
            out[when.replace(tzinfo=dt.UTC).isoformat()] = [int(v or 0) for v in vals]
        return out

    async def _top_lists(self, conn: Any, r: Range) -> tuple[Any, Any, str]:
        key = (_day(r.start), _day(r.end))
        now = time.monotonic()
        hit = self._tops.get(key)
        if hit is None or hit[0] < now:
            tops = await _tops(conn, r)
            hit = (now + self.TOPS_TTL_S, (*tops, f"{dt.datetime.now(dt.UTC):%H:%M}"))
            if len(self._tops) > 64:
                self._tops.clear()
            self._tops[key] = hit
        return hit[1]


LATENCY_SERIES = ("p50", "p95", "ttft50", "ttft95")


def _int() -> Any:
    from sqlalchemy import Integer

    return Integer()


async def _latency(
    conn: Any, engine: AsyncEngine, buckets: list[dt.datetime], r: Range, todo: list[str]
) -> dict[str, tuple[float | None, ...]]:
    """p50/p95 latency and time to first token of the buckets in `todo`, from the newest
    LATENCY_SAMPLE requests of each (one statement: an index range scan with a limit each)."""
    u = usage_records.c
    step = dt.timedelta(hours=1) if r.hourly else dt.timedelta(days=1)
    wanted = [b for b in buckets if b.isoformat() in todo]
    parts = [
        select(literal(i).label("b"), u.duration_ms, u.ttft_ms)
        .where(
            u.status == "ok",
            u.started_at >= as_stored(engine, b),
            u.started_at < as_stored(engine, b + step),
        )
        .order_by(u.started_at.desc())
        .limit(LATENCY_SAMPLE)
        .subquery()
        .select()
        for i, b in enumerate(wanted)
    ]
    samples: list[tuple[list[int], list[int]]] = [([], []) for _ in wanted]
    for chunk in range(0, len(parts), 200):  # SQLite caps compound selects at 500
        for b, dur, ttft in await conn.execute(union_all(*parts[chunk : chunk + 200])):
            if dur is not None:
                samples[b][0].append(dur)
            if ttft is not None:
                samples[b][1].append(ttft)
    return {
        b.isoformat(): (_pct(d, 0.5), _pct(d, 0.95), _pct(t, 0.5), _pct(t, 0.95))
        for b, (d, t) in zip(wanted, samples, strict=True)
    }


def _pct(values: list[int], q: float) -> float | None:
    if not values:
        return None
    values.sort()
    return float(values[min(len(values) - 1, int(q * len(values)))])


async def _tops(conn: Any, r: Range) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    d = usage_daily.c
    since, until = _day(r.start), _day(r.end + dt.timedelta(days=1))
    out = []
    for key in (d.account_id, d.model):
        rows = await conn.execute(
            select(key, func.sum(d.requests), func.sum(d.cost_nano), func.sum(d.upstream_cost_nano))
            .where(d.day >= since, d.day < until)
            .group_by(key)
            .order_by(func.sum(d.cost_nano).desc())
            .limit(10)
        )
        out.append(
            [
                {"name": k, "requests": int(n), "revenue": int(c or 0), "upstream": int(u or 0)}
                for k, n, c, u in rows
            ]
        )
    return out[0], out[1]


async def running_low(engine: AsyncEngine, limit: int = 10) -> list[dict[str, Any]]:
    a = accounts.c
    threshold = func.coalesce(a.low_balance_nano, LOW_BALANCE_NANO)
    query = (
        select(a.id, a.email, a.name, a.balance_nano, threshold.label("threshold"))
        .where(a.disabled_at.is_(None), a.balance_nano < threshold)
        .order_by(a.balance_nano)
        .limit(limit)
    )
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


async def vendor_errors(engine: AsyncEngine) -> dict[str, float]:
    """Each vendor's error rate over the last hour (an index range scan of the records)."""
    u = usage_records.c
    since = as_stored(engine, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    query = (
        select(u.vendor, func.count(), func.count().filter(u.status == "error"))
        .where(u.started_at >= since)
        .group_by(u.vendor)
    )
    async with engine.connect() as conn:
        return {v: int(e) / int(n) if n else 0.0 for v, n, e in await conn.execute(query)}


# ---------------------------------------------------------------- customers


async def customers(engine: AsyncEngine, q: str, page: int) -> tuple[list[dict[str, Any]], bool]:
    """A page of accounts, newest first; `q` matches an email (part), an account id or a key
    (its id or the hint's characters)."""
    a = accounts.c
    query = select(accounts)
    q = q.strip()[:200]
    if q:
        by_key = select(api_keys.c.account_id).where(
            or_(api_keys.c.id == q, api_keys.c.key_hint.contains(q, autoescape=True))
        )
        query = query.where(
            or_(
                a.email.contains(q.lower(), autoescape=True),
                a.id == q,
                a.id.in_(by_key),
            )
        )
    query = query.order_by(a.created_at.desc(), a.id).offset(page * PAGE).limit(PAGE + 1)
    async with engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(query)]
    return rows[:PAGE], len(rows) > PAGE


async def customer(engine: AsyncEngine, account_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(accounts).where(accounts.c.id == account_id))).first()
        if row is None:
            return None
        top_ups = await conn.execute(
            select(ledger)
            .where(ledger.c.account_id == account_id, LEDGER_NOT_DEBIT)
            .order_by(ledger.c.id.desc())
            .limit(20)
        )
        audit = await conn.execute(
            select(audit_log)
            .where(audit_log.c.account_id == account_id)
            .order_by(audit_log.c.id.desc())
            .limit(50)
        )
        return {
            **dict(row._mapping),
            "top_ups": [dict(r._mapping) for r in top_ups],
            "audit": [dict(r._mapping) for r in audit],
        }


async def audit(engine: AsyncEngine, limit: int = 100) -> list[dict[str, Any]]:
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


# ---------------------------------------------------------------- request log


@dataclass(frozen=True, slots=True)
class RequestFilter:
    account_id: str = ""
    key_id: str = ""
    model: str = ""
    status: str = ""
    since: dt.datetime | None = None
    until: dt.datetime | None = None


async def requests(
    engine: AsyncEngine, f: RequestFilter, before: Cursor | None
) -> tuple[list[dict[str, Any]], Cursor | None]:
    u = usage_records.c
    clauses: list[Any] = []
    if f.account_id:
        clauses.append(u.account_id == f.account_id)
    if f.key_id:
        clauses.append(u.key_id == f.key_id)
    if f.model:
        clauses.append(or_(u.model == f.model, u.model_asked == f.model))
    if f.status:
        clauses.append(u.status == f.status)
        if f.status != "ok":  # what the status index holds (tables.py)
            clauses.append(USAGE_NOT_OK)
    if f.since:
        clauses.append(u.started_at >= as_stored(engine, f.since))
    if f.until:
        clauses.append(u.started_at < as_stored(engine, f.until))
    return await newest_usage(engine, clauses, before, PAGE)


async def request(engine: AsyncEngine, request_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(usage_records).where(usage_records.c.request_id == request_id)
            )
        ).first()
    return dict(row._mapping) if row else None


# ---------------------------------------------------------------- codes


async def code_batches(engine: AsyncEngine) -> list[dict[str, Any]]:
    t = redemption_codes.c
    now = as_stored(engine, dt.datetime.now(dt.UTC))
    redeemed = func.sum(t.redeemed_by.is_not(None).cast(_int()))
    expired = func.sum(
        and_(t.redeemed_by.is_(None), t.expires_at.is_not(None), t.expires_at <= now).cast(_int())
    )
    query = (
        select(
            t.batch_id,
            func.count(),
            redeemed,
            expired,
            func.max(t.amount_nano),
            func.min(t.created_at),
            func.max(t.expires_at),
        )
        .group_by(t.batch_id)
        .order_by(func.min(t.created_at).desc())
        .limit(200)
    )
    async with engine.connect() as conn:
        return [
            {
                "id": b,
                "count": int(n),
                "redeemed": int(r or 0),
                "expired": int(e or 0),
                "open": int(n) - int(r or 0) - int(e or 0),
                "amount_nano": int(amt),
                "created_at": utc(created),
                "expires_at": utc(exp) if exp else None,
            }
            for b, n, r, e, amt, created, exp in await conn.execute(query)
        ]


async def redemptions(engine: AsyncEngine, batch_id: str) -> list[dict[str, Any]]:
    t = redemption_codes.c
    query = (
        select(t.code_hash, t.amount_nano, t.redeemed_by, t.redeemed_at, accounts.c.email)
        .select_from(
            redemption_codes.outerjoin(accounts, accounts.c.id == redemption_codes.c.redeemed_by)
        )
        .where(t.batch_id == batch_id)
        .order_by(t.redeemed_at.desc())
    )
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


# ---------------------------------------------------------------- price multiplier versions


async def multiplier_versions(engine: AsyncEngine, limit: int = 50) -> list[dict[str, Any]]:
    """The latest changes of price-group multipliers and per-model overrides, newest first."""
    t = price_multiplier_versions.c
    query = select(price_multiplier_versions).order_by(t.id.desc()).limit(limit)
    async with engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(query)]
    for r in rows:
        for k in ("old", "new"):
            ppm = r[f"{k}_ppm"]
            r[k] = f"×{Decimal(ppm) / 1_000_000:f}" if ppm is not None else "–"
    return rows


# ---------------------------------------------------------------- sign-ups per address


async def signups_by_ip(engine: AsyncEngine, limit: int = 100) -> list[dict[str, Any]]:
    """Addresses by how many accounts signed up from them (most first), with the block, if
    any; then blocked addresses no account came from."""
    a = accounts.c
    query = (
        select(a.signup_ip, func.count(), func.max(a.created_at), func.min(a.created_at))
        .where(a.signup_ip.is_not(None))
        .group_by(a.signup_ip)
        .order_by(func.count().desc(), func.max(a.created_at).desc())
        .limit(limit)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
        blocks = {r.ip: r for r in await conn.execute(select(signup_blocks))}
    out = [
        {"ip": ip, "accounts": n, "last": last, "first": first, "block": blocks.pop(ip, None)}
        for ip, n, last, first in rows
    ]
    for ip, b in blocks.items():
        out.append({"ip": ip, "accounts": 0, "last": None, "first": None, "block": b})
    return out


async def accounts_from_ip(engine: AsyncEngine, ip: str, limit: int = 100) -> list[dict[str, Any]]:
    a = accounts.c
    query = (
        select(a.id, a.email, a.created_at, a.disabled_at, a.balance_nano)
        .where(a.signup_ip == ip)
        .order_by(a.created_at.desc())
        .limit(limit)
    )
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]
