"""Files, batches and batch lines in the database: what survives a restart and what replicas
share. Lines are claimed with `SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL (each replica
takes lines no other holds), plainly on SQLite (one process writes at a time there).

Every query names the account: a customer reaches only its own files and batches.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update

from tokenrelay.store.async_core import AsyncEngine
from tokenrelay.store.tables import batch_files, batch_lines, batches

# Line states: waiting, taken by a runner, and the four ends.
PENDING, RUNNING = "pending", "running"
# A line for a vendor's batch API: waiting to go, being sent, in a vendor batch, its answer
# being read back and settled.
QUEUED, SUBMITTING, AT_VENDOR, COLLECTING = "queued", "submitting", "at_vendor", "collecting"
OPEN = (PENDING, RUNNING, QUEUED, SUBMITTING, AT_VENDOR, COLLECTING)
# What a line left half-way by a runner that stopped goes back to.
_RESUMED = {RUNNING: PENDING, SUBMITTING: QUEUED, COLLECTING: AT_VENDOR}
SUCCEEDED, ERRORED, CANCELLED, EXPIRED = "succeeded", "errored", "cancelled", "expired"
# Batch states (each API renders its own words for them).
IN_PROGRESS, CANCELLING, ENDED = "in_progress", "cancelling", "ended"


def utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands timestamps back without their zone; they were written in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def line_request_id(batch_id: str, line_no: int) -> str:
    """The line's request id (usage record, ledger, hold): it carries the batch id, and a
    settlement retried after a crash is billed once."""
    return f"{batch_id}-{line_no}"


@dataclass(slots=True)
class NewLine:
    custom_id: str
    body: str  # JSON
    hold_nano: int = 0
    # Refused at creation (bad model, invalid body): the error answer, the line never runs.
    status_code: int | None = None
    result: str | None = None
    queued: bool = False  # for the vendor's batch API


@dataclass(slots=True)
class Batch:
    id: str
    api: str
    account_id: str
    key_id: str
    endpoint: str
    input_file_id: str | None
    status: str
    multiplier_ppm: int
    hold_nano: int
    total: int
    meta: dict[str, Any]
    created_at: dt.datetime
    expires_at: dt.datetime
    cancelling_at: dt.datetime | None
    ended_at: dt.datetime | None
    counts: dict[str, int]  # line status -> lines

    @property
    def done(self) -> int:
        return self.counts.get(SUCCEEDED, 0) + self.counts.get(ERRORED, 0)


@dataclass(slots=True)
class ClaimedLine:
    id: int
    batch_id: str
    line_no: int
    custom_id: str
    body: str
    hold_nano: int


class BatchStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.postgres = engine.url.get_backend_name() == "postgresql"

    # ---------------------------------------------------------------- files

    async def add_file(
        self, account_id: str, purpose: str, filename: str, content: bytes | None, **extra: Any
    ) -> dict[str, Any]:
        row = {
            "id": new_id("file-"),
            "account_id": account_id,
            "purpose": purpose,
            "filename": filename[:255],
            "bytes": len(content) if content is not None else extra.pop("size", 0),
            "content": content,
            "created_at": now(),
            **extra,
        }
        async with self.engine.begin() as conn:
            await conn.execute(batch_files.insert().values(row))
        return row

    async def file(self, account_id: str, file_id: str, *, content: bool = False) -> Any:
        cols = [c for c in batch_files.c if content or c.name != "content"]
        q = select(*cols).where(
            batch_files.c.id == file_id,
            batch_files.c.account_id == account_id,
            batch_files.c.deleted_at.is_(None),
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(q)).first()

    async def files(self, account_id: str, purpose: str | None, limit: int) -> list[Any]:
        cols = [c for c in batch_files.c if c.name != "content"]
        q = select(*cols).where(
            batch_files.c.account_id == account_id, batch_files.c.deleted_at.is_(None)
        )
        if purpose:
            q = q.where(batch_files.c.purpose == purpose)
        q = q.order_by(batch_files.c.created_at.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return list((await conn.execute(q)).all())

    async def delete_file(self, account_id: str, file_id: str) -> bool:
        q = (
            update(batch_files)
            .where(
                batch_files.c.id == file_id,
                batch_files.c.account_id == account_id,
                batch_files.c.deleted_at.is_(None),
            )
            .values(deleted_at=now(), content=None)
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(q)).rowcount == 1

    # ---------------------------------------------------------------- batches

    async def create(self, row: dict[str, Any], lines: list[NewLine]) -> None:
        """The batch and its lines, in one transaction; lines refused at creation are ended."""
        rows = [
            {
                "batch_id": row["id"],
                "line_no": i,
                "custom_id": ln.custom_id,
                "body": ln.body,
                "status": ERRORED
                if ln.status_code is not None
                else QUEUED
                if ln.queued
                else PENDING,
                "hold_nano": ln.hold_nano,
                "status_code": ln.status_code,
                "result": ln.result,
                "cost_nano": 0 if ln.status_code is not None else None,
            }
            for i, ln in enumerate(lines)
        ]
        async with self.engine.begin() as conn:
            await conn.execute(batches.insert().values(row))
            for start in range(0, len(rows), 1000):
                await conn.execute(batch_lines.insert(), rows[start : start + 1000])

    async def batch(self, batch_id: str, account_id: str | None = None) -> Batch | None:
        q = select(batches).where(batches.c.id == batch_id, batches.c.deleted_at.is_(None))
        if account_id is not None:
            q = q.where(batches.c.account_id == account_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
            if row is None:
                return None
            counts = await self._counts(conn, [batch_id])
        return _batch(row, counts.get(batch_id, {}))

    async def batches(
        self, account_id: str, api: str, limit: int, after: str | None = None
    ) -> list[Batch]:
        """The account's batches of one API, newest first (`after`: the page after that id)."""
        q = select(batches).where(
            batches.c.account_id == account_id,
            batches.c.api == api,
            batches.c.deleted_at.is_(None),
        )
        if after:
            q = q.where(batches.c.id < after)
        q = q.order_by(batches.c.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
            counts = await self._counts(conn, [r.id for r in rows])
        return [_batch(r, counts.get(r.id, {})) for r in rows]

    async def _counts(self, conn: Any, ids: list[str]) -> dict[str, dict[str, int]]:
        if not ids:
            return {}
        q = (
            select(batch_lines.c.batch_id, batch_lines.c.status, func.count())
            .where(batch_lines.c.batch_id.in_(ids))
            .group_by(batch_lines.c.batch_id, batch_lines.c.status)
        )
        out: dict[str, dict[str, int]] = {}
        for batch_id, status, n in (await conn.execute(q)).all():
            out.setdefault(batch_id, {})[status] = int(n)
        return out

    async def delete(self, account_id: str, batch_id: str) -> bool:
        q = (
            update(batches)
            .where(
                batches.c.id == batch_id,
                batches.c.account_id == account_id,
                batches.c.status == ENDED,
                batches.c.deleted_at.is_(None),
            )
            .values(deleted_at=now())
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(q)).rowcount == 1

    async def end_lines(self, batch_id: str, status: str) -> list[tuple[int, int]]:
        """Lines of the batch not started → `status` (cancelled, expired): (line_no, hold) each."""
        where = and_(
            batch_lines.c.batch_id == batch_id, batch_lines.c.status.in_((PENDING, QUEUED))
        )
        async with self.engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(batch_lines.c.line_no, batch_lines.c.hold_nano).where(where)
                )
            ).all()
            await conn.execute(update(batch_lines).where(where).values(status=status, cost_nano=0))
        return [(r.line_no, r.hold_nano) for r in rows]

    async def mark_cancelling(self, account_id: str, batch_id: str) -> bool:
        q = (
            update(batches)
            .where(
                batches.c.id == batch_id,
                batches.c.account_id == account_id,
                batches.c.status == IN_PROGRESS,
            )
            .values(status=CANCELLING, cancelling_at=now())
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(q)).rowcount == 1

    async def finish_if_done(self, batch_id: str) -> bool:
        """End the batch when no line is left to run; True for the one caller that ended it."""
        async with self.engine.begin() as conn:
            left = await conn.scalar(
                select(func.count()).where(
                    batch_lines.c.batch_id == batch_id,
                    batch_lines.c.status.in_(OPEN),
                )
            )
            if left:
                return False
            result = await conn.execute(
                update(batches)
                .where(batches.c.id == batch_id, batches.c.status.in_((IN_PROGRESS, CANCELLING)))
                .values(status=ENDED, ended_at=now())
            )
            return bool(result.rowcount == 1)

    async def set_meta(self, batch_id: str, meta: dict[str, Any]) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(batches).where(batches.c.id == batch_id).values(meta=meta))

    async def expired_batches(self) -> list[str]:
        q = select(batches.c.id).where(
            batches.c.status.in_((IN_PROGRESS, CANCELLING)), batches.c.expires_at < now()
        )
        async with self.engine.connect() as conn:
            return [r.id for r in (await conn.execute(q)).all()]

    async def open_batches(self) -> list[str]:
        q = select(batches.c.id).where(batches.c.status.in_((IN_PROGRESS, CANCELLING)))
        async with self.engine.connect() as conn:
            return [r.id for r in (await conn.execute(q)).all()]

    # ---------------------------------------------------------------- lines

    async def claim(
        self, limit: int, status: str = PENDING, to: str = RUNNING, vendor_job: str | None = None
    ) -> list[ClaimedLine]:
        """Take up to `limit` lines in `status` (oldest first) for this runner: pending lines
        to run, queued lines to send to a vendor, a vendor batch's lines to settle."""
        pick = (
            select(batch_lines.c.id)
            .where(batch_lines.c.status == status)
            .order_by(batch_lines.c.id)
            .limit(limit)
        )
        if vendor_job is not None:
            pick = pick.where(batch_lines.c.vendor_job == vendor_job)
        if self.postgres:
            pick = pick.with_for_update(skip_locked=True)
        async with self.engine.begin() as conn:
            rows = (await conn.execute(_claim(pick.scalar_subquery(), to))).all()
        return sorted((ClaimedLine(*r) for r in rows), key=lambda line: line.id)

    async def claim_for_vendor(self, limit: int) -> list[ClaimedLine]:
        """Queued lines to send to their vendors, up to `limit`, taken whole per batch: the
        batch's row is locked first (FOR UPDATE SKIP LOCKED on PostgreSQL), so two replicas
        never both take part of one batch's lines and send them as two vendor batches."""
        taken: list[ClaimedLine] = []
        async with self.engine.begin() as conn:
            while len(taken) < limit:
                waiting = select(batch_lines.c.batch_id).where(batch_lines.c.status == QUEUED)
                lock = (
                    select(batches.c.id)
                    .where(batches.c.id.in_(waiting.scalar_subquery()))
                    .order_by(batches.c.created_at)
                    .limit(1)
                )
                if taken:
                    lock = lock.where(batches.c.id.notin_({x.batch_id for x in taken}))
                if self.postgres:
                    lock = lock.with_for_update(skip_locked=True)
                batch_id = await conn.scalar(lock)
                if batch_id is None:
                    break
                where = and_(batch_lines.c.batch_id == batch_id, batch_lines.c.status == QUEUED)
                ids = select(batch_lines.c.id).where(where).order_by(batch_lines.c.id)
                rows = await conn.execute(
                    _claim(ids.limit(limit - len(taken)).scalar_subquery(), SUBMITTING)
                )
                taken += sorted((ClaimedLine(*r) for r in rows.all()), key=lambda x: x.id)
        return taken

    async def claim_range(
        self, batch_id: str, first: int, last: int, retry: bool
    ) -> list[ClaimedLine]:
        """A queue job's lines (line numbers `first`..`last` of the batch) still to run; a
        retried job (its worker died) also takes those its first run held."""
        statuses = (PENDING, RUNNING) if retry else (PENDING,)
        ids = select(batch_lines.c.id).where(
            batch_lines.c.batch_id == batch_id,
            batch_lines.c.line_no.between(first, last),
            batch_lines.c.status.in_(statuses),
        )
        async with self.engine.begin() as conn:
            rows = (await conn.execute(_claim(ids.scalar_subquery(), RUNNING))).all()
        return sorted((ClaimedLine(*r) for r in rows), key=lambda line: line.id)

    async def pending_line_nos(self) -> dict[str, tuple[int, list[int]]]:
        """The lines waiting to run, by batch: (the batch's line count, their line numbers)."""
        q = (
            select(batch_lines.c.batch_id, batches.c.total, batch_lines.c.line_no)
            .join(batches, batches.c.id == batch_lines.c.batch_id)
            .where(batch_lines.c.status == PENDING)
        )
        out: dict[str, tuple[int, list[int]]] = {}
        async with self.engine.connect() as conn:
            for batch_id, total, line_no in (await conn.execute(q)).all():
                out.setdefault(batch_id, (total, []))[1].append(line_no)
        return out

    async def put_back(self, line_ids: list[int]) -> None:
        """Lines this process took and will not finish (it is stopping): pending again."""
        async with self.engine.begin() as conn:
            for start in range(0, len(line_ids), 1000):
                await conn.execute(
                    update(batch_lines)
                    .where(
                        batch_lines.c.id.in_(line_ids[start : start + 1000]),
                        batch_lines.c.status == RUNNING,
                    )
                    .values(status=PENDING, claimed_at=None)
                )

    async def record(self, results: Iterable[tuple[int, str, int, str, int]]) -> None:
        """Lines' ends, in one transaction: (line id, status, status code, body, cost)."""
        rows = [
            {"lid": lid, "s": status, "code": code, "res": body, "cost": cost}
            for lid, status, code, body, cost in results
        ]
        if not rows:
            return
        q = (
            update(batch_lines)
            .where(
                batch_lines.c.id == bindparam("lid"),
                # Spelled out: an IN list cannot go into an executemany.
                or_(*(batch_lines.c.status == s for s in (RUNNING, SUBMITTING, COLLECTING))),
            )
            .values(
                status=bindparam("s"),
                status_code=bindparam("code"),
                result=bindparam("res"),
                cost_nano=bindparam("cost"),
            )
        )
        async with self.engine.begin() as conn:
            await conn.execute(q, rows)

    async def release_stale(self, older_than: dt.datetime | None) -> int:
        """Lines a runner took and never finished (it died) go back where they were: all of
        them (None: the embedded default starts, no other runner exists) or those claimed
        before `older_than`. A line half-way through its vendor batch's settlement goes back
        to the vendor batch (its answer is read again and settled once), never to be run."""
        released = 0
        async with self.engine.begin() as conn:
            for taken, back in _RESUMED.items():
                q = update(batch_lines).where(batch_lines.c.status == taken)
                if older_than is not None:
                    q = q.where(batch_lines.c.claimed_at < older_than)
                result = await conn.execute(q.values(status=back, claimed_at=None))
                released += int(result.rowcount)
        return released

    async def to_vendor(self, line_ids: list[int], vendor_job: str | None) -> None:
        """Sent lines into their vendor batch (None: the vendor refused the batch, the
        gateway runs them itself)."""
        values: dict[str, Any] = (
            {"status": AT_VENDOR, "vendor_job": vendor_job}
            if vendor_job
            else {"status": PENDING, "claimed_at": None}
        )
        async with self.engine.begin() as conn:
            for start in range(0, len(line_ids), 1000):
                chunk = line_ids[start : start + 1000]
                await conn.execute(
                    update(batch_lines)
                    .where(batch_lines.c.id.in_(chunk), batch_lines.c.status == SUBMITTING)
                    .values(**values)
                )

    async def vendor_jobs(self) -> list[tuple[str, str]]:
        """The vendor batches lines wait in: (vendor job, tokenrelay batch id)."""
        q = (
            select(batch_lines.c.vendor_job, batch_lines.c.batch_id)
            .where(batch_lines.c.status == AT_VENDOR)
            .distinct()
        )
        async with self.engine.connect() as conn:
            return [(r.vendor_job, r.batch_id) for r in (await conn.execute(q)).all()]

    async def results(self, batch_id: str, statuses: tuple[str, ...]) -> list[Any]:
        q = (
            select(
                batch_lines.c.line_no,
                batch_lines.c.custom_id,
                batch_lines.c.status,
                batch_lines.c.status_code,
                batch_lines.c.result,
            )
            .where(batch_lines.c.batch_id == batch_id, batch_lines.c.status.in_(statuses))
            .order_by(batch_lines.c.line_no)
        )
        async with self.engine.connect() as conn:
            return list((await conn.execute(q)).all())


def _claim(ids: Any, to: str) -> Any:
    """The lines `ids` selects, now in state `to` (claimed now): returns them."""
    return (
        update(batch_lines)
        .where(batch_lines.c.id.in_(ids))
        .values(status=to, claimed_at=now())
        .returning(
            batch_lines.c.id,
            batch_lines.c.batch_id,
            batch_lines.c.line_no,
            batch_lines.c.custom_id,
            batch_lines.c.body,
            batch_lines.c.hold_nano,
        )
    )


def _batch(row: Any, counts: dict[str, int]) -> Batch:
    return Batch(
        id=row.id,
        api=row.api,
        account_id=row.account_id,
        key_id=row.key_id,
        endpoint=row.endpoint,
        input_file_id=row.input_file_id,
        status=row.status,
        multiplier_ppm=row.multiplier_ppm,
        hold_nano=row.hold_nano,
        total=row.total,
        meta=dict(row.meta or {}),
        created_at=utc(row.created_at),
        expires_at=utc(row.expires_at),
        cancelling_at=utc(row.cancelling_at) if row.cancelling_at else None,
        ended_at=utc(row.ended_at) if row.ended_at else None,
        counts=counts,
    )
