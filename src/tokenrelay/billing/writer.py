"""The settlement writer: one task that group-commits usage records, debits and balances.

Callers `await submit(record)` and resume once the transaction holding their record committed.
A batch is one transaction: usage rows inserted with ON CONFLICT DO NOTHING (the request id is
the primary key), debit ledger rows for the rows that were new, and one balance update per key.
A request id already in the database is never debited again, so settlement is idempotent —
also across a crash, where the relay retries nothing and the database keeps what committed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import bindparam, insert, update
from sqlalchemy.exc import DBAPIError, OperationalError

from tokenrelay.store.async_core import AsyncConnection, AsyncEngine
from tokenrelay.store.db import dialect_insert
from tokenrelay.store.tables import accounts, ledger, usage_daily, usage_records

if TYPE_CHECKING:
    from tokenrelay.billing.metering import RequestContext

log = logging.getLogger("tokenrelay.billing")

# A fault hook for crash tests (tests/billing_e2e/test_redis_reconcile.py, bench/chaos.py):
# "kill-after-commit" SIGKILLs the process right after a batch commits, before any caller
# takes its Redis step.
_FAULT = os.environ.get("TOKENRELAY_FAULT", "")
_MAX_BATCH = 500  # 22 columns × 500 rows stays far below SQLite's bound-parameter limit
_MAX_BACKOFF_S = 2.0


@dataclass(slots=True)
class UsageRecord:
    """One request's usage, as the relay fills it in; the engine adds cost and price version.
    `output_tokens` includes reasoning; `cache_write_tokens` includes the 1-hour writes."""

    request_id: str
    key_id: str
    model: str  # catalog id that served the request
    model_asked: str = ""
    vendor: str = ""
    stream: bool = False
    fast_path: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    usage_source: Literal["vendor", "estimated"] = "vendor"
    status: Literal["ok", "error", "cancelled"] = "ok"
    error: str | None = None  # short and secret-free: a category or vendor message
    attempts: int = 1
    started_at: dt.datetime | None = None  # default: now
    duration_ms: int | None = None
    ttft_ms: int | None = None
    session_id: str | None = None  # the client's session, when it names one
    upstream_request_id: str | None = None  # the vendor's request id (receipts)
    deployment: str | None = None  # <vendor>/<name> that answered (the console's request log)
    cost_nano: int = 0  # set by BillingEngine.settle: the customer's price
    price_version_id: str = ""  # set by BillingEngine.settle
    account_id: str = ""  # set by BillingEngine.settle: the account the key spends from
    upstream_cost_nano: int = 0  # set by BillingEngine.settle: the catalog's list price
    reason: str = "completed"  # how it ended: a policy.Outcome value (set by BillingMeter)
    loss_nano: int = 0  # set by BillingEngine.settle: upstream cost the customer did not pay
    multiplier_ppm: int | None = None  # set by BillingEngine.settle: the price group's

    @classmethod
    def from_context(cls, ctx: RequestContext, *, attempts: int = 1) -> UsageRecord:
        # Positional, in field order (what the settlement sets left to its defaults): 0.45 µs
        # where 23 keywords took 1.25, on every settlement. A test holds the order.
        u = ctx.usage
        return cls(
            ctx.request_id,
            ctx.key_id or "",
            ctx.model_id,
            ctx.model_asked,
            ctx.vendor,
            ctx.stream,
            ctx.fast_path,
            u.input,
            u.output,
            u.cache_read,
            u.cache_write,
            u.cache_write_1h,
            u.reasoning,
            ctx.usage_source,
            ctx.status,
            ctx.error,
            attempts,
            dt.datetime.fromtimestamp(ctx.started_at, dt.UTC),
            round(ctx.duration_ms) if ctx.duration_ms is not None else None,
            round(ctx.first_byte_ms) if ctx.first_byte_ms is not None else None,
            ctx.session_id,
            ctx.upstream_request_id or None,
            ctx.deployment or None,
        )

    def row(self) -> dict[str, Any]:
        """The usage_records row (hand-built: `asdict` deep-copies and costs ~10x more)."""
        return {
            "request_id": self.request_id,
            "key_id": self.key_id,
            "model": self.model,
            "model_asked": (self.model_asked or self.model)[:200],
            "vendor": self.vendor,
            "stream": self.stream,
            "fast_path": self.fast_path,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cache_write_1h_tokens": self.cache_write_1h_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "usage_source": self.usage_source,
            "status": self.status,
            "error": self.error[:500] if self.error else None,
            "attempts": self.attempts,
            "started_at": self.started_at or dt.datetime.now(dt.UTC),
            "duration_ms": self.duration_ms,
            "ttft_ms": self.ttft_ms,
            "session_id": self.session_id,
            "cost_nano": self.cost_nano,
            "price_version_id": self.price_version_id,
            "account_id": self.account_id or f"acct_{self.key_id}",
            "upstream_cost_nano": self.upstream_cost_nano,
            "reason": self.reason,
            "loss_nano": self.loss_nano,
            "deployment": self.deployment,
            "upstream_request_id": self.upstream_request_id,
            "multiplier_ppm": self.multiplier_ppm,
        }


@dataclass(slots=True)
class _Item:
    record: UsageRecord
    done: asyncio.Future[bool]


class SettlementWriter:
    def __init__(self, engine: AsyncEngine, batch_ms: float = 2.0) -> None:
        self.engine = engine
        self.batch_s = max(batch_ms, 0.0) / 1000.0
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.batches = 0  # committed transactions, for tests and metrics
        # PostgreSQL: one connection kept for the writer. A checkout from the pool pings first
        # (pool_pre_ping: BEGIN, SELECT 1, ROLLBACK), three round trips more for every batch,
        # each some 100 µs of the gateway's CPU. A connection that fails is dropped and the
        # batch retried on a new one, as before (idempotent by request id).
        self._keep = engine.dialect.name == "postgresql"
        self._conn: AsyncConnection | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tokenrelay-settlement-writer")

    async def submit(self, record: UsageRecord) -> bool:
        """Queue `record`; True once it committed as new, False if the request id was already
        recorded (nothing written). Raises if the record itself can never be written."""
        if self._closing or self._task is None:
            raise RuntimeError("the settlement writer is not running")
        item = _Item(record, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(item)
        # Shielded: a cancelled caller (client gone) must not un-bill a queued record.
        return await asyncio.shield(item.done)

    async def flush(self) -> None:
        """Nothing to wait for: `submit` returns only after its commit."""

    async def close(self) -> None:
        """Commit everything queued, then stop."""
        if self._task is None or self._closing:
            return
        self._closing = True
        self._queue.put_nowait(None)
        await self._task
        await self._drop_connection()

    async def _connection(self) -> AsyncConnection:
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            conn = await self.engine.connect()
            if self._keep:
                self._conn = conn
        return conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await _close_quietly(conn)

    async def _run(self) -> None:
        stop = False
        while not stop:
            first = await self._queue.get()
            batch: list[_Item] = []
            if first is None:
                stop = True
            else:
                batch.append(first)
                if self.batch_s:
                    await asyncio.sleep(self.batch_s)  # let concurrent settlements join
            while len(batch) < _MAX_BATCH and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stop = True
                else:
                    batch.append(item)
            if batch:
                await self._commit_with_retry(batch)

    async def _commit_with_retry(self, batch: list[_Item]) -> None:
        delay = 0.05
        while True:
            try:
                inserted = await self._commit_on_connection(batch)
                if _FAULT == "kill-after-commit" and inserted:
                    os.kill(os.getpid(), signal.SIGKILL)
            except (OperationalError, OSError, TimeoutError, ConnectionError) as exc:
                # The database is away: keep the records and retry; callers keep waiting.
                log.warning("settlement batch of %d failed, retrying: %s", len(batch), _brief(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF_S)
                continue
            except DBAPIError as exc:
                if exc.connection_invalidated:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _MAX_BACKOFF_S)
                    continue
                self._isolate(batch, exc)
                if len(batch) > 1:  # find the bad record; the others commit alone
                    for item in batch:
                        await self._commit_with_retry([item])
                    return
                log.error(
                    "usage record %s cannot be written: %s", batch[0].record.request_id, _brief(exc)
                )
                if not batch[0].done.done():
                    batch[0].done.set_exception(exc)
                return
            except Exception as exc:  # a bug: fail the callers loudly rather than hang them
                log.exception("settlement batch failed")
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(exc)
                return
            self.batches += 1
            # Only the first submission of a request id in the batch is "new": a duplicate in
            # the same batch was not written (see _commit) and must report False, as promised
            # by submit(); before, every copy reported True.
            first: set[str] = set()
            for item in batch:
                rid = item.record.request_id
                fresh = rid in inserted and rid not in first
                first.add(rid)
                if not item.done.done():
                    item.done.set_result(fresh)
            return

    def _isolate(self, batch: list[_Item], exc: Exception) -> None:
        if len(batch) > 1:
            log.warning(
                "settlement batch of %d rejected, committing one by one: %s",
                len(batch),
                _brief(exc),
            )

    async def _commit_on_connection(self, batch: list[_Item]) -> set[str]:
        conn = await self._connection()
        kept = False
        try:
            async with conn.begin():
                inserted = await self._commit(conn, batch)
            kept = self._keep
            return inserted
        finally:
            if not kept:  # a failed connection is dropped: the retry starts on a new one
                self._conn = None
                await _close_quietly(conn)

    async def _commit(self, conn: AsyncConnection, batch: list[_Item]) -> set[str]:
        """The batch's statements, in the caller's transaction (on PostgreSQL one statement,
        atomic by itself: pg_batch.py)."""
        # First record per request id wins; later duplicates in the same batch report False.
        rows: dict[str, dict[str, Any]] = {}
        for item in batch:
            rows.setdefault(item.record.request_id, item.record.row())
        if conn.dialect.name == "postgresql":
            return await _commit_pg(conn, rows)
        # executemany form: one cached statement, batched by SQLAlchemy's insertmanyvalues
        # (a multi-VALUES literal would be compiled anew for every batch size).
        stmt = (
            dialect_insert(conn, usage_records)
            .on_conflict_do_nothing(index_elements=["request_id"])
            .returning(usage_records.c.request_id)
        )
        inserted = {r[0] for r in await conn.execute(stmt, list(rows.values()))}
        if not inserted:
            return inserted
        now = dt.datetime.now(dt.UTC)
        debits = [
            {
                "key_id": rows[rid]["key_id"],
                "account_id": rows[rid]["account_id"],
                "kind": "debit",
                "amount_nano": -rows[rid]["cost_nano"],
                "request_id": rid,
                "note": None,
                "created_at": now,
            }
            for rid in inserted
        ]
        await conn.execute(insert(ledger), debits)
        per_account: dict[str, int] = {}
        for rid in inserted:
            account = rows[rid]["account_id"]
            per_account[account] = per_account.get(account, 0) + rows[rid]["cost_nano"]
        daily = rollup(
            (
                r["account_id"],
                r["started_at"].astimezone(dt.UTC).date().isoformat(),
                r["model"],
                r["vendor"],
                r["status"],
                r["input_tokens"] + r["cache_read_tokens"] + r["cache_write_tokens"],
                r["output_tokens"],
                r["cost_nano"],
                r["upstream_cost_nano"],
                r["loss_nano"],
            )
            for r in (rows[rid] for rid in inserted)
        )
        upsert = dialect_insert(conn, usage_daily)
        summed = ROLLUP_SUMS
        await conn.execute(
            upsert.on_conflict_do_update(
                index_elements=["account_id", "day", "model", "vendor"],
                set_={c: usage_daily.c[c] + upsert.excluded[c] for c in summed},
            ),
            [dict(zip(ROLLUP_COLUMNS, d, strict=True)) for d in daily],
        )
        # Sorted: concurrent writers (replicas) lock account rows in one order, no deadlock.
        await conn.execute(
            update(accounts)
            .where(accounts.c.id == bindparam("a_id"))
            .values(balance_nano=accounts.c.balance_nano - bindparam("a_cost")),
            [{"a_id": a, "a_cost": c} for a, c in sorted(per_account.items())],
        )
        return inserted


async def _commit_pg(conn: AsyncConnection, rows: dict[str, dict[str, Any]]) -> set[str]:
    """The batch on PostgreSQL: one asyncpg statement over arrays (pg_batch.py); the new
    request ids."""
    # Imported here: a gateway on SQLite never loads asyncpg (store.db.dialect_insert's rule).
    from tokenrelay.billing import pg_batch

    values = [_USAGE_VALUES(r) for r in rows.values()]
    async with pg_batch.translated(conn) as driver:
        new = await driver.fetch(
            pg_batch.settle_sql(USAGE_COLUMNS, ROLLUP_SUMS),
            *zip(*values, strict=True),
            dt.datetime.now(dt.UTC),
        )
    return {r[0] for r in new}


ROLLUP_SUMS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cost_nano",
    "upstream_cost_nano",
    "loss_nano",
)
ROLLUP_COLUMNS = ("account_id", "day", "model", "vendor", *ROLLUP_SUMS)


def rollup(
    records: Iterable[tuple[str, str, str, str, str, int, int, int, int, int]],
) -> list[tuple[Any, ...]]:
    """(account, day, model, vendor, status, input, output, cost, upstream, loss) of new usage
    records -> one usage_daily increment per (account, day, model, vendor), sorted (lock
    order), in ROLLUP_COLUMNS order."""
    sums: dict[tuple[str, str, str, str], list[int]] = {}
    for account, day, model, vendor, status, tokens_in, tokens_out, cost, upstream, loss in records:
        acc = sums.setdefault((account, day, model, vendor), [0, 0, 0, 0, 0, 0, 0])
        acc[0] += 1
        acc[1] += status == "error"
        acc[2] += tokens_in
        acc[3] += tokens_out
        acc[4] += cost
        acc[5] += upstream
        acc[6] += loss
    return [(*k, *v) for k, v in sorted(sums.items())]


# The usage table's columns in its order: how a record is bound, as one array per column on
# PostgreSQL (pg_batch.py) and as one row per record in the SQLite journal (journal.py).
USAGE_COLUMNS = tuple(c.name for c in usage_records.columns)
_USAGE_VALUES = itemgetter(*USAGE_COLUMNS)


async def _close_quietly(conn: AsyncConnection) -> None:
    try:
        await conn.close()
    except Exception as exc:  # already broken: nothing to give back to the pool
        log.debug("settlement connection not closed cleanly: %s", _brief(exc))


def _brief(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
