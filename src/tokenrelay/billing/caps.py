"""Spend caps per key: per UTC day and per UTC calendar month, in customer nano-USD.

A request is admitted only if the key's spend in the period, plus what its requests in flight
hold, plus this request's worst case, stays within the cap. A fallback to a dearer model grows
its request's cap hold the same way (`admit` again under the same request id).

Two stores, one rule:
- `SpendCaps` (the embedded default): the period's spend is read from the usage records once
  per key and period, then followed in process. With several processes each counts only what
  it settled after its read, so a cap can be overrun by what the others settle meanwhile —
  which is why `serve --workers N` and replicas use:
- `RedisSpendCaps`: spend and in-flight holds live in Redis, checked and taken in one Lua step,
  so every worker and replica sees every other's; a hold carries a deadline and is dropped
  once past it, so a killed process cannot block a key's cap for longer than that.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from sqlalchemy import func, select

from tokenrelay.customers.keys import ApiKeyInfo
from tokenrelay.errors import GatewayError
from tokenrelay.money import usd
from tokenrelay.single_flight import SingleFlight
from tokenrelay.store.async_core import AsyncEngine
from tokenrelay.store.tables import usage_records

# A killed process's cap holds stop counting after this (streams longer than it may then take
# a key past its cap by their own cost; the balance, not the cap, is the hard guarantee).
HOLD_TTL_S = 900

log = logging.getLogger("tokenrelay.billing.caps")


def _periods() -> tuple[str, str]:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    return today, today[:7]


def _refused(what: str, cap: int, spent: int, worst: int) -> GatewayError:
    return GatewayError(
        "billing",
        f"This key's {what} spend cap (${usd(cap)}) is reached: ${usd(spent)} "
        f"spent, this request may cost up to ${usd(worst)}",
        402,
    )


async def _spent_in_db(engine: AsyncEngine, key_id: str) -> tuple[int, int]:
    """(spent today, spent this month) by the key, from its usage records."""
    now = dt.datetime.now(dt.UTC)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month_start = day_start.replace(day=1)
    u = usage_records.c
    spent = func.coalesce(func.sum(u.cost_nano), 0)
    async with engine.connect() as conn:
        month_total = await conn.scalar(
            select(spent).where(u.key_id == key_id, u.started_at >= month_start)
        )
        day_total = await conn.scalar(
            select(spent).where(u.key_id == key_id, u.started_at >= day_start)
        )
    return int(day_total or 0), int(month_total or 0)


class SpendCaps:
    """In-process caps (one process: the embedded default)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # key id -> (day, month, spent today, spent this month) as of the last settlement
        self._spent: dict[str, tuple[str, str, int, int]] = {}
        self._held: dict[str, int] = {}  # key id -> worst cases of its requests in flight
        self._holds: dict[str, tuple[str, int]] = {}  # request id -> (key id, amount)
        self._loading: SingleFlight[str, None] = SingleFlight()

    async def admit(self, key: ApiKeyInfo, request_id: str, worst: int) -> None:
        """Hold `worst` more for `request_id`, or raise GatewayError 402 when that could take
        the key past a cap."""
        day, month = _periods()
        await self._ensure(key.id, day, month)
        _, _, today, this_month = self._spent[key.id]
        after = self._held.get(key.id, 0) + worst
        for cap, spent, what in (
            (key.daily_cap_nano, today, "daily"),
            (key.monthly_cap_nano, this_month, "monthly"),
        ):
            if cap is not None and spent + after > cap:
                raise _refused(what, cap, spent, worst)
        self._held[key.id] = after
        held = self._holds.get(request_id, (key.id, 0))[1]
        self._holds[request_id] = (key.id, held + worst)

    async def settle(self, request_id: str, cost: int) -> None:
        hold = self._holds.pop(request_id, None)
        if hold is None:
            return
        key_id, amount = hold
        self._held[key_id] -= amount
        day, month = _periods()
        spent = self._spent.get(key_id)
        if spent is not None:
            d, m, today, this_month = spent
            today = today + cost if d == day else cost
            this_month = this_month + cost if m == month else cost
            self._spent[key_id] = (day, month, today, this_month)

    async def release(self, request_id: str) -> None:
        hold = self._holds.pop(request_id, None)
        if hold is not None:
            self._held[hold[0]] -= hold[1]

    async def _ensure(self, key_id: str, day: str, month: str) -> None:
        known = self._spent.get(key_id)
        if known is not None and known[0] == day and known[1] == month:
            return

        async def load() -> None:
            today, this_month = await _spent_in_db(self.engine, key_id)
            self._spent[key_id] = (day, month, today, this_month)

        await self._loading.run(key_id, load)


