"""Settlement for the embedded SQLite store: a write-ahead journal, then batched commits.

Awaiting a database commit per response cost 3-5 ms and half the throughput through
SQLAlchemy + aiosqlite (bench/). Here the durable step is a copy of the usage record into
an append-only journal beside the database file, mapped into memory — well under a
microsecond, and like a WAL commit under `synchronous=NORMAL` it survives SIGKILL (the page
cache outlives the process). An `os.write` per record cost ~10 µs instead: the syscall drops
the GIL, and the commit thread took it every time. A thread
with its own stdlib `sqlite3` connection then commits the records in batches: usage row
(idempotent by request id), debit, balance. At start, whatever the journal holds is committed
again before the first request — records already in the database are skipped, so nothing is
billed twice and nothing completed is lost.

The journal lives in the same directory as the database, so it shares its fate: a volume that
keeps the database keeps the journal. Segments are `SEGMENT_BYTES` files, allocated up front
(so a full disk fails a rotation, not a page write, which would SIGBUS); the unused tail is
zeros, where a reader stops. A segment whose records all committed is zeroed and reused, or,
once full, deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import mmap
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from operator import attrgetter
from pathlib import Path
from typing import Any

import orjson

from tokenrelay.billing.writer import (
    ROLLUP_COLUMNS,
    ROLLUP_SUMS,
    USAGE_COLUMNS,
    UsageRecord,
    rollup,
)
from tokenrelay.store.db import sqlite_writer

log = logging.getLogger("tokenrelay.billing")

SEGMENT_BYTES = 8 * 1024 * 1024
# How often the thread commits what was journaled (sooner when someone flushes: the gateway's
# own usage and balance reads do). Each commit has a fixed cost (~1 ms of CPU on the
# gateway's core); 0.1 s instead of 0.02 s took 3 µs off every request at 4k req/s.
COMMIT_INTERVAL_S = 0.1
_MAX_BATCH = 1000
_MAX_BACKOFF_S = 2.0
# Rows go to SQLite many per statement: the thread releases the GIL once per statement, and
# requests wait for it once per statement. Row by row (executemany) it took the GIL back for
# every row, and with the gateway on one core each hand-off was a context switch: billing cost
# ~100 µs a request. (One JSON array unpacked by json_each took the GIL once per batch, but
# SQLite's JSON extraction cost 3x the insert itself.)
_CHUNKS = (64, 16, 4, 1)
# Statements by chunk size and which columns the chunk's rows share: under steady traffic a
# few shapes, each prepared once (sqlite3 keeps this many prepared per connection).
_STATEMENTS = 512


def _insert_many(conn: sqlite3.Connection, sql: str, rows: list[Any]) -> int:
    """Execute `sql` (an INSERT with a `{values}` slot) over `rows` (each as many values as
    the INSERT names), in chunks; returns the rows changed. A value that every row of a chunk
    holds (the key, the model, the status, a NULL: most of a usage row's columns under steady
    traffic) is bound once for the chunk, through a numbered parameter each row names, not
    once a row: binding is most of what an insert costs sqlite3 (a 27-value usage row without
    indexes, 64 a statement: 10.1 µs with every value bound, 2.9 with all but the request id
    shared, on the 2026-12-07 VM)."""
    changed = i = 0
    for k in _CHUNKS:
        while len(rows) - i >= k:
            columns = list(zip(*rows[i : i + k], strict=True))
            shared = tuple([column.count(column[0]) == k for column in columns])
            params = [column[0] for column, same in zip(columns, shared, strict=True) if same]
            varying = [column for column, same in zip(columns, shared, strict=True) if not same]
            params += [v for row in zip(*varying, strict=True) for v in row]
            changed += conn.execute(_sharing(sql, k, shared), params).rowcount
            i += k
    return changed


@functools.lru_cache(maxsize=_STATEMENTS)
def _sharing(sql: str, rows: int, shared: tuple[bool, ...]) -> str:
    """`sql` for `rows` rows whose columns flagged in `shared` take one value: parameters
    1..s are those values, in column order; then each row's own, row after row."""
    first: dict[int, int] = {}
    for column, same in enumerate(shared):
        if same:
            first[column] = len(first) + 1
    own = len(first)
    values = []
    for _ in range(rows):
        cells = []
        for column, same in enumerate(shared):
            if same:
                cells.append(f"?{first[column]}")
            else:
                own += 1
                cells.append(f"?{own}")
        values.append("(" + ", ".join(cells) + ")")
    return sql.format(values=", ".join(values))


