"""Balance holds: reserve a request's worst case before the upstream call, settle it after.

available = balance − held. A reserve succeeds only if the whole hold fits, atomically, so
concurrent requests on one key can overshoot the final balance by at most what was held (the
difference between worst case and actual cost is released). Balances are loaded from the
database once per key and then kept here (one process) or in Redis (every replica).

Both backends let a hold be settled or released exactly once, and debit a request's cost at
most once (a settled marker per request id), whatever the caller retries.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from tokenrelay.single_flight import SingleFlight
from tokenrelay.store.redis_pool import Scripts

BalanceLoader = Callable[[str], Awaitable[int]]
# (balance, id of the newest ledger entry it includes), read in one statement.
MarkedLoader = Callable[[str], Awaitable[tuple[int, int]]]
# A Redis hold is a lease: the process that made it renews it every HOLD_RENEW_S while its
# request runs (BillingEngine), so the hold of a replica that was killed, or of a request that
# got "nothing was charged" while Redis was unreachable, is reclaimed within HOLD_LEASE_S.
DEFAULT_HOLD_TTL_S = 8
HOLD_RENEW_S = 2.0
_REPLAY_BATCH = 5_000  # ledger entries per pipeline
# Request ids settled lately, so a repeated settle cannot debit twice. The engine already settles
# each request once; this is the second line of defence, and it only needs to outlast a retry,
# not a day's traffic (200k ids took 33 MB of RSS, reached a few minutes into a soak).
_SETTLED_MEMORY = 10_000


class Holds(Protocol):
    async def reserve(self, key_id: str, request_id: str, amount_nano: int) -> bool: ...
    async def settle(self, key_id: str, request_id: str, cost_nano: int) -> bool: ...
    async def settled(self, key_id: str, request_id: str) -> bool: ...
    async def release(self, key_id: str, request_id: str) -> bool: ...
    async def settle_many(self, steps: list[tuple[str, str, int | None]]) -> None: ...
    async def credit(self, key_id: str, amount_nano: int, entry_id: int | None = None) -> None: ...
    async def available(self, key_id: str) -> int: ...
    async def close(self) -> None: ...


class MemoryHolds:
    """One process's holds. No await between check and update: atomic on one event loop."""

    def __init__(self, loader: BalanceLoader) -> None:
        self._loader = loader
        self._balance: dict[str, int] = {}
        self._held: dict[str, int] = {}
        self._holds: dict[str, tuple[str, int]] = {}  # request id -> (key id, amount)
        self._settled: OrderedDict[str, None] = OrderedDict()
        self._loading: SingleFlight[str, None] = SingleFlight()
        # For refresh(): changes in flight between a DB commit and the matching cache update,
        # and a counter of cache changes, so a DB read racing with one is thrown away.
        self._pending: dict[str, int] = {}
        self._generation: dict[str, int] = {}

    async def _ensure(self, key_id: str) -> None:
        if key_id in self._balance:
            return

        async def load() -> None:
            value = await self._loader(key_id)
            if key_id not in self._balance:
                self._balance[key_id] = value
                self._held.setdefault(key_id, 0)

        await self._loading.run(key_id, load)  # one DB read per key, however many callers

    async def reserve(self, key_id: str, request_id: str, amount_nano: int) -> bool:
        await self._ensure(key_id)
        return self.reserve_now(key_id, request_id, amount_nano)

    # The `_now` methods are the same steps without a coroutine, for BillingEngine's
    # in-process lane (with the journal's and the rate limiter's: bench.billing_path 20-22 ->
    # 17.3-18.6 µs a request on the loop).

    def has(self, key_id: str) -> bool:
        """Whether the key's balance is loaded (the `_now` methods need it)."""
        return key_id in self._balance

    def reserve_now(self, key_id: str, request_id: str, amount_nano: int) -> bool:
        """`reserve` of a loaded key (`has`)."""
        if request_id in self._holds or request_id in self._settled:
            return request_id in self._holds  # a retried reserve is not a second hold
        if self._balance[key_id] - self._held[key_id] < amount_nano:
            return False
        self._held[key_id] += amount_nano
        self._holds[request_id] = (key_id, amount_nano)
        return True

    async def settled(self, key_id: str, request_id: str) -> bool:
        """Whether the request was settled lately (a reserve for it is refused)."""
        return request_id in self._settled

    async def settle(self, key_id: str, request_id: str, cost_nano: int) -> bool:
        return self.settle_now(key_id, request_id, cost_nano)

    def settle_now(self, key_id: str, request_id: str, cost_nano: int) -> bool:
        """Release the hold (if any) and debit `cost_nano`; False if already settled."""
        if request_id in self._settled:
            return False
        self._drop_hold(request_id)
        self._settled[request_id] = None
        if len(self._settled) > _SETTLED_MEMORY:
            self._settled.popitem(last=False)
        # Settled after the DB commit: a balance not loaded yet will be read with the debit in.
        if key_id in self._balance:
            self._balance[key_id] -= cost_nano
            self._bump(key_id)
        return True

    async def settle_many(self, steps: list[tuple[str, str, int | None]]) -> None:
        """`settle` (or `release`, cost None) each (account, request id, cost)."""
        for key_id, request_id, cost in steps:
            if cost is None:
                await self.release(key_id, request_id)
            else:
                await self.settle(key_id, request_id, cost)

    async def release(self, key_id: str, request_id: str) -> bool:
        return self.release_now(request_id)

    def release_now(self, request_id: str) -> bool:
        return self._drop_hold(request_id)

    async def credit(self, key_id: str, amount_nano: int, entry_id: int | None = None) -> None:
        if key_id in self._balance:  # not loaded yet: the first load reads the new balance
            self._balance[key_id] += amount_nano
            self._bump(key_id)

    async def available(self, key_id: str) -> int:
        await self._ensure(key_id)
        return self.available_now(key_id)

    def available_now(self, key_id: str) -> int:
        """`available` of a loaded key (`has`)."""
        return self._balance[key_id] - self._held[key_id]

    async def close(self) -> None:
        return None

    def held(self, key_id: str) -> int:
        return self._held.get(key_id, 0)

    # -------------------------------------------------- reconciliation with the database

    def changing(self, key_id: str) -> _Changing:
        """Wrap a DB write whose cache update follows (settle, credit): refresh() waits."""
        return _Changing(self, key_id)

    def _enter_change(self, key_id: str) -> None:
        self._pending[key_id] = self._pending.get(key_id, 0) + 1

    def _exit_change(self, key_id: str) -> None:
        self._pending[key_id] -= 1
        if not self._pending[key_id]:
            del self._pending[key_id]
        self._bump(key_id)

    def loaded(self) -> list[str]:
        return list(self._balance)

    def snapshot(self) -> dict[str, int]:
        """Generation per loaded key that has no write in flight: refresh candidates."""
        return {k: self._generation.get(k, 0) for k in self._balance if k not in self._pending}

    def refresh(self, key_id: str, db_balance: int, generation: int) -> bool:
        """Adopt the DB balance (credits written by the CLI or a lost update) if nothing
        touched the key since `snapshot()`."""
        if key_id in self._pending or self._generation.get(key_id, 0) != generation:
            return False
        if self._balance.get(key_id) != db_balance:
            self._balance[key_id] = db_balance
            self._bump(key_id)
        return True

    def _drop_hold(self, request_id: str) -> bool:
        hold = self._holds.pop(request_id, None)
        if hold is None:
            return False
        self._held[hold[0]] -= hold[1]
        return True

    def _bump(self, key_id: str) -> None:
        self._generation[key_id] = self._generation.get(key_id, 0) + 1


