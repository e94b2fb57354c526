"""Deployment state every process shares: an operator's drain and restore, and a key the
vendor refused. A pool's health (in flight, cooldowns) stays per process — it is what this
process sees —, but taking a deployment out or putting it back is one decision for all.

Deployments an operator adds or edits in the console (base URL, key, weight, region, models)
are rows of `upstream_deployments`, applied the same way: a rotated key reaches every worker
and replica within a second, with no restart. Keys are kept Fernet-encrypted (`KeyBox`) or as
an `env:NAME` reference that each process resolves itself.

Each process also writes what it sees of each deployment (in flight, served, failures, state)
to `deployment_health` every few seconds; the console sums the fresh rows over every process.

Each change is a row of `deployment_states` (the database every worker and replica already
shares); each process reads the table every half second and applies the rows that changed
since it last looked. A small table polled twice a second costs less than any pub/sub to keep,
and works alike on SQLite and PostgreSQL, with or without Redis (the same reasoning as key
revocations in auth.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import functools
import hashlib
import logging
import os
import socket
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from tokenrelay import ir
from tokenrelay.store.async_core import AsyncEngine
from tokenrelay.store.db import dialect_insert
from tokenrelay.store.tables import deployment_health, deployment_states, upstream_deployments
from tokenrelay.upstreams.pools import Deployment, Pool, VendorEndpoint

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

    from tokenrelay.upstreams.calls import Upstreams

log = logging.getLogger("tokenrelay.upstreams.pools")

POLL_S = 0.5
# Built once: `sync` runs them twice a second.
_ALL_ACCOUNTS = select(upstream_deployments)
_ALL_STATES = select(deployment_states)
HEALTH_S = 2.0  # how often a process writes what changed in its view of the deployments
HEALTH_IDLE_S = 20.0  # ... and how often when nothing did (the console's rows stay fresh)
HEALTH_FRESH_S = 60.0  # rows older than this are a process that stopped
ENV_PREFIX = "env:"


class KeyBox:
    """Vendor keys at rest: Fernet (AES-CBC + HMAC) under a key derived from the operator's
    TOKENRELAY_SECRET_KEY. Without one, nothing can be sealed: only `env:NAME` references.
    The cipher (cryptography: ~7 MB of the process) is made at the first seal or open."""

    def __init__(self, secret: str | None) -> None:
        self._secret = secret or ""
        self.configured = bool(secret)

    @functools.cached_property
    def _fernet(self) -> Fernet | None:
        if not self.configured:
            return None
        from cryptography.fernet import Fernet

        return Fernet(base64.urlsafe_b64encode(hashlib.sha256(self._secret.encode()).digest()))

    def seal(self, plaintext: str) -> str:
        if self._fernet is None:
            raise ValueError("no TOKENRELAY_SECRET_KEY to encrypt keys with")
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def open(self, ciphertext: str) -> str | None:
        """The key, or None when it cannot be read (no or another secret key)."""
        if self._fernet is None:
            return None
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode()
        except (InvalidToken, ValueError):
            return None


class DeploymentStates:
    """Writes this process's drains, restores and key removals; applies everyone's."""

    def __init__(
        self,
        engine: AsyncEngine,
        pools: Mapping[str, Pool],
        interval_s: float = POLL_S,
        *,
        upstreams: Upstreams | None = None,
        keys: KeyBox | None = None,
    ) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.pools = pools
        self.upstreams = upstreams
        self.keys = keys or KeyBox(None)
        self._found: dict[str, tuple[Pool, Deployment]] = {
            d.id: (pool, d) for pool in pools.values() for d in pool.deployments
        }
        self._seen: dict[str, int] = {}  # deployment id -> version applied
        self._accounts_seen: dict[str, int] = {}  # upstream_deployments id -> version applied
        self.process = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"[:80]
        self._health_sent: dict[str, tuple[Any, ...]] = {}
        self._health_at = 0.0
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
            await self.report_health(force=True)
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
        with contextlib.suppress(Exception):  # a stopped process leaves no stale counts
            async with self.engine.begin() as conn:
                t = deployment_health
                await conn.execute(delete(t).where(t.c.process == self.process))

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
        # Marked seen before the write: a sync that read the row's older version while this
        # change was under way must not apply that stale state over it.
        self._seen[d.id] = version
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

    async def sync(self) -> None:
        """Apply every row that changed since the last look."""
        async with self.engine.connect() as conn:
            accounts = (await conn.execute(_ALL_ACCOUNTS)).all()
            rows = (await conn.execute(_ALL_STATES)).all()
        for account in accounts:
            if self._accounts_seen.get(account.id) != account.version:
                self._accounts_seen[account.id] = account.version
                self._apply_account(account)
        for row in rows:
            found = self._found.get(row.id)
            if found is None or row.version <= self._seen.get(row.id, -1):
                continue  # seen, or older than what this process last wrote
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
                if time.monotonic() - self._health_at >= HEALTH_S:
                    await self.report_health()
            except Exception as exc:  # the next round tries again
                log.warning("deployment state check failed: %s", type(exc).__name__)

    # ------------------------------------------------------------ operator-managed deployments

    def _apply_account(self, row: Any) -> None:
        """An operator's deployment row: a new deployment, or a configured one changed."""
        found = self._found.get(row.id)
        endpoint = self._endpoint(row, found[1] if found else None)
        if found is not None:
            d = found[1]
            if endpoint is not None:
                d.endpoint = endpoint
            if row.weight is not None:
                d.weight = max(int(row.weight), 1)
            if row.region is not None:
                d.region = row.region or None
            if row.models is not None:
                d.models = frozenset(row.models) or None
            log.warning("deployment %s changed by an operator", d.id)
            return
        if endpoint is None or self.upstreams is None:
            log.warning("deployment %s not added: its key or vendor is unknown here", row.id)
            return
        d = Deployment(
            row.name, endpoint, weight=row.weight or 1, region=row.region, models=row.models or ()
        )
        pools: MutableMapping[str, Pool] = self.upstreams.pools
        pool = pools.get(row.vendor)
        if pool is None:
            pool = pools[row.vendor] = Pool(row.vendor, [d], **self.upstreams.cooldown)
            self.upstreams.endpoints[row.vendor] = endpoint
        else:
            pool.deployments.append(d)
            pool.single = False
            pool.on_removed = self._removed
        self._found[d.id] = (pool, d)
        log.warning("deployment %s added by an operator", d.id)

    def _endpoint(self, row: Any, current: Deployment | None) -> VendorEndpoint | None:
        """The row's endpoint; None when it sets neither a base URL nor a key (keep the
        configured one) or its key cannot be read in this process."""
        if row.base_url is None and row.key_ciphertext is None and row.key_env is None:
            return None
        key: str | None
        if row.key_ciphertext is not None:
            key = self.keys.open(row.key_ciphertext)
        elif row.key_env is not None:
            key = os.environ.get(row.key_env) or None
        else:
            key = current.endpoint.api_key if current else None
        if key is None:
            log.error("deployment %s: its key cannot be read in this process", row.id)
            return None
        if current is not None:
            adapter = current.endpoint.adapter
        elif self.upstreams is not None and row.vendor in self.upstreams.vendors:
            adapter = self.upstreams.vendors[row.vendor].adapter
        else:
            return None
        base = (row.base_url or (current.endpoint.base_url if current else "")).rstrip("/")
        return VendorEndpoint(row.vendor, adapter, base, key, False)

    async def save_account(self, deployment_id: str, actor: str, **values: Any) -> None:
        """Create or change an operator's deployment row (values: upstream_deployments
        columns), then apply it here at once; the other processes follow within a second."""
        t = upstream_deployments
        vendor, _, name = deployment_id.partition("/")
        values = {
            **values,
            "version": time.time_ns(),
            "updated_by": actor[:320],
            "updated_at": dt.datetime.now(dt.UTC),
        }
        async with self.engine.begin() as conn:
            done = await conn.execute(update(t).where(t.c.id == deployment_id), values)
            if not done.rowcount:
                await conn.execute(
                    insert(t).values(id=deployment_id, vendor=vendor, name=name, **values)
                )
        await self.sync()

    async def accounts(self) -> dict[str, Any]:
        """The operator rows by deployment id (what the console shows: never the key)."""
        async with self.engine.connect() as conn:
            return {r.id: r for r in (await conn.execute(select(upstream_deployments))).all()}

    # ------------------------------------------------------------ health over every process

    async def report_health(self, *, force: bool = False) -> None:
        """Write this process's view of what changed (at least every HEALTH_IDLE_S)."""
        now = time.monotonic()
        idle = now - self._health_at >= HEALTH_IDLE_S
        rows = []
        for _pool, d in self._found.values():
            snap = (d.state(now), d.in_flight, d.served, d.total_failures, d.last_error)
            if force or idle or self._health_sent.get(d.id) != snap:
                rows.append((d.id, snap))
        self._health_at = now
        if not rows:
            return
        stamp = dt.datetime.now(dt.UTC)
        values = [
            {
                "process": self.process,
                "deployment_id": dep_id,
                "state": state,
                "in_flight": in_flight,
                "served": served,
                "failures": failures,
                "last_error": (error or "")[:500] or None,
                "updated_at": stamp,
            }
            for dep_id, (state, in_flight, served, failures, error) in rows
        ]
        async with self.engine.begin() as conn:
            stmt = dialect_insert(conn, deployment_health).values(values)
            keep = ("state", "in_flight", "served", "failures", "last_error", "updated_at")
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["process", "deployment_id"],
                    set_={c: stmt.excluded[c] for c in keep},
                )
            )
        for dep_id, snap in rows:
            self._health_sent[dep_id] = snap


