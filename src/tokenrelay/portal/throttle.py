"""Throttles for credentials and sign-ups: in Redis when it is configured (one count for every
worker and replica), else in this process (one replica: the embedded default).

A `Backoff` never locks anyone out: from the `free`-th failure of one name on, each next try
waits, doubling from `base_s` up to `max_s`, and one success clears the name. Names pair the client
IP with the account tried (`client_ip` believes forwarded headers only from trusted proxies,
see TOKENRELAY_TRUSTED_PROXIES), so an outsider slows only their own guesses, never the
owner's sign-in from another address. A `Quota` counts events (sign-ups) in fixed windows.

Names are hashed before they become keys: no email address sits in Redis or in memory.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from tokenrelay.settings import Settings
from tokenrelay.store.redis_pool import redis_client

log = logging.getLogger("tokenrelay.portal")
MAX_NAMES = 100_000  # in-process state is bounded: the oldest names go first

# KEYS[1]: the name's hash; ARGV: free, base_s, max_s, now, window_s. Returns the wait (s).
_FAIL = """
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
local wait = 0
if n >= tonumber(ARGV[1]) then
  wait = math.min(tonumber(ARGV[2]) * 2 ^ (n - tonumber(ARGV[1])), tonumber(ARGV[3]))
  redis.call('HSET', KEYS[1], 'until', tonumber(ARGV[4]) + wait)
end
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[5]) + wait))
return tostring(wait)
"""
# KEYS[1]: the window's key; ARGV: window_s. Returns the count in this window.
_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1])) end
return n
"""


def client_ip(request: Request) -> str:
    """The client's address as the server saw it: uvicorn has already replaced the peer with the
    forwarded client when (and only when) the peer is a trusted proxy."""
    return request.client.host if request.client else ""


def shared_store(settings: Settings) -> Store:
    """The store every replica shares when Redis is configured, else this process's own."""
    redis = None
    if settings.redis_url:  # bounded waits: a hung Redis fails a sign-in in seconds, not minutes
        redis = redis_client(settings.redis_url, connections=64, wait_s=2, io_timeout_s=2)
    return Store(redis, settings.redis_prefix)


def _key(prefix: str, name: str) -> str:
    return prefix + "throttle:" + hashlib.sha256(name.encode()).hexdigest()[:32]


class Store:
    """Where throttle state lives: Redis (shared) or this process (bounded)."""

    def __init__(self, redis: Any | None, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._local: OrderedDict[str, tuple[float, float, float]] = OrderedDict()
        # Imported only with Redis configured: the redis package pulls in optional
        # instrumentation (OpenTelemetry) that the embedded default must not load.
        self._down: tuple[type[BaseException], ...] = (OSError,)
        if redis is not None:
            from redis.exceptions import RedisError

            self._down = (OSError, RedisError)

    async def fail(
        self, name: str, free: int, base_s: float, max_s: float, window_s: float
    ) -> float:
        key, now = _key(self.prefix, name), time.time()
        if self.redis is not None:
            try:
                return float(
                    await self.redis.eval(_FAIL, 1, key, free, base_s, max_s, now, window_s)
                )
            except self._down as exc:  # Redis gone: count here rather than not at all
                log.warning("throttle falls back to this process: %s", type(exc).__name__)
        n, until, expires = self._local.pop(key, (0.0, 0.0, 0.0))
        if expires < now:
            n, until = 0.0, 0.0
        n += 1
        wait = min(base_s * 2 ** (n - free), max_s) if n >= free else 0.0
        until = now + wait if wait else until
        self._remember(key, (n, until, now + window_s + wait))
        return wait

    async def wait(self, name: str) -> float:
        key, now = _key(self.prefix, name), time.time()
        if self.redis is not None:
            try:
                until = await self.redis.hget(key, "until")
                return max(0.0, float(until) - now) if until is not None else 0.0
            except self._down as exc:
                log.warning("throttle falls back to this process: %s", type(exc).__name__)
        _, until, expires = self._local.get(key, (0.0, 0.0, 0.0))
        return max(0.0, until - now) if expires >= now else 0.0

    async def clear(self, name: str) -> None:
        key = _key(self.prefix, name)
        self._local.pop(key, None)
        if self.redis is not None:
            try:
                await self.redis.delete(key)
            except self._down as exc:
                log.warning("throttle falls back to this process: %s", type(exc).__name__)

    async def hit(self, name: str, window_s: int) -> int:
        """Count one event of `name` in the current fixed window; the count so far."""
        now = time.time()
        window = math.floor(now / window_s)
        key = f"{_key(self.prefix, name)}:{window}"
        if self.redis is not None:
            try:
                return int(await self.redis.eval(_HIT, 1, key, window_s))
            except self._down as exc:
                log.warning("throttle falls back to this process: %s", type(exc).__name__)
        n, _, _ = self._local.pop(key, (0.0, 0.0, 0.0))
        self._remember(key, (n + 1, 0.0, (window + 1) * window_s))
        return int(n + 1)

    def _remember(self, key: str, state: tuple[float, float, float]) -> None:
        self._local[key] = state
        while len(self._local) > MAX_NAMES:
            self._local.popitem(last=False)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Failures of one kind of credential: `free` tries per window, then a doubling wait."""

    store: Store
    kind: str
    free: int
    window_s: float
    base_s: float = 10.0
    max_s: float = 900.0

    async def wait(self, *names: str) -> float | None:
        """Seconds before another try of these names is allowed; None: allowed now."""
        waits = [await self.store.wait(f"{self.kind}:{n}") for n in names]
        longest = max(waits, default=0.0)
        return longest or None

    async def failed(self, *names: str) -> None:
        for n in names:
            await self.store.fail(
                f"{self.kind}:{n}", self.free, self.base_s, self.max_s, self.window_s
            )

    async def succeeded(self, *names: str) -> None:
        for n in names:
            await self.store.clear(f"{self.kind}:{n}")


@dataclass(frozen=True, slots=True)
class SignInGuard:
    """Wrong passwords at one sign-in form, in two backoffs: per (client IP, identity), so an
    outsider never slows the owner's sign-in from another address, and per client IP across
    identities, ten times looser (a NAT or an office shares one address)."""

    pair: Backoff
    ip: Backoff

    @classmethod
    def of(cls, store: Store, kind: str, settings: Settings) -> SignInGuard:
        free, window = settings.login_attempts, settings.login_window_s
        return cls(
            Backoff(store, kind, free, window), Backoff(store, f"{kind}-ip", free * 10, window)
        )

    async def wait(self, ip: str, identity: str) -> float | None:
        """Seconds before `identity` may be tried again from `ip`; None: now."""
        pair = await self.pair.wait(f"{ip}|{identity}")
        return max(pair or 0.0, await self.ip.wait(ip) or 0.0) or None

    async def result(self, ip: str, identity: str, ok: bool) -> None:
        if ok:
            await self.pair.succeeded(f"{ip}|{identity}")
        else:
            await self.pair.failed(f"{ip}|{identity}")
            await self.ip.failed(ip)


@dataclass(frozen=True, slots=True)
class Quota:
    """At most `limit` events per `window_s` for one name (0: none at all)."""

    store: Store
    kind: str
    limit: int
    window_s: int

    async def take(self, name: str = "") -> bool:
        """Count one event; False when this one is over the limit."""
        return await self.store.hit(f"{self.kind}:{name}", self.window_s) <= self.limit