class _Changing:
    """MemoryHolds.changing's context (a class: a @contextmanager generator cost ~1 µs of
    the settlement every request makes)."""

    __slots__ = ("_holds", "_key_id")

    def __init__(self, holds: MemoryHolds, key_id: str) -> None:
        self._holds, self._key_id = holds, key_id

    def __enter__(self) -> None:
        self._holds._enter_change(self._key_id)

    def __exit__(self, *exc: object) -> None:
        self._holds._exit_change(self._key_id)


# Keys share the `{key_id}` hash tag: one cluster slot per key, so each script is atomic.
# KEYS: 1 bal hash {balance, held}, 2 holds hash (request id -> amount), 3 hold expiry zset.
# Amounts stay decimal integer strings end to end (ARGV, hash fields, HINCRBY arguments): a
# Lua number is a double, which drops digits above 2^53 nano-USD (~$9M) and is sent to Redis
# as "1e+17" from $100M on, which HINCRBY refuses (a credit then failed after its commit).
# `decr` negates the string: `-tonumber("0")` is Lua's -0, which Redis refuses as an integer.
_PURGE = """
local function decr(key, field, amount)
  if amount == '0' then return end
  if string.sub(amount, 1, 1) == '-' then
    redis.call('HINCRBY', key, field, string.sub(amount, 2))
  else
    redis.call('HINCRBY', key, field, '-' .. amount)
  end
end
-- a < b for canonical integer strings (no '+', no leading zeros), exact at any size.
local function lt(a, b)
  local na, nb = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if na ~= nb then return na end
  if na then a, b = string.sub(b, 2), string.sub(a, 2) end
  if #a ~= #b then return #a < #b end
  return a < b
end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now_ms)
for _, rid in ipairs(expired) do
  local amt = redis.call('HGET', KEYS[2], rid)
  if amt then
    decr(KEYS[1], 'held', amt)
    redis.call('HDEL', KEYS[2], rid)
  end
  redis.call('ZREM', KEYS[3], rid)
end
"""