_INSERT_USAGE = (
    f"INSERT INTO usage_records ({', '.join(USAGE_COLUMNS)}) VALUES {{values}} "
    "ON CONFLICT (request_id) DO NOTHING"
)
_INSERT_DEBITS = (
    "INSERT INTO ledger (key_id, account_id, kind, amount_nano, request_id, note, created_at) "
    "VALUES {values}"
)
_UPDATE_BALANCE = "UPDATE accounts SET balance_nano = balance_nano - ? WHERE id = ?"
_UPSERT_DAILY = (
    f"INSERT INTO usage_daily ({', '.join(ROLLUP_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(ROLLUP_COLUMNS))}) "
    "ON CONFLICT (account_id, day, model, vendor) DO UPDATE SET "
    + ", ".join(f"{c} = usage_daily.{c} + excluded.{c}" for c in ROLLUP_SUMS)
)
# Values are bound the way SQLAlchemy binds them on SQLite (booleans as 0/1, datetimes as
# "YYYY-MM-DD HH:MM:SS.ffffff"), so its readers see these rows like its own; a test holds the
# two equal. Its bind processors cost 12 µs a row, on the same core as the requests.
_ATTRS = attrgetter(*USAGE_COLUMNS)
_REQUEST_ID, _KEY_ID, _ACCOUNT_ID, _COST = (
    USAGE_COLUMNS.index(c) for c in ("request_id", "key_id", "account_id", "cost_nano")
)
_MODEL_ASKED, _ERROR = USAGE_COLUMNS.index("model_asked"), USAGE_COLUMNS.index("error")
_MODEL, _VENDOR, _STATUS, _UPSTREAM, _LOSS = (
    USAGE_COLUMNS.index(c) for c in ("model", "vendor", "status", "upstream_cost_nano", "loss_nano")
)
_IN, _CACHE_READ, _CACHE_WRITE, _OUT = (
    USAGE_COLUMNS.index(c)
    for c in ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")
)
_STREAM, _FAST_PATH, _STARTED_AT = (
    USAGE_COLUMNS.index(c) for c in ("stream", "fast_path", "started_at")
)


def journal_prefix(db_path: str) -> Path:
    return Path(db_path + "-settle")


_LOCKS: dict[str, int] = {}


