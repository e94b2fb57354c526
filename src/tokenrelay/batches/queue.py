"""Batch lines on PostgreSQL run as procrastinate jobs: a job per chunk of a batch's lines,
deferred when the batch is created, taken by the worker of any replica (or `serve --workers`
process: each runs one, with the gateway's lifespan). The lines' state stays in `batch_lines`
(what the batch APIs read); the queue is the dispatch, liveness and retry layer: a replica
that dies (SIGKILL, a lost host) stops sending heartbeats, and the jobs it held are retried
by another replica once its heartbeat is `_STALLED_S` old, whatever a line's vendor call may
take; a job stopped by a graceful shutdown is retried at once. A retried job takes its
chunk's lines still pending and those its first run held (they run again under the same
request id: a settlement that committed is not billed twice).

Why procrastinate (bench/batch_queue.py, 10,000 lines, figures in bench/README.md): it keeps
the work in the PostgreSQL every production deployment has (saq would need Redis for it, or
its younger Postgres queue), its schema comes in our migrations (0018), a job per chunk costs
about what our former claim loop did in transactions and CPU, and it replaces the loop's
15-minute lease (which had to outlast the longest vendor call, since the loop could not tell a
dead runner from a slow one) with worker heartbeats. A job per line cost several times the
transactions and wall time, so lines go in chunks. arq is in maintenance-only mode and pins
redis<6.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import procrastinate
from procrastinate import exceptions as pexc
from sqlalchemy.engine import make_url

from tokenrelay.batches.store import BatchStore, ClaimedLine

log = logging.getLogger("tokenrelay.batches.queue")

_TASK = "tokenrelay.batch_lines"
_CHUNK_MAX = 100  # lines per job at most
_SPREAD = 16  # a batch's lines spread over at least this many jobs (when it has the lines)
_HEARTBEAT_S = 10.0
_STALLED_S = 30.0  # a worker this long without a heartbeat is dead: its jobs are retried

# Runs one claimed line and returns when its end is handed to the recorder (jobs.BatchJobs).
RunLine = Callable[[ClaimedLine], Awaitable[None]]


def chunk_size(total: int) -> int:
    """Lines per job for a batch of `total` lines (deterministic: a restart finds the same
    chunks again)."""
    return max(1, min(_CHUNK_MAX, math.ceil(total / _SPREAD)))


def chunks(total: int, line_nos: list[int]) -> list[int]:
    """The first line numbers of the chunks holding `line_nos`."""
    size = chunk_size(total)
    return sorted({n - n % size for n in line_nos})


def conninfo(database_url: str) -> str:
    """libpq's form of the gateway's PostgreSQL URL (psycopg, procrastinate's driver)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


class LineQueue:
    def __init__(
        self,
        store: BatchStore,
        database_url: str,
        concurrency: int,
        run_line: RunLine,
        flush: Callable[[], Awaitable[None]],
    ) -> None:
        self.store = store
        self.concurrency = concurrency
        self._run_line = run_line
        self._flush = flush
        self.stopping = False
        connector = procrastinate.PsycopgConnector(
            conninfo=conninfo(database_url), min_size=1, max_size=4
        )
        self.app = procrastinate.App(connector=connector)
        self.app.task(
            name=_TASK,
            pass_context=True,
            retry=procrastinate.RetryStrategy(max_attempts=20, wait=1),
        )(self._job)
        self._worker: Any = None

    async def start(self) -> None:
        import asyncio

        await self.app.open_async()
        self._worker = asyncio.create_task(
            self.app.run_worker_async(
                concurrency=self.concurrency,
                install_signal_handlers=False,
                update_heartbeat_interval=_HEARTBEAT_S,
                stalled_worker_timeout=_STALLED_S,
                delete_jobs="successful",
                name="batch-lines",
            ),
            name="batch-queue-worker",
        )

    async def close(self, grace_s: float) -> None:
        import asyncio

        self.stopping = True  # jobs stop after their current line and are retried elsewhere
        if self._worker is not None:
            # A cancel is procrastinate's stop request: no new job is taken and the running ones
            # are waited for; cancelled again, what outlives the grace is aborted. The worker
            # never stops of itself: merely waiting for it cost every shutdown the whole grace.
            self._worker.cancel()
            await asyncio.wait([self._worker], timeout=grace_s)
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._worker, grace_s + 5)
        await self.app.close_async()

    async def defer(self, batch_id: str, total: int, line_nos: list[int]) -> None:
        """Jobs for the chunks of `line_nos`; a chunk already waiting in the queue is not
        queued twice (its queueing lock)."""
        size = chunk_size(total)
        task = self.app.tasks[_TASK]
        jobs = [
            task.configure(queueing_lock=f"{batch_id}:{first}").make_new_job(
                batch_id=batch_id, first=first, last=first + size - 1
            )
            for first in chunks(total, line_nos)
        ]
        try:  # one statement for them all
            await self.app.job_manager.batch_defer_jobs_async(jobs)
        except pexc.AlreadyEnqueued:  # some are: the others one by one
            for job in jobs:
                with contextlib.suppress(pexc.AlreadyEnqueued):
                    await self.app.job_manager.defer_job_async(job)

    async def recover(self) -> None:
        """Jobs of dead workers retried; chunks with pending lines and no job (a process
        stopped between storing a batch and queueing it) queued."""
        jobs = self.app.job_manager
        for job in await jobs.get_stalled_jobs(task_name=_TASK, seconds_since_heartbeat=_STALLED_S):
            with contextlib.suppress(Exception):  # another replica retried it first
                await jobs.retry_job(job)
        queued = {
            str(j.queueing_lock) for j in await jobs.list_jobs_async(task=_TASK, status="todo")
        } | {
            f"{j.task_kwargs.get('batch_id')}:{j.task_kwargs.get('first')}"
            for j in await jobs.list_jobs_async(task=_TASK, status="doing")
        }
        for batch_id, (total, line_nos) in (await self.store.pending_line_nos()).items():
            size = chunk_size(total)
            missing = [n for n in line_nos if f"{batch_id}:{n - n % size}" not in queued]
            if missing:
                await self.defer(batch_id, total, missing)

    async def _job(self, context: Any, batch_id: str, first: int, last: int) -> None:
        lines = await self.store.claim_range(batch_id, first, last, retry=context.job.attempts > 0)
        left = {line.id for line in lines}
        try:
            for line in lines:
                if self.stopping:
                    break
                await self._run_line(line)
                left.discard(line.id)
            await self._flush()  # the job ends once its lines' ends are recorded
        finally:
            if left:  # stopping: the rest run when the job is retried, here or elsewhere
                await self.store.put_back(sorted(left))
        if left:
            raise RuntimeError(f"stopped with {len(left)} lines of {batch_id} to run")