# ARGV: request id, amount, ttl ms. Returns 1 held, 0 insufficient, -1 balance not loaded.
# The hold is added first and taken back if the balance does not cover it: comparing the
# exact integers Redis keeps, not doubles.
_RESERVE = (
    _PURGE
    + """
if redis.call('HEXISTS', KEYS[1], 'balance') == 0 then return -1 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 1 end
if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
local amt = ARGV[2]
local bal = redis.call('HGET', KEYS[1], 'balance')
if lt(bal, amt) then return 0 end
if amt ~= '0' then
  local added = redis.pcall('HINCRBY', KEYS[1], 'held', amt)
  if type(added) == 'table' and added.err then return 0 end
end
if lt(bal, redis.call('HGET', KEYS[1], 'held') or '0') then
  decr(KEYS[1], 'held', amt)
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], amt)
redis.call('ZADD', KEYS[3], now_ms + tonumber(ARGV[3]), ARGV[1])
return 1
"""
)

# Replays (BillingEngine.reconcile) of ledger entries, ARGV[4] the entry id: a balance loaded
# from the database at or after the entry (its `mark`) includes it already.
_UNLESS_LOADED_WITH = """
if redis.call('HEXISTS', KEYS[1], 'balance') == 0 then return 0 end
local mark = redis.call('HGET', KEYS[1], 'mark')
if mark and tonumber(ARGV[4]) <= tonumber(mark) then return 0 end
"""

# KEYS 4: settled marker. ARGV: request id, cost (or '' to release only), marker ttl s.
# Returns 1 if this call settled (or released) the request, 0 if it was done before.
_SETTLE_STEP = """
local amt = redis.call('HGET', KEYS[2], ARGV[1])
if amt then
  decr(KEYS[1], 'held', amt)
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
if ARGV[2] == '' then
  if amt then return 1 end
  return 0
end
if redis.call('SET', KEYS[4], '1', 'NX', 'EX', tonumber(ARGV[3])) == false then return 0 end
if redis.call('HEXISTS', KEYS[1], 'balance') == 1 then
  decr(KEYS[1], 'balance', ARGV[2])
end
return 1
"""
_SETTLE = _PURGE + _SETTLE_STEP
_REPLAY_DEBIT = _PURGE + _UNLESS_LOADED_WITH + _SETTLE_STEP

# KEYS 2: the credit's applied marker (its ledger entry): a replayed credit is not added twice.
_CREDIT_STEP = """
if ARGV[3] == '1' and redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[2])) == false then
  return 0
end
if ARGV[1] ~= '0' and redis.call('HEXISTS', KEYS[1], 'balance') == 1 then
  redis.call('HINCRBY', KEYS[1], 'balance', ARGV[1])
end
return 1
"""
_CREDIT = _CREDIT_STEP
_REPLAY_CREDIT = _UNLESS_LOADED_WITH + _CREDIT_STEP

