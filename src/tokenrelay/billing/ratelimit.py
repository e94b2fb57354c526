"""Per-key rate limits: requests/min and tokens/min as token buckets.

A bucket holds up to one minute's allowance and refills continuously. `check` admits a request
when the RPM bucket has a whole request and the TPM bucket covers the prompt estimate (capped at
the bucket size, so a huge prompt is not refused forever); only the request is consumed then.
The real token count is consumed at settle (`consume_tokens`) and may drive the TPM bucket
negative, so the next requests wait for what the last one really used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from tokenrelay.store.redis_pool import Scripts

_IDLE_EVICT = 50_000


class RateLimiter(Protocol):
    async def check(
        self, key_id: str, rpm: int | None, tpm: int | None, tokens_estimate: int
    ) -> float | None: ...
    async def consume_tokens(self, key_id: str, tpm: int | None, tokens: int) -> None: ...
    def levels(self, key_id: str, rpm: int | None, tpm: int | None) -> Levels:
        """What the key's buckets hold now (requests, tokens; None: no such limit), as this
        process last saw them: no I/O, it runs on every response (rate-limit headers)."""
        ...

    async def close(self) -> None: ...


# (requests, tokens) a key's buckets hold; None where the key has no such limit.
Levels = tuple[float | None, float | None]


class _Bucket:
    __slots__ = ("level", "stamp")

    def __init__(self, level: float, stamp: float) -> None:
        self.level = level
        self.stamp = stamp

    def refill(self, per_min: int, now: float) -> float:
        self.level = min(float(per_min), self.level + (now - self.stamp) * per_min / 60.0)
        self.stamp = now
        return self.level


class MemoryRateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._rpm: dict[str, _Bucket] = {}
        self._tpm: dict[str, _Bucket] = {}

    def _bucket(self, table: dict[str, _Bucket], key_id: str, per_min: int, now: float) -> _Bucket:
        bucket = table.get(key_id)
        if bucket is None:
            if len(table) > _IDLE_EVICT:  # bounded: idle buckets are full anyway, recreate them
                table.clear()
            bucket = table[key_id] = _Bucket(float(per_min), now)
        bucket.refill(per_min, now)
        return bucket

    async def check(
        self, key_id: str, rpm: int | None, tpm: int | None, tokens_estimate: int
    ) -> float | None:
        return self.check_now(key_id, rpm, tpm, tokens_estimate)

    # `check` and `consume_tokens` without a coroutine (BillingEngine's in-process lane).

    def check_now(
        self, key_id: str, rpm: int | None, tpm: int | None, tokens_estimate: int
    ) -> float | None:
        now = self._clock()
        wait = 0.0
        rb = self._bucket(self._rpm, key_id, rpm, now) if rpm else None
        if rb is not None and rb.level < 1:
            wait = (1 - rb.level) * 60.0 / rpm  # type: ignore[operator]
        if tpm:
            tb = self._bucket(self._tpm, key_id, tpm, now)
            need = min(tokens_estimate, tpm)
            if tb.level < need:
                wait = max(wait, (need - tb.level) * 60.0 / tpm)
        if wait > 0:
            return wait
        if rb is not None:
            rb.level -= 1
        return None

    async def consume_tokens(self, key_id: str, tpm: int | None, tokens: int) -> None:
        self.consume_now(key_id, tpm, tokens)

    def consume_now(self, key_id: str, tpm: int | None, tokens: int) -> None:
        if tpm and tokens > 0:
            self._bucket(self._tpm, key_id, tpm, self._clock()).level -= tokens

    def levels(self, key_id: str, rpm: int | None, tpm: int | None) -> Levels:
        now = self._clock()
        return _level(self._rpm.get(key_id), rpm, now), _level(self._tpm.get(key_id), tpm, now)

    async def close(self) -> None:
        return None


def _level(bucket: _Bucket | None, per_min: int | None, now: float) -> float | None:
    """A bucket's level at `now` without refilling it (a missing bucket is full)."""
    if not per_min:
        return None
    if bucket is None:
        return float(per_min)
    return min(float(per_min), bucket.level + (now - bucket.stamp) * per_min / 60.0)


