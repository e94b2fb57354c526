"""The batch-line queue (procrastinate, on PostgreSQL) stops with the gateway: a shutdown with
no line running ends at once, not after the grace it gives lines in flight (every SIGTERM of
every replica took that grace, 10 s: a rolling restart waited on it, and a supervisor's stop
timeout could kill the process before its settlements were flushed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from backends import backend
from tokenrelay.batches.queue import LineQueue
from tokenrelay.batches.store import BatchStore, ClaimedLine
from tokenrelay.store.db import create_engine, migrate_async


async def _never(line: ClaimedLine) -> None:
    raise AssertionError(f"no line was queued, yet {line.id} ran")


async def _nothing() -> None:
    return None


async def test_an_idle_queue_stops_without_waiting_out_its_grace(tmp_path: Path) -> None:
    with backend("postgres+redis", tmp_path) as b:
        engine = create_engine(b.database_url)
        try:
            await migrate_async(engine)
            queue = LineQueue(BatchStore(engine), b.database_url, 2, _never, _nothing)
            await queue.start()
            # A grace no test outlives: a close that waits it out is stopped by the bound.
            await asyncio.wait_for(queue.close(grace_s=3600), timeout=60)
        finally:
            await engine.dispose()