# ARGV: balance, ledger mark. The first replica to load wins; later loads never overwrite.
_LOAD = """
if redis.call('HSETNX', KEYS[1], 'balance', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'mark', ARGV[2])
end
"""

# KEYS: the hold expiry zset. ARGV: lease ms, then the request ids whose leases are renewed
# (XX: a hold already settled, released or reclaimed is not brought back).
_RENEW = """
local now = redis.call('TIME')
local until_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', until_ms, ARGV[i])
end
"""

# {balance, held} as strings, subtracted in Python: a Lua subtraction would be a double.
_AVAILABLE = (
    _PURGE
    + """
if redis.call('HEXISTS', KEYS[1], 'balance') == 0 then return false end
return {redis.call('HGET', KEYS[1], 'balance'), redis.call('HGET', KEYS[1], 'held') or '0'}
"""
)


_PIPELINE_STEPS = 1000  # settlement steps sent in one round trip


class RedisHolds:
    """Holds shared by every replica. A hold's amount lives in a per-key hash with its expiry
    in a sorted set; every script first purges expired holds (server time), so a crashed
    replica's holds stop counting after `hold_ttl_s` — a plain TTL'd key could not give the
    amount back to the key's `held` total when it expires."""

    def __init__(
        self,
        redis: Any,
        loader: BalanceLoader | MarkedLoader,
        *,
        prefix: str = "tokenrelay:",
        hold_ttl_s: int = DEFAULT_HOLD_TTL_S,
        settled_ttl_s: int = 7 * 24 * 3600,
        scripts: Scripts | None = None,
    ) -> None:
        self._redis = redis
        # The request path's scripts (hold, settle) go through it.
        self._scripts = scripts or Scripts()
        self._loader = loader
        self._prefix = prefix
        self._hold_ttl_ms = hold_ttl_s * 1000
        self._settled_ttl_s = settled_ttl_s
        self._load = redis.register_script(_LOAD)
        self._renew = redis.register_script(_RENEW)
        self._replay_debit = redis.register_script(_REPLAY_DEBIT)
        self._replay_credit = redis.register_script(_REPLAY_CREDIT)
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)
        self._credit = redis.register_script(_CREDIT)
        self._available = redis.register_script(_AVAILABLE)

    def _keys(self, key_id: str) -> list[str]:
        p, tag = self._prefix, "{" + key_id + "}"
        return [f"{p}bal:{tag}", f"{p}holds:{tag}", f"{p}holdexp:{tag}"]

    def _marker(self, key_id: str, request_id: str) -> str:
        return f"{self._prefix}settled:{{{key_id}}}:{request_id}"

    async def _init_balance(self, key_id: str) -> None:
        # The first replica to load wins; later loads never overwrite live state. The mark
        # (newest ledger entry the balance includes) tells `replay` which entries it has.
        loaded = await self._loader(key_id)
        balance, mark = loaded if isinstance(loaded, tuple) else (loaded, 0)
        await self._load(keys=self._keys(key_id)[:1], args=[str(int(balance)), str(int(mark))])

    async def reserve(self, key_id: str, request_id: str, amount_nano: int) -> bool:
        keys = [*self._keys(key_id), self._marker(key_id, request_id)]
        args = [request_id, str(int(amount_nano)), self._hold_ttl_ms]
        result = int(await self._scripts.run(self._reserve, keys, args))
        if result == -1:
            await self._init_balance(key_id)
            result = int(await self._scripts.run(self._reserve, keys, args))
        return result == 1

    async def settled(self, key_id: str, request_id: str) -> bool:
        return bool(await self._redis.exists(self._marker(key_id, request_id)))

    def _settle_step(
        self, key_id: str, request_id: str, cost: int | None
    ) -> tuple[list[str], list[Any]]:
        """The settle script's keys and arguments: debit `cost`, or (None) release only."""
        keys = [*self._keys(key_id), self._marker(key_id, request_id)]
        if cost is None:
            return keys, [request_id, "", 0]
        return keys, [request_id, str(int(cost)), self._settled_ttl_s]

    async def settle(self, key_id: str, request_id: str, cost_nano: int) -> bool:
        keys, args = self._settle_step(key_id, request_id, cost_nano)
        return int(await self._scripts.run(self._settle, keys, args)) == 1

    async def settle_many(self, steps: list[tuple[str, str, int | None]]) -> None:
        """`settle` (or `release`, cost None) each (account, request id, cost): the same
        script per step (idempotent by request id), a pipeline of them per round trip."""
        for start in range(0, len(steps), _PIPELINE_STEPS):
            async with self._redis.pipeline(transaction=False) as pipe:
                for key_id, request_id, cost in steps[start : start + _PIPELINE_STEPS]:
                    keys, args = self._settle_step(key_id, request_id, cost)
                    await self._settle(keys=keys, args=args, client=pipe)
                await pipe.execute()

    async def release(self, key_id: str, request_id: str) -> bool:
        keys, args = self._settle_step(key_id, request_id, None)
        return int(await self._scripts.run(self._settle, keys, args)) == 1

    async def credit(self, key_id: str, amount_nano: int, entry_id: int | None = None) -> None:
        """Only a loaded balance is adjusted (an unloaded one is read fresh from the DB later),
        once per ledger entry: a credit replayed after an outage is not added twice."""
        marker = f"{self._prefix}credited:{{{key_id}}}:{entry_id}"
        keys = [self._keys(key_id)[0], marker]
        once = "1" if entry_id is not None else "0"
        await self._credit(keys=keys, args=[str(int(amount_nano)), self._settled_ttl_s, once])

    async def renew(self, holds: dict[str, list[str]]) -> None:
        """Extend the leases of the holds of requests still running (account -> hold ids)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for key_id, request_ids in holds.items():
                keys = self._keys(key_id)[2:3]
                await self._renew(keys=keys, args=[self._hold_ttl_ms, *request_ids], client=pipe)
            await pipe.execute()

    async def replay(self, entries: list[tuple[int, str, str, int, str | None]]) -> int:
        """Apply the ledger entries (id, account, kind, amount, request id) whose Redis step
        never ran (a process killed between its commit and that step): each once, by the same
        markers the live steps set, and only to a balance loaded before the entry. Returns how
        many were applied."""
        if len(entries) > _REPLAY_BATCH:
            head = await self.replay(entries[:_REPLAY_BATCH])
            return head + await self.replay(entries[_REPLAY_BATCH:])
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry_id, account, kind, amount, request_id in entries:
                if kind == "debit" and request_id is not None:
                    keys = [*self._keys(account), self._marker(account, request_id)]
                    args = [request_id, str(-amount), self._settled_ttl_s, entry_id]
                    await self._replay_debit(keys=keys, args=args, client=pipe)
                else:
                    marker = f"{self._prefix}credited:{{{account}}}:{entry_id}"
                    args = [str(amount), self._settled_ttl_s, "1", entry_id]
                    keys = [self._keys(account)[0], marker]
                    await self._replay_credit(keys=keys, args=args, client=pipe)
            results = await pipe.execute()
        return sum(int(r or 0) for r in results)

    async def balances(self) -> dict[str, int]:
        """Account -> the balance Redis holds for it (every loaded account)."""
        pattern = f"{self._prefix}bal:{{*}}"
        out: dict[str, int] = {}
        async for raw in self._redis.scan_iter(match=pattern, count=1000):
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            value = await self._redis.hget(name, "balance")
            if value is not None:
                out[name[len(self._prefix) + 5 : -1]] = int(value)
        return out

    async def held_total(self) -> int:
        """Everything held now over every account (expired leases reclaimed first)."""
        total = 0
        for account in await self.balances():
            value = await self._available(keys=self._keys(account))
            if value is not None:
                total += int(value[1])
        return total

    async def available(self, key_id: str) -> int:
        value = await self._available(keys=self._keys(key_id))
        if value is None:
            await self._init_balance(key_id)
            value = await self._available(keys=self._keys(key_id))
        balance, held = value
        return int(balance) - int(held)

    async def close(self) -> None:
        return None