def try_lock_journal(db_path: str) -> bool:
    """Take the journal of `db_path` for this process (flock, released when it exits). False
    if another process serves it: two writers would replay each other's live records."""
    import fcntl

    if db_path in _LOCKS:
        return True
    fd = os.open(str(journal_prefix(db_path)) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _LOCKS[db_path] = fd
    return True


# A journaled record waiting for the database: (sequence, account id, bound values).
_Pending = tuple[int, str, list[Any]]


class JournalWriter:
    """Same contract as SettlementWriter (`submit` returns once the record is durable) but
    durable means journaled, not committed; `flush()` waits for the commit."""

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        self.prefix = journal_prefix(db_path)
        self.batches = 0
        # Appending to a deque wakes nobody: the thread commits on its own clock, so requests
        # never hand the GIL to it one record at a time (that cost ~8% of a core at 10k req/s).
        self._pending: deque[_Pending] = deque()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._map: mmap.mmap | None = None
        self._segment = 0
        self._segment_bytes = 0
        self._sealed: list[tuple[int, int]] = []  # (segment number, its last sequence)
        self._appended = 0  # sequence of the last journaled record
        self._committed = 0  # every record up to this sequence is in the database
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.uncommitted: dict[str, int] = {}  # account id -> records journaled, not committed
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        replayed = self._replay()
        if replayed:
            log.warning("settlement journal: %d record(s) recovered and committed", replayed)
        self._open_segment(0)
        self._thread = threading.Thread(
            target=self._run, name="tokenrelay-settlement-journal", daemon=True
        )
        self._thread.start()

    async def close(self) -> None:
        if self._thread is None or self._closing:
            return
        await self.flush()
        self._closing = True
        self._stop = True
        self._wake.set()
        await asyncio.to_thread(self._thread.join)
        if self._map is not None:
            self._map.close()
            self._map = None
        for path in self._segments():
            path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ request path

    async def submit(self, record: UsageRecord) -> bool:
        """Journal `record` (durable on return) and queue it for the database. Always True:
        request ids are unique per request; the database skips a replayed one."""
        self.submit_now(record)
        return True

    def submit_now(self, record: UsageRecord) -> None:
        """`submit` without a coroutine (BillingEngine's in-process lane)."""
        if self._closing or self._thread is None:
            raise RuntimeError("the settlement writer is not running")
        # Bound values, in column order, built here: the thread then holds the GIL only for
        # sqlite3's binding, not for Python work the requests would wait behind.
        values = record_values(record)
        line = orjson.dumps(values, option=orjson.OPT_APPEND_NEWLINE)
        start, end = self._segment_bytes, self._segment_bytes + len(line)
        if end > SEGMENT_BYTES or self._map is None:
            self._sealed.append((self._segment, self._appended))
            self._open_segment(self._segment + 1)
            start, end = 0, len(line)
        assert self._map is not None
        self._map[start:end] = line
        self._segment_bytes = end
        self._appended += 1
        account = values[_ACCOUNT_ID]
        self.uncommitted[account] = self.uncommitted.get(account, 0) + 1
        self._pending.append((self._appended, account, values))

    async def flush(self) -> None:
        """Wait until every record submitted so far is committed to the database."""
        target = self._appended
        if self._committed >= target or self._thread is None:
            return
        assert self._loop is not None
        fut = self._loop.create_future()
        self._waiters.append((target, fut))
        self._wake.set()
        await fut

    # ------------------------------------------------------------------ loop thread callbacks

    def _on_commit(self, last_seq: int, key_counts: dict[str, int]) -> None:
        self._committed = last_seq
        self.batches += 1
        for key_id, n in key_counts.items():
            left = self.uncommitted.get(key_id, 0) - n
            if left > 0:
                self.uncommitted[key_id] = left
            else:
                self.uncommitted.pop(key_id, None)
        while self._sealed and self._sealed[0][1] <= last_seq:
            self._path(self._sealed.pop(0)[0]).unlink(missing_ok=True)
        # All committed: zero the segment for reuse. No await between this check and the
        # zeroing, so no append can slip in between.
        if last_seq == self._appended and self._segment_bytes and self._map is not None:
            self._map[: self._segment_bytes] = bytes(self._segment_bytes)
            self._segment_bytes = 0
        still: list[tuple[int, asyncio.Future[None]]] = []
        for target, fut in self._waiters:
            if target <= last_seq:
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append((target, fut))
        self._waiters = still

    # ------------------------------------------------------------------ journal files

    def _path(self, segment: int) -> Path:
        return self.prefix.with_name(f"{self.prefix.name}.{segment}")

    def _segments(self) -> list[Path]:
        found = []
        for path in self.prefix.parent.glob(self.prefix.name + ".*"):
            suffix = path.name.rsplit(".", 1)[-1]
            if suffix.isdigit():
                found.append((int(suffix), path))
        return [p for _, p in sorted(found)]

    def _open_segment(self, segment: int) -> None:
        self._segment = segment
        self._segment_bytes = 0
        if self._map is not None:
            self._map.close()  # its records stay in the file until they commit
            self._map = None
        fd = os.open(self._path(segment), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, SEGMENT_BYTES)
            self._map = mmap.mmap(fd, SEGMENT_BYTES)
        finally:
            os.close(fd)  # the mapping holds the file

    def _replay(self) -> int:
        """Commit whatever a previous process journaled; runs before the first request."""
        records: list[list[Any]] = []
        segments = self._segments()
        for path in segments:
            written = path.read_bytes().split(b"\0", 1)[0]  # JSON escapes NUL: none in a line
            for number, line in enumerate(written.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    records.append(_from_json(orjson.loads(line)))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    log.error("settlement journal %s line %d unreadable: %s", path, number, exc)
        if records:
            conn = _connect(self.db_path)
            try:
                for start in range(0, len(records), _MAX_BATCH):
                    _commit(conn, records[start : start + _MAX_BATCH])
            finally:
                conn.close()
        for path in segments:
            path.unlink(missing_ok=True)
        return len(records)

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        conn = _connect(self.db_path)
        try:
            while True:
                self._wake.wait(COMMIT_INTERVAL_S)
                self._wake.clear()
                while self._pending:
                    batch: list[_Pending] = []
                    while self._pending and len(batch) < _MAX_BATCH:
                        batch.append(self._pending.popleft())
                    self._commit_with_retry(conn, batch)
                if self._stop:
                    break
        finally:
            conn.close()

    def _commit_with_retry(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        rows = [item[2] for item in batch]
        delay = 0.05
        while True:
            try:
                _commit(conn, rows)
                break
            except sqlite3.IntegrityError as exc:
                # One bad record must not block the rest: commit them one by one.
                log.error("settlement batch rejected (%s): committing one by one", exc)
                for row in rows:
                    try:
                        _commit(conn, [row])
                    except sqlite3.IntegrityError as one:
                        record = dict(zip(USAGE_COLUMNS, row, strict=True))
                        log.error(
                            "usage record %s cannot be written (%s): %s",
                            row[_REQUEST_ID],
                            one,
                            orjson.dumps(record, default=str).decode(),
                        )
                break
            except sqlite3.Error as exc:  # locked, disk full, ...: the journal keeps them
                log.warning("settlement batch of %d failed, retrying: %s", len(rows), exc)
                time.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF_S)
        counts: dict[str, int] = {}
        for _, key_id, _ in batch:
            counts[key_id] = counts.get(key_id, 0) + 1
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._on_commit, batch[-1][0], counts)


def _connect(db_path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        db_path, isolation_level=None, check_same_thread=False, cached_statements=_STATEMENTS
    )
    sqlite_writer(conn.cursor())
    return conn


def _commit(conn: sqlite3.Connection, rows: list[list[Any]]) -> int:
    """One transaction: new usage rows (bound values, column order), their debits, the
    balances. Returns rows inserted. Fresh request ids (every live request) go in a few
    statements; a batch in which some id exists already (a replay, or an id twice) is redone
    row by row so that only new rows are debited."""
    now = sqlite_datetime(dt.datetime.now(dt.UTC))
    conn.execute("BEGIN IMMEDIATE")
    try:
        if _insert_many(conn, _INSERT_USAGE, rows) == len(rows):
            fresh = rows
        else:
            conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
            one = _sharing(_INSERT_USAGE, 1, (False,) * len(USAGE_COLUMNS))
            fresh = [row for row in rows if conn.execute(one, row).rowcount == 1]
        if fresh:
            per_account: dict[str, int] = {}
            for row in fresh:
                per_account[row[_ACCOUNT_ID]] = per_account.get(row[_ACCOUNT_ID], 0) + row[_COST]
            debits = [
                (r[_KEY_ID], r[_ACCOUNT_ID], "debit", -r[_COST], r[_REQUEST_ID], None, now)
                for r in fresh
            ]
            _insert_many(conn, _INSERT_DEBITS, debits)
            daily = rollup(
                (
                    r[_ACCOUNT_ID],
                    r[_STARTED_AT][:10],  # bound as "YYYY-MM-DD HH:MM:SS.ffffff", UTC
                    r[_MODEL],
                    r[_VENDOR],
                    r[_STATUS],
                    r[_IN] + r[_CACHE_READ] + r[_CACHE_WRITE],
                    r[_OUT],
                    r[_COST],
                    r[_UPSTREAM],
                    r[_LOSS],
                )
                for r in fresh
            )
            conn.executemany(_UPSERT_DAILY, daily)
            # Sorted: writers lock account rows in one order.
            conn.executemany(_UPDATE_BALANCE, [(c, a) for a, c in sorted(per_account.items())])
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return len(fresh)


def record_values(r: UsageRecord) -> list[Any]:
    """The usage_records row of `r`, bound for SQLite, in column order (what UsageRecord.row
    gives, as SQLAlchemy would bind it; a test holds the two equal)."""
    values = list(_ATTRS(r))
    values[_MODEL_ASKED] = (r.model_asked or r.model)[:200]
    values[_ERROR] = r.error[:500] if r.error else None
    values[_STREAM] = int(r.stream)
    values[_FAST_PATH] = int(r.fast_path)
    values[_STARTED_AT] = sqlite_datetime(r.started_at or dt.datetime.now(dt.UTC))
    values[_ACCOUNT_ID] = r.account_id or f"acct_{r.key_id}"
    return values


def sqlite_datetime(d: dt.datetime) -> str:
    """SQLAlchemy's SQLite storage format (UTC wall time; the offset is not stored)."""
    # isoformat is C: the same "%04d-%02d-%02d %02d:%02d:%02d.%06d" for years >= 1000. A UTC
    # time's wall time is the naive epoch plus its exact distance from the aware one: 0.6 µs,
    # where replace(tzinfo=None) and an aware isoformat took 1.3 (every settlement has one).
    if d.tzinfo is dt.UTC:
        return (_NAIVE_EPOCH + (d - _UTC_EPOCH)).isoformat(" ", "microseconds")
    return d.replace(tzinfo=None).isoformat(" ", "microseconds")


_UTC_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NAIVE_EPOCH = dt.datetime(1970, 1, 1)


# Lines journaled by an older gateway, oldest first: (how many values, what the columns added
# since say for them). Each step brings a line to the next width; the last to len(USAGE_COLUMNS).
_OLDER_LINES: list[tuple[int, Callable[[list[Any]], list[Any]]]] = [
    # before accounts and sessions (0004, 0005): no session, the key's own account, its list
    # cost the price it was billed at
    (len(USAGE_COLUMNS) - 8, lambda r: [*r, None, f"acct_{r[_KEY_ID]}", r[_COST]]),
    # before the billing policy (0008): no reason recorded, no loss
    (len(USAGE_COLUMNS) - 5, lambda r: [*r, "unrecorded", 0]),
    # before the deployment was recorded (0014): none known
    (len(USAGE_COLUMNS) - 3, lambda r: [*r, None]),
    # before the receipt fields (0017): the vendor's id and the multiplier unknown
    (len(USAGE_COLUMNS) - 2, lambda r: [*r, None, None]),
]


def _from_json(raw: Any) -> list[Any]:
    """A journal line: bound values in column order (or, from an older gateway, an object)."""
    if isinstance(raw, list):
        for width, pad in _OLDER_LINES:
            if len(raw) == width:
                raw = pad(raw)
        if len(raw) != len(USAGE_COLUMNS):
            raise ValueError(f"{len(raw)} values for {len(USAGE_COLUMNS)} columns")
        return raw
    row = {name: raw[name] for name in USAGE_COLUMNS if name in raw}
    started = dt.datetime.fromisoformat(row["started_at"])
    record = UsageRecord(**{**row, "started_at": started})
    return record_values(record)