# KEYS: 1 bucket hash. ARGV: rpm (0 = none), tpm (0 = none), tokens needed, consume (0/1 request,
# or the token count to take with mode 'tokens'), mode. Time is Redis's own: replicas' clocks
# never disagree about a bucket. A check returns 'wait|requests|tokens': the wait in ms ('' when
# admitted) and the levels the buckets are left at (the rate-limit headers').
_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local function level(name, per_min)
  local lv = tonumber(redis.call('HGET', KEYS[1], name))
  local ts = tonumber(redis.call('HGET', KEYS[1], name .. '_ts'))
  if lv == nil or ts == nil then return per_min end
  return math.min(per_min, lv + (now - ts) * per_min / 60)
end
local function store(name, lv)
  redis.call('HSET', KEYS[1], name, tostring(lv), name .. '_ts', tostring(now))
end
if ARGV[5] == 'tokens' then
  if tpm > 0 then store('tpm', level('tpm', tpm) - tonumber(ARGV[3])) end
  redis.call('EXPIRE', KEYS[1], 3600)
  return ''
end
local wait = 0
local r = 0
if rpm > 0 then
  r = level('rpm', rpm)
  if r < 1 then wait = (1 - r) * 60 / rpm end
end
if tpm > 0 then
  local tl = level('tpm', tpm)
  local need = math.min(tonumber(ARGV[3]), tpm)
  if tl < need then wait = math.max(wait, (need - tl) * 60 / tpm) end
  store('tpm', tl)
end
local tl = -1
if tpm > 0 then tl = level('tpm', tpm) end
if wait > 0 then
  if rpm > 0 then store('rpm', r) end
  redis.call('EXPIRE', KEYS[1], 3600)
  return tostring(math.ceil(wait * 1000)) .. '|' .. tostring(r) .. '|' .. tostring(tl)
end
if rpm > 0 then store('rpm', r - 1) end
redis.call('EXPIRE', KEYS[1], 3600)
return '|' .. tostring(r - 1) .. '|' .. tostring(tl)
"""


class RedisRateLimiter:
    def __init__(
        self, redis: Any, *, prefix: str = "tokenrelay:", scripts: Scripts | None = None
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(_BUCKET)
        self._scripts = scripts or Scripts()
        # key id -> (requests, tokens, local time): the levels the last check here left.
        self._seen: dict[str, tuple[float, float, float]] = {}

    def _key(self, key_id: str) -> str:
        return f"{self._prefix}rl:{{{key_id}}}"

    async def check(
        self, key_id: str, rpm: int | None, tpm: int | None, tokens_estimate: int
    ) -> float | None:
        args = [rpm or 0, tpm or 0, max(tokens_estimate, 0), 1, "check"]
        raw = await self._scripts.run(self._script, [self._key(key_id)], args)
        text = raw.decode() if isinstance(raw, bytes) else str(raw or "")
        wait, _, rest = text.partition("|")
        if rest:
            requests, _, tokens = rest.partition("|")
            if len(self._seen) > _IDLE_EVICT:
                self._seen.clear()
            self._seen[key_id] = (float(requests), float(tokens), time.monotonic())
        return int(wait) / 1000.0 if wait else None

    def levels(self, key_id: str, rpm: int | None, tpm: int | None) -> Levels:
        seen = self._seen.get(key_id)
        if seen is None:
            return (float(rpm) if rpm else None), (float(tpm) if tpm else None)
        requests, tokens, stamp = seen
        elapsed = time.monotonic() - stamp
        return (
            min(float(rpm), requests + elapsed * rpm / 60.0) if rpm else None,
            min(float(tpm), tokens + elapsed * tpm / 60.0) if tpm else None,
        )

    async def consume_tokens(self, key_id: str, tpm: int | None, tokens: int) -> None:
        if tpm and tokens > 0:
            await self._scripts.run(
                self._script, [self._key(key_id)], [0, tpm, tokens, 0, "tokens"]
            )
            seen = self._seen.get(key_id)
            if seen is not None:  # what the script took, as it took it
                self._seen[key_id] = (seen[0], seen[1] - tokens, seen[2])

    async def close(self) -> None:
        return None