# KEYS: spent today, spent this month, holds (hash: request id -> "amount:deadline")
# ARGV: daily cap ("" = none), monthly cap, request id, amount, now, deadline
# -> {0} admitted | {1, spent, "daily"|"monthly"} refused | {2} a period's spend is not loaded
_ADMIT = """
local today = redis.call('GET', KEYS[1])
local month = redis.call('GET', KEYS[2])
if (ARGV[1] ~= '' and not today) or (ARGV[2] ~= '' and not month) then return {2} end
local now, held, mine = tonumber(ARGV[5]), 0, 0
local all = redis.call('HGETALL', KEYS[3])
for i = 1, #all, 2 do
  local amount, deadline = string.match(all[i + 1], '(%d+):(%d+)')
  if tonumber(deadline) < now then
    redis.call('HDEL', KEYS[3], all[i])
  else
    held = held + tonumber(amount)
    if all[i] == ARGV[3] then mine = tonumber(amount) end
  end
end
local after = held + tonumber(ARGV[4])
if ARGV[1] ~= '' and tonumber(today) + after > tonumber(ARGV[1]) then
  return {1, today, 'daily'}
end
if ARGV[2] ~= '' and tonumber(month) + after > tonumber(ARGV[2]) then
  return {1, month, 'monthly'}
end
redis.call('HSET', KEYS[3], ARGV[3], (mine + tonumber(ARGV[4])) .. ':' .. ARGV[6])
redis.call('EXPIRE', KEYS[3], ARGV[7])
return {0}
"""

# KEYS: spent today, spent this month, holds; ARGV: request id, cost (-1: release only)
_SETTLE = """
if redis.call('HDEL', KEYS[3], ARGV[1]) == 0 then return 0 end
local cost = tonumber(ARGV[2])
if cost > 0 then
  if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCRBY', KEYS[1], cost) end
  if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('INCRBY', KEYS[2], cost) end
end
return 1
"""


class RedisSpendCaps:
    """Caps shared by every worker and replica (Redis). A period's spend is loaded from the
    usage records when Redis lacks it (first use, a new period, Redis restarted) and followed
    by each settlement after that."""

    def __init__(self, engine: AsyncEngine, redis: Any, *, prefix: str = "") -> None:
        self.engine = engine
        self._prefix = prefix
        self._admit = redis.register_script(_ADMIT)
        self._settle = redis.register_script(_SETTLE)
        self._redis = redis
        self._holders: dict[str, str] = {}  # request id -> key id (this process's holds)

    def _keys(self, key_id: str) -> list[str]:
        day, month = _periods()
        tag = "{" + key_id + "}"  # one cluster slot per key
        p = self._prefix
        return [f"{p}cap:{tag}:d:{day}", f"{p}cap:{tag}:m:{month}", f"{p}cap:{tag}:holds"]

    async def admit(self, key: ApiKeyInfo, request_id: str, worst: int) -> None:
        daily = "" if key.daily_cap_nano is None else str(key.daily_cap_nano)
        monthly = "" if key.monthly_cap_nano is None else str(key.monthly_cap_nano)
        now = int(time.time())
        args = [daily, monthly, request_id, worst, now, now + HOLD_TTL_S, HOLD_TTL_S]
        keys = self._keys(key.id)
        result = await self._admit(keys=keys, args=args)
        if int(result[0]) == 2:
            await self._load(key.id, keys)
            result = await self._admit(keys=keys, args=args)
        if int(result[0]) == 1:
            what = result[2].decode() if isinstance(result[2], bytes) else str(result[2])
            cap = key.daily_cap_nano if what == "daily" else key.monthly_cap_nano
            assert cap is not None
            raise _refused(what, cap, int(result[1]), worst)
        self._holders[request_id] = key.id

    async def _load(self, key_id: str, keys: list[str]) -> None:
        today, this_month = await _spent_in_db(self.engine, key_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(keys[0], today, nx=True, ex=2 * 86400)
            pipe.set(keys[1], this_month, nx=True, ex=32 * 86400)
            await pipe.execute()

    async def settle(self, request_id: str, cost: int) -> None:
        """Runs after the ledger committed: an unreachable Redis must not fail the request
        (the hold lapses at its deadline; the spend is reloaded with the next period)."""
        key_id = self._holders.pop(request_id, None)
        if key_id is None:
            return
        try:
            await self._settle(keys=self._keys(key_id), args=[request_id, cost])
        except Exception as exc:
            log.warning("spend cap of request %s not updated: %s", request_id, type(exc).__name__)

    async def release(self, request_id: str) -> None:
        await self.settle(request_id, -1)
