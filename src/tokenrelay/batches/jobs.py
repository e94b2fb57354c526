"""Batch jobs: create (decide every line, hold the sum of their worst cases), run (a runner
task per process claims pending lines and runs them at bounded concurrency), cancel, expire,
end (output files, leftover holds returned).

State is in the database (batches.store), so a batch survives restarts and every replica
shares the work. On PostgreSQL (production) the lines run as jobs of a queue, procrastinate
(queue.py: what it does and why it was chosen, by measurement); the embedded SQLite default
runs them in-process, its runner claiming pending lines itself. Either way a line whose
runner died runs again under the same request id: a settlement that had committed is not
billed twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from tokenrelay.batches.lines import FRONTENDS, Answer, Lines
from tokenrelay.batches.store import (
    CANCELLED,
    ERRORED,
    EXPIRED,
    IN_PROGRESS,
    OPEN,
    SUCCEEDED,
    Batch,
    BatchStore,
    ClaimedLine,
    NewLine,
    line_request_id,
    new_id,
    now,
)
from tokenrelay.batches.vendor import VendorBatches
from tokenrelay.billing.holds import MemoryHolds
from tokenrelay.billing.pricing import usd
from tokenrelay.customers.keys import ApiKeyInfo
from tokenrelay.errors import GatewayError
from tokenrelay.gateway.relay import Relay

if TYPE_CHECKING:
    from tokenrelay.batches.queue import LineQueue

log = logging.getLogger("tokenrelay.batches")

COMPLETION_WINDOW = dt.timedelta(hours=24)
# A line claimed longer ago than this by a runner that never finished it runs again (above
# the vendor call's total timeout, 600 s by default).
_LEASE = dt.timedelta(minutes=15)
_IDLE_POLL_S = 0.5
# Idle rounds look less and less often, up to this: each round is several queries and thread
# hand-offs (~6 ms/s of an idle gateway's loop at 0.5 s). Work this process starts or ends
# wakes the runner at once; another replica's leftovers wait at most this long.
_IDLE_POLL_MAX_S = 4.0
_HOUSEKEEPING_S = 10.0
_RECOVER_S = 60.0  # the queue's stalled jobs and unqueued lines, looked for this often
_KEY_TTL_S = 5.0

# Called when a batch ends, once (by the runner that ended it): writes its output files.
OnEnd = Callable[[Batch], Awaitable[None]]


@dataclass(slots=True)
class LineSpec:
    """A line as the client sent it."""

    custom_id: str
    endpoint: str
    payload: Any


class BatchJobs:
    def __init__(self, relay: Relay, store: BatchStore, concurrency: int) -> None:
        self.relay = relay
        self.store = store
        self.lines = Lines(relay)
        self.engine = relay.meter.engine
        self.concurrency = max(concurrency, 1)
        self.on_end: dict[str, OnEnd] = {}  # per API
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._done: list[tuple[ClaimedLine, Batch, Answer]] = []
        self._batches: dict[str, Batch] = {}
        self._keys: dict[str, tuple[float, ApiKeyInfo | None]] = {}
        self._stopping = False
        s = relay.settings
        self.vendor = VendorBatches(self, s.batch_vendor_apis, s.batch_poll_s)
        self.queue: LineQueue | None = None
        if store.postgres:  # procrastinate and psycopg (~11 MB) load only where they run
            from tokenrelay.batches.queue import LineQueue

            self.queue = LineQueue(
                store, s.database_url, self.concurrency, self._run_line, self._flush
            )

    # ---------------------------------------------------------------- create, cancel

    async def create(
        self,
        key: ApiKeyInfo,
        api: str,
        endpoint: str,
        specs: list[LineSpec],
        *,
        input_file_id: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Batch:
        """Decide every line and hold the sum of their worst cases (402, nothing held, when the
        balance cannot cover it). Lines that cannot run (unknown model, invalid body) end at
        once with their error and hold nothing."""
        batch_id = new_id("msgbatch_" if api == "anthropic" else "batch_")
        account = key.account_id or key.id
        new: list[NewLine] = []
        for i, spec in enumerate(specs):
            body = orjson.dumps(spec.payload).decode()
            ctx = self.lines.context(key, batch_id, i, spec.endpoint)
            try:
                if len(body) > self.relay.settings.max_body_bytes:  # what a request may be
                    limit = self.relay.settings.max_body_bytes
                    raise GatewayError(
                        "request_too_large", f"Request body exceeds {limit} bytes.", 413
                    )
                worst = await self.lines.worst_case(ctx, spec.endpoint, spec.payload)
            except GatewayError as err:
                status, err_body = FRONTENDS[spec.endpoint].render_error(err)
                new.append(
                    NewLine(spec.custom_id, body, 0, status, orjson.dumps(err_body).decode())
                )
                continue
            queued = self.vendor.takes(ctx, spec.endpoint)
            new.append(NewLine(spec.custom_id, body, worst, queued=queued))
        total_hold = sum(ln.hold_nano for ln in new)
        held = await self._hold_all(account, batch_id, new, total_hold)
        created = now()
        row = {
            "id": batch_id,
            "api": api,
            "account_id": account,
            "key_id": key.id,
            "endpoint": endpoint,
            "input_file_id": input_file_id,
            "status": IN_PROGRESS,
            "multiplier_ppm": key.multiplier_ppm,
            "hold_nano": total_hold,
            "total": len(new),
            "meta": meta or {},
            "created_at": created,
            "expires_at": created + COMPLETION_WINDOW,
        }
        try:
            await self.store.create(row, new)
        except BaseException:
            await self._release(account, held)
            raise
        if held == [batch_id]:  # Redis: the sum was the admission check; lines hold as they run
            await self._release(account, held)
        if self.queue is not None:  # a process stopping here leaves them to queue.recover
            to_run = [i for i, ln in enumerate(new) if ln.status_code is None and not ln.queued]
            if to_run:
                await self.queue.defer(batch_id, len(new), to_run)
        self._wake.set()
        batch = await self.store.batch(batch_id)
        assert batch is not None
        if not any(batch.counts.get(s) for s in OPEN):  # every line was refused: ended already
            await self._maybe_end(batch_id)
            batch = await self.store.batch(batch_id) or batch
        return batch

    async def _hold_all(
        self, account: str, batch_id: str, lines: list[NewLine], total: int
    ) -> list[str]:
        """Hold the batch's worst case (402, nothing held, when the balance cannot cover it).

        In process, a hold per line (each a dict update), returned as its line ends. On Redis,
        one hold of the sum under the batch id, returned once the batch is stored: a Redis
        hold is a lease the engine renews only for requests in flight, so per-line holds taken
        here lapsed within seconds anyway, after costing one Lua call each (10,000 lines:
        36 s of calls on a loaded machine, bench.batches holds); each line holds again when
        it runs or goes to its vendor."""
        if not self.engine.enabled:
            return []
        if isinstance(self.engine.holds, MemoryHolds):
            wanted = [
                (line_request_id(batch_id, i), ln.hold_nano)
                for i, ln in enumerate(lines)
                if ln.hold_nano
            ]
        else:
            wanted = [(batch_id, total)] if total else []
        held: list[str] = []
        for rid, amount in wanted:
            if not await self.engine.holds.reserve(account, rid, amount):
                await self._release(account, held)
                available = max(await self.engine.holds.available(account), 0)
                raise GatewayError(
                    "billing",
                    f"Insufficient balance: ${usd(available)} available, this batch may cost up "
                    f"to ${usd(total)} at batch prices (lower max_tokens or add credits)",
                    402,
                )
            held.append(rid)
        return held

    async def _release(self, account: str, request_ids: list[str]) -> None:
        for rid in request_ids:
            try:
                await self.engine.holds.release(account, rid)
            except Exception as exc:  # Redis down: the hold expires with its TTL
                log.warning("batch hold %s not released: %s", rid, type(exc).__name__)

    async def cancel(self, account_id: str, batch_id: str) -> Batch | None:
        """Lines not started end as cancelled (their holds return); lines running finish and
        are billed; the batch ends when they have."""
        batch = await self.store.batch(batch_id, account_id)
        if batch is None:
            return None
        if await self.store.mark_cancelling(account_id, batch_id):
            await self._end_lines(batch, CANCELLED)
            self.vendor.poll_soon()  # its lines at a vendor: asked to stop at the next round
            self._wake.set()
        return await self.store.batch(batch_id, account_id)

    async def _end_lines(self, batch: Batch, status: str) -> None:
        ended = await self.store.end_lines(batch.id, status)
        await self._release(batch.account_id, [line_request_id(batch.id, n) for n, _ in ended])
        self._batches.pop(batch.id, None)
        await self._maybe_end(batch.id)

    async def _maybe_end(self, batch_id: str) -> None:
        if await self.store.finish_if_done(batch_id):
            batch = await self.store.batch(batch_id)
            if batch is not None and batch.api in self.on_end:
                await self.on_end[batch.api](batch)

    # ---------------------------------------------------------------- the runner

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="batch-runner")

    async def close(self, grace_s: float = 10.0) -> None:
        """Stop claiming; let lines in flight finish (up to `grace_s`) and record them. The
        runner is let out of its round rather than cancelled: a database write cancelled
        half-way leaves SQLite's write lock with a connection nobody commits."""
        self._stopping = True
        self._wake.set()
        deadline = time.monotonic() + grace_s
        if self.queue is not None:
            await self.queue.close(grace_s)
        if self._task is not None:
            await asyncio.wait([self._task], timeout=grace_s)
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=max(deadline - time.monotonic(), 0))
        for task in list(self._inflight):  # still waiting on a vendor: they run again later
            task.cancel()
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=5.0)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            await self._flush()
        await self.vendor.close()

    async def _run(self) -> None:
        try:
            stale_before = now() - _LEASE if self.store.postgres else None
            released = await self.store.release_stale(stale_before)
            if released:
                log.warning("batches: %d lines of a stopped runner run again", released)
            for batch_id in await self.store.open_batches():
                await self._maybe_end(batch_id)
            if self.queue is not None:
                await self.queue.start()
        except Exception:
            log.exception("batches: start-up recovery failed")
        last_housekeeping = last_recovery = 0.0
        idle_s = _IDLE_POLL_S
        while not self._stopping:
            try:
                await self._flush()
                if time.monotonic() - last_housekeeping > _HOUSEKEEPING_S:
                    last_housekeeping = time.monotonic()
                    await self._housekeeping()
                if self.queue is not None and time.monotonic() - last_recovery > _RECOVER_S:
                    last_recovery = time.monotonic()
                    await self.queue.recover()
                sent = await self.vendor.submit()
                if sent:
                    await self._flush()
                await self.vendor.poll()
                free = self.concurrency - len(self._inflight)
                if self.queue is not None:  # its jobs run the lines
                    free = 0
                claimed = await self.store.claim(free) if free > 0 else []
                for line in claimed:
                    task = asyncio.create_task(self._run_line(line))
                    self._inflight.add(task)
                    task.add_done_callback(self._line_done)
                if claimed and free > len(claimed):
                    continue  # more may be pending: ask again after this round's results
                busy = sent or claimed or self._inflight or self.vendor.waiting
                idle_s = _IDLE_POLL_S if busy else min(idle_s * 2, _IDLE_POLL_MAX_S)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), idle_s)
                if self._wake.is_set():
                    idle_s = _IDLE_POLL_S
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("batches: runner round failed")
                await asyncio.sleep(1.0)

    def _line_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()

    async def _run_line(self, line: ClaimedLine) -> None:
        batch = await self._batch(line.batch_id)
        if batch is None:
            return
        key = await self._key(batch.key_id)
        ctx_key = key if key is not None and not key.revoked else None
        if ctx_key is None:
            err = GatewayError("authentication", "The API key of this batch was revoked.", 401)
            status, body = FRONTENDS[batch.endpoint].render_error(err)
            answer = Answer(status, orjson.dumps(body), 0)
        else:
            ctx = self.lines.context(ctx_key, batch.id, line.line_no, batch.endpoint)
            try:
                payload = orjson.loads(line.body)
                answer = await self.lines.run(ctx, batch.endpoint, payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("batch line %s failed", ctx.ctx.request_id)
                err = GatewayError("api_error", "Internal gateway error.", 500)
                status, body = FRONTENDS[batch.endpoint].render_error(err)
                answer = Answer(status, orjson.dumps(body), 0)
        self._done.append((line, batch, answer))

    def finished(self, line: ClaimedLine, batch: Batch, answer: Answer) -> None:
        """`line` ended with `answer`: recorded at the next flush (the runner's next round)."""
        self._done.append((line, batch, answer))
        self._wake.set()

    async def flush(self) -> None:
        await self._flush()

    async def batch(self, batch_id: str) -> Batch | None:
        return await self._batch(batch_id)

    async def key(self, key_id: str) -> ApiKeyInfo | None:
        return await self._key(key_id)

    async def _flush(self) -> None:
        """Record finished lines in one transaction; end the batches that have no line left."""
        done, self._done = self._done, []
        if not done:
            return
        try:
            await self.store.record(
                (
                    line.id,
                    a.state or (SUCCEEDED if a.status_code == 200 else ERRORED),
                    a.status_code,
                    a.body.decode(),
                    a.cost_nano,
                )
                for line, _, a in done
            )
        except BaseException:
            self._done[:0] = done  # written on the next round
            raise
        # A line that ended unbilled may keep a hold (taken at creation, or for its vendor
        # batch): returned. A settled line's hold went with its settlement.
        for line, batch, a in done:
            if not a.cost_nano:
                await self._release(batch.account_id, [line_request_id(batch.id, line.line_no)])
        for batch_id in {line.batch_id for line, _, _ in done}:
            await self._maybe_end(batch_id)

    async def _housekeeping(self) -> None:
        for batch_id in await self.store.expired_batches():
            batch = await self.store.batch(batch_id)
            if batch is not None:
                await self._end_lines(batch, EXPIRED)
        if self.store.postgres:
            await self.store.release_stale(now() - _LEASE)

    async def _batch(self, batch_id: str) -> Batch | None:
        batch = self._batches.get(batch_id)
        if batch is None:
            batch = await self.store.batch(batch_id)
            if batch is not None:
                if len(self._batches) > 1000:
                    self._batches.clear()
                self._batches[batch_id] = batch
        return batch

    async def _key(self, key_id: str) -> ApiKeyInfo | None:
        hit = self._keys.get(key_id)
        if hit is not None and time.monotonic() - hit[0] < _KEY_TTL_S:
            return hit[1]
        key = await self.relay.keys.get(key_id)
        if key is not None and key.expired():
            key = None
        self._keys[key_id] = (time.monotonic(), key)
        return key
