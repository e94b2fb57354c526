"""Deployment state every process shares: an operator's drain and restore, and a key the
vendor refused. A pool's health (in flight, cooldowns) stays per process — it is what this
process sees —, but taking a deployment out or putting it back is one decision for all.

Each change is a row of `deployment_states` (the database every worker and replica already
shares); each process reads the table every half second and applies the rows that changed
since it last looked. A small table polled twice a second costs less than any pub/sub to keep,
and works alike on SQLite and PostgreSQL, with or without Redis (the same reasoning as key
revocations in auth.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Mapping

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tokenrelay.store.tables import deployment_states
from tokenrelay.upstreams.pools import Deployment, Pool

log = logging.getLogger("tokenrelay.upstreams.pools")

POLL_S = 0.5


class DeploymentStates:
    """Writes this process's drains, restores and key removals; applies everyone's."""

    def __init__(
        self, engine: AsyncEngine, pools: Mapping[str, Pool], interval_s: float = POLL_S
    ) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self._found: dict[str, tuple[Pool, Deployment]] = {
            d.id: (pool, d) for pool in pools.values() for d in pool.deployments
        }
        self._seen: dict[str, int] = {}  # deployment id -> version applied
        self._watch: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        for pool in pools.values():
            if not pool.single:
                pool.on_removed = self._removed

    async def start(self) -> None:
        """Apply the state as it is (a worker started after a drain starts drained), then
        follow it."""
        try:
            await self.sync()
        except Exception as exc:  # the watch tries again; serving must not wait on it
            log.warning("deployment state not read: %s", type(exc).__name__)
        if self._watch is None:
            self._watch = asyncio.create_task(self._follow())

    async def close(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None

    async def drain(self, pool: Pool, d: Deployment) -> None:
        pool.drain(d)
        await self._save(d)

    async def restore(self, pool: Pool, d: Deployment) -> None:
        pool.restore(d)
        await self._save(d)

    def _removed(self, d: Deployment) -> None:
        """The pool took `d` out (its key refused), on the request path: written in the
        background."""
        task = asyncio.get_running_loop().create_task(self._save(d))
        self._writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("deployment state not written: %s", type(exc).__name__)

    async def _save(self, d: Deployment) -> None:
        version = time.time_ns()
        values = {
            "drained": d.drained,
            "removed_reason": d.removed[:500] if d.removed is not None else None,
            "version": version,
            "updated_at": dt.datetime.now(dt.UTC),
        }
        table = deployment_states
        for _ in range(2):  # an insert that lost a race to another process's becomes an update
            try:
                async with self.engine.begin() as conn:
                    done = await conn.execute(update(table).where(table.c.id == d.id), values)
                    if not done.rowcount:
                        await conn.execute(insert(table).values(id=d.id, **values))
                break
            except IntegrityError:
                continue
        self._seen[d.id] = version

    async def sync(self) -> None:
        """Apply every row that changed since the last look."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(deployment_states))).all()
        for row in rows:
            found = self._found.get(row.id)
            if found is None or self._seen.get(row.id) == row.version:
                continue
            self._seen[row.id] = row.version
            pool, d = found
            if d.drained == row.drained and d.removed == row.removed_reason:
                continue
            if not row.drained and row.removed_reason is None:
                pool.restore(d)  # the operator's restore: no cooldown, no failure count
            else:
                d.drained, d.removed = row.drained, row.removed_reason
                log.warning("deployment %s is %s (changed elsewhere)", d.id, d.state(0.0))

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sync()
            except Exception as exc:  # the next round tries again
                log.warning("deployment state check failed: %s", type(exc).__name__)