async def health_sums(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    """Per deployment id, the sums over every process that reported lately: in flight,
    served, failures, processes, and in how many it is cooling, out or healthy."""
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=HEALTH_FRESH_S)
    t = deployment_health
    async with engine.connect() as conn:
        rows = (await conn.execute(select(t).where(t.c.updated_at >= since))).all()
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        s = out.setdefault(
            r.deployment_id,
            {"in_flight": 0, "served": 0, "failures": 0, "processes": 0, "states": {}},
        )
        s["in_flight"] += r.in_flight
        s["served"] += r.served
        s["failures"] += r.failures
        s["processes"] += 1
        s["states"][r.state] = s["states"].get(r.state, 0) + 1
        if r.last_error:
            s["last_error"] = r.last_error
    return out


async def probe(upstreams: Upstreams, d: Deployment, model: str, upstream_model: str) -> Probe:
    """One live call to `d` (a one-word prompt, 16 tokens at most): what the vendor answered
    and how fast. Not counted in the pool's health: an operator's test, not traffic."""
    req = ir.Request(
        model=model, messages=[ir.Message("user", [ir.Text("Say ok.")])], max_tokens=16
    )
    ep = d.endpoint
    call = ep.adapter.build_request(req, upstream_model, api_key=ep.api_key, base_url=ep.base_url)
    headers = {"accept-encoding": "identity", **call.headers}
    started = time.monotonic()
    try:
        async with asyncio.timeout(30):
            resp = await upstreams.client.request(call.method, call.url, headers, call.body)
            body = await resp.read()
    except Exception as exc:  # the operator sees why, whatever it was
        return Probe(None, round((time.monotonic() - started) * 1000), type(exc).__name__)
    ms = round((time.monotonic() - started) * 1000)
    if resp.status == 200:
        return Probe(200, ms, "answered")
    err = ep.adapter.parse_error(resp.status, body, dict(resp.headers))
    return Probe(resp.status, ms, err.message[:300])


@dataclass(frozen=True, slots=True)
class Probe:
    status: int | None  # None: no answer (connection failed, timed out)
    ms: int
    detail: str

    @property
    def ok(self) -> bool:
        return self.status == 200
