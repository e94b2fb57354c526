"""BillingEngine: the one object the relay and the admin surfaces talk to about money.

Request path: `admit` (rate limit, worst-case hold; no database round trip once a key's balance
is cached) → upstream call → `settle` (cost at the admission's price version, group-committed
by the writer, then the hold is settled) or `release` (the vendor was never reached).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tokenrelay import ir
from tokenrelay.billing import ledger, policy
from tokenrelay.billing.caps import RedisSpendCaps, SpendCaps
from tokenrelay.billing.holds import HOLD_RENEW_S, Holds, MemoryHolds, RedisHolds
from tokenrelay.billing.journal import JournalWriter, try_lock_journal
from tokenrelay.billing.policy import billable
from tokenrelay.billing.pricebook import PriceBook
from tokenrelay.billing.pricing import customer_nano, priced_nano, usd, worst_case_nano
from tokenrelay.billing.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from tokenrelay.billing.writer import SettlementWriter, UsageRecord
from tokenrelay.catalog import Catalog, Price
from tokenrelay.customers.keys import ApiKeyInfo
from tokenrelay.errors import GatewayError
from tokenrelay.settings import Settings
from tokenrelay.store.async_core import AsyncEngine
from tokenrelay.store.redis_pool import Scripts, redis_client

if TYPE_CHECKING:
    from tokenrelay.store.redis_pipelined import PipelinedRedis

log = logging.getLogger("tokenrelay.billing")

__all__ = ["Admission", "BillingConfigError", "BillingEngine", "UsageRecord"]

_PRICE_POLL_S = 10.0
_REFRESH_S = 2.0
_RECONCILE_S = 5.0
_RECONCILE_LATE_ROUNDS = 6  # entries committed up to ~30 s after their id was handed out
_RECONCILE_START_ENTRIES = 20_000  # at start: this many newest ledger entries are checked
_VERIFY_ENTRIES = 1_000_000  # `ledger verify`: this many


# Token counts a key may ask for a minute when it has no rpm limit of its own.
COUNT_RPM = 120


def worst_case_hold(prompt_bound: int, max_output: int, price: Price, multiplier_ppm: int) -> int:
    """What a request's admission holds: the most it can cost the customer (its prompt bound
    and every output token it allows, at the account's price multiplier). The cost quote
    states the same figure."""
    return customer_nano(worst_case_nano(prompt_bound, max(max_output, 0), price), multiplier_ppm)


class BillingConfigError(RuntimeError):
    """A configuration that would break a billing guarantee; the message says what to change."""


@dataclass(slots=True)
class Admission:
    """What `admit` decided for one request; hand it back to `settle` or `release`. Holds and
    debits go to the key's account (`account_id`); rate limits stay per key."""

    key_id: str
    request_id: str
    model_id: str
    tpm: int | None
    price: Price
    price_version_id: str
    hold_nano: int  # 0 when billing is off
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    cost_nano: int | None = None  # set once settled
    released: bool = False
    extra_hold_id: str | None = None  # a fallback's dearer worst case, held beside the first
    extra_hold_nano: int = 0
    account_id: str = ""
    multiplier_ppm: int = 1_000_000  # the account's price group over list prices
    upstream_ppm: int = 1_000_000  # what the vendor bills over list prices (its batch API's)
    capped: bool = False  # the key has a spend cap: its SpendCaps hold goes with the request


@dataclass(slots=True)
class _Lane:
    """The embedded store's request-path parts, none of which waits on I/O: BillingEngine
    calls them as plain methods (their `_now` forms), not through a chain of coroutines."""

    holds: MemoryHolds
    limiter: MemoryRateLimiter
    writer: JournalWriter


class BillingEngine:
    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        catalog: Catalog,
        *,
        redis: Any | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.enabled = settings.billing == "on"
        self.policy = settings.billing_policy
        self.prices = PriceBook(catalog, engine, self._publish_prices)
        self.caps: SpendCaps | RedisSpendCaps = SpendCaps(engine)
        self._redis = redis
        self._own_redis = False
        self._fast_redis: PipelinedRedis | None = None
        self._prefix = settings.redis_prefix
        self.writer: SettlementWriter | JournalWriter = SettlementWriter(
            engine, settings.writer_batch_ms
        )
        self.holds: Holds
        self.limiter: RateLimiter
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._lane: _Lane | None = None
        # In-memory balances follow credits that other processes (the CLI) write: the ledger
        # is read on from `_credit_mark`; `_marks` holds, per loaded key, the newest entry its
        # balance already includes; `_own` the entries this process wrote (already applied).
        self._follow_credits = False
        self._credit_mark = 0
        self._marks: dict[str, int] = {}
        self._own: set[int] = set()
        self._crediting = 0  # own credits between their commit and `_own`
        self._loading: set[str] = set()  # keys whose balance is being read
        # Balance-cache steps of committed settlements that Redis refused: request id ->
        # (key id, cost or None for a release, the Redis run id they were meant for).
        self._deferred: dict[str, tuple[str, int | None, str | None]] = {}
        self._redis_run_id: str | None = None
        # Committed credits Redis refused: ledger entry id -> (key id, amount, Redis run id).
        self._deferred_credits: dict[int, tuple[str, int, str | None]] = {}
        self._refused_logged_at = -1e9
        # Redis holds of this process's requests in flight (hold id -> account): their leases
        # are renewed while they run (holds.HOLD_RENEW_S).
        self._leased: dict[str, str] = {}
        # Newest ledger id at each of the last reconciliations: the next one reads on from the
        # oldest, so an entry committed late (PostgreSQL hands out ids before commit) is seen.
        self._reconciled_ids: deque[int] = deque(maxlen=_RECONCILE_LATE_ROUNDS)
        # Every ledger id up to `_seen_upto` was replayed, but for `_gaps`: ids not there yet
        # when read (handed out, not committed), looked for again while in the window.
        self._seen_upto = 0
        self._gaps: set[int] = set()

    async def start(self, *, serving: bool = True) -> None:
        """Load prices and connect. `serving=False` (CLI) skips the background tasks and the
        multi-worker check; admin operations still reach Redis when it is configured."""
        s = self.settings
        if serving and self.enabled and s.workers > 1 and not s.redis_url and not self._redis:
            raise BillingConfigError(
                f"WEB_CONCURRENCY={s.workers} with in-memory balance holds would let each "
                "worker spend the same balance: set TOKENRELAY_REDIS_URL (and a PostgreSQL "
                "TOKENRELAY_DATABASE_URL), run one worker, or set TOKENRELAY_BILLING=off"
            )
        if self._redis is None and s.redis_url:
            # A hung Redis fails requests in seconds (503, nothing charged).
            self._redis = redis_client(s.redis_url, connections=256, wait_s=10, io_timeout_s=5)
            self._own_redis = True
        loader = self._load_balance
        if self._redis is not None:
            # Imported here: the embedded default never loads redis.
            from tokenrelay.store.redis_pipelined import PipelinedRedis

            fast = PipelinedRedis.from_url(s.redis_url, io_timeout_s=5) if s.redis_url else None
            self._fast_redis = fast
            scripts = Scripts(fast)
            self.holds = RedisHolds(
                self._redis, self._load_balance_marked, prefix=self._prefix, scripts=scripts
            )
            self.limiter = RedisRateLimiter(self._redis, prefix=self._prefix, scripts=scripts)
            self.caps = RedisSpendCaps(self.engine, self._redis, prefix=self._prefix)
        else:
            self.holds = MemoryHolds(loader)
            self.limiter = MemoryRateLimiter()
        await self.prices.load()
        db_path = _sqlite_file(self.engine)
        # The journal belongs to the one serving process that holds its lock; the CLI and a
        # second worker on the same file commit directly instead.
        if serving and db_path and try_lock_journal(db_path):
            self.writer = JournalWriter(db_path)
        self.writer.start()
        # Journal + in-process holds and limits: admission and settlement never wait on I/O,
        # so they run as plain calls (no shielding task either: a task per request costs a
        # loop round trip, and a call that never suspends cannot be cancelled half-way).
        if (
            isinstance(self.writer, JournalWriter)
            and isinstance(self.holds, MemoryHolds)
            and isinstance(self.limiter, MemoryRateLimiter)
        ):
            self._lane = _Lane(self.holds, self.limiter, self.writer)
        if serving:
            self._spawn(self._poll_prices())
            if self._redis is not None:
                self._spawn(self._listen_prices())
                self._spawn(self._replay_deferred())
                self._spawn(self._renew_leases())
                self._spawn(self._reconcile_redis())
            elif self.enabled:
                # SQLite commits one writer at a time, so ledger ids appear in commit order and
                # reading on from the newest one seen misses nothing. (PostgreSQL hands out ids
                # before commit; in-memory balances there still adopt quiet keys' balances.)
                if self.engine.url.get_backend_name() == "sqlite":
                    self._follow_credits = True
                    self._credit_mark = await ledger.newest_entry_id(self.engine)
                self._spawn(self._refresh_balances())
        self._started = True

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.writer.close()  # flushes every queued settlement
        if self._fast_redis is not None:
            await self._fast_redis.aclose()
        if self._own_redis and self._redis is not None:
            await self._redis.aclose()
        self._started = False

    # ---------------------------------------------------------------- request path

    def price_for(self, model_id: str, at: dt.datetime | None = None) -> tuple[Price, str]:
        return self.prices.price_for(model_id, at)

    def multiplier(self, key: ApiKeyInfo, model_id: str) -> int:
        """What the key pays over list price for `model_id` (ppm): its price group's, or the
        operator's override for this model in that group. Held and billed alike."""
        return self.prices.multiplier(key.price_group, model_id, key.multiplier_ppm)

    async def admit(
        self,
        key: ApiKeyInfo,
        request_id: str,
        model_id: str,
        prompt_bound: int,
        max_output_tokens: int,
    ) -> Admission:
        """Rate-limit and hold the worst case: `prompt_bound` is an upper bound of the prompt
        tokens the vendor can bill (prompt_bound.py), `max_output_tokens` of its output. Raises
        GatewayError 429 (retry_after set) or 402 before anything reaches a vendor, 503 when
        the balance cache (Redis) cannot be reached: fail closed, in the client's format."""
        now = dt.datetime.now(dt.UTC)
        if not key.allows(model_id):
            raise GatewayError("permission", f"This API key may not use the model {model_id}", 403)
        if model_id in self.prices.hidden:  # the operator took it off sale (console)
            raise GatewayError("not_found", f"The model {model_id} does not exist", 404)
        price, version = self.prices.price_for(model_id, now)
        account = key.account_id or key.id
        ppm = self.multiplier(key, model_id)
        admission = Admission(
            key_id=key.id,
            request_id=request_id,
            model_id=model_id,
            tpm=key.tpm,
            price=price,
            price_version_id=version,
            hold_nano=0,
            started_at=now,
            account_id=account,
            multiplier_ppm=ppm,
        )
        if not self.enabled:
            return admission
        try:
            worst = self._hold_now(key, request_id, prompt_bound, max_output_tokens, price, ppm)
            if worst is None:
                worst = await self._hold(
                    key, request_id, prompt_bound, max_output_tokens, price, ppm
                )
        except GatewayError:
            raise
        except Exception as exc:
            # "Nothing was charged": a reserve that reaches Redis after all must not stay held.
            self._leased.pop(request_id, None)
            self._deferred[request_id] = (key.account_id or key.id, None, self._redis_run_id)
            now_s = time.monotonic()
            if now_s - self._refused_logged_at > 5.0:  # one line per outage, not per request
                self._refused_logged_at = now_s
                log.warning("admissions answer 503: balance cache unreachable (%s)", _reason(exc))
            raise GatewayError(
                "api_error",
                "Billing is briefly unavailable; nothing was charged. Retry in a moment.",
                503,
                retry_after=1.0,
            ) from None
        capped = key.daily_cap_nano is not None or key.monthly_cap_nano is not None
        if capped:
            try:
                await self.caps.admit(key, request_id, worst)
            except GatewayError:
                await self._update_holds(account, request_id, None)
                raise
        admission.hold_nano, admission.capped = worst, capped
        return admission

    async def admit_count(self, key: ApiKeyInfo, model_id: str) -> bool:
        """Admission for a token count (count_tokens, :countTokens): the key's allow-list
        (403) and a request-rate bucket of its own (429: counts are free, so they never eat
        the key's request budget, but they are throttled like one — at the key's rpm, or
        COUNT_RPM when it has none). Returns whether the account can pay: a key that cannot
        never makes the operator's vendor account count for it (the caller estimates)."""
        if not key.allows(model_id):
            raise GatewayError("permission", f"This API key may not use the model {model_id}", 403)
        rpm = key.rpm or COUNT_RPM
        wait = await self.limiter.check(f"{key.id}:count", rpm, None, 0)
        if wait is not None:
            raise _rate_limited(f"Token-count rate limit reached for this key ({rpm}/min)", wait)
        if not self.enabled:
            return True
        return await self.holds.available(key.account_id or key.id) > 0

    def _hold_now(
        self,
        key: ApiKeyInfo,
        request_id: str,
        prompt_bound: int,
        max_output: int,
        price: Price,
        ppm: int,
    ) -> int | None:
        """`_hold` on the in-process store (`_lane`) when it admits at once: the same steps as
        plain calls. None, having taken nothing, when it would not (no lane, the balance not
        loaded yet, a rate limit refusing): `_hold` then decides and words the refusal."""
        lane = self._lane
        account = key.account_id or key.id
        if lane is None or not lane.holds.has(account):
            return None
        if (key.rpm or key.tpm) and lane.limiter.check_now(
            key.id, key.rpm, key.tpm, prompt_bound // 4
        ) is not None:  # a refused check takes nothing from the buckets
            return None
        worst = worst_case_hold(prompt_bound, max_output, price, ppm)
        if not lane.holds.reserve_now(account, request_id, worst):
            raise _insufficient(lane.holds.available_now(account), worst, "")
        return worst

    async def _hold(
        self,
        key: ApiKeyInfo,
        request_id: str,
        prompt_bound: int,
        max_output: int,
        price: Price,
        ppm: int,
    ) -> int:
        if key.rpm or key.tpm:
            # The bucket takes the real count at settlement; up front, a typical ~4 bytes a
            # token (the bound counts one a byte) keeps big prompts from false 429s.
            wait = await self.limiter.check(key.id, key.rpm, key.tpm, prompt_bound // 4)
            if wait is not None:
                # Which limit refused (OpenAI clients are told): with both set, ask the token
                # bucket alone — a check without rpm takes nothing from it.
                tokens = bool(key.tpm) and (
                    not key.rpm
                    or await self.limiter.check(key.id, None, key.tpm, prompt_bound // 4)
                    is not None
                )
                raise _rate_limited(
                    f"Rate limit reached for this key ({_limits(key)})",
                    wait,
                    "tokens" if tokens else "requests",
                )
        worst = worst_case_hold(prompt_bound, max_output, price, ppm)
        await self._reserve(key.account_id or key.id, request_id, worst, worst, "")
        return worst

    async def _reserve(
        self, account_id: str, hold_id: str, amount: int, worst: int, what: str
    ) -> None:
        """Hold `amount` under `hold_id`, or raise 402 naming the request's `worst` case."""
        self._leased[hold_id] = account_id  # before the call: a reserve that times out may
        # still run on Redis later, and must then be reclaimed (its lease is never renewed)
        if not await self.holds.reserve(account_id, hold_id, amount):
            self._leased.pop(hold_id, None)
            raise _insufficient(await self.holds.available(account_id), worst, what)

    async def rehold(
        self,
        admission: Admission,
        key: ApiKeyInfo,
        model_id: str,
        prompt_bound: int,
        max_output_tokens: int,
    ) -> None:
        """Another model (a fallback) answers the admitted request. It passes the admission a
        direct request for it would: the key's allow-list (403), its spend caps and the
        balance for the fallback's worst case (402). Then it is priced from now on, and the
        difference held when its worst case is dearer than what is held (under a second hold
        id, dropped with the first at settlement). No rate limit is charged again: it is the
        same request."""
        if not key.allows(model_id):
            raise GatewayError("permission", f"This API key may not use the model {model_id}", 403)
        price, version = self.prices.price_for(model_id, admission.started_at)
        if self.enabled:
            worst = worst_case_hold(
                prompt_bound, max_output_tokens, price, admission.multiplier_ppm
            )
            base = admission.hold_nano - admission.extra_hold_nano
            extra = worst - base
            if admission.capped and worst > admission.hold_nano:
                await self.caps.admit(key, admission.request_id, worst - admission.hold_nano)
            if extra > admission.extra_hold_nano:
                hold_id = f"{admission.request_id}:fallback:{model_id}"
                what = f" for the fallback model {model_id}"
                await self._reserve(admission.account_id, hold_id, extra, worst, what)
                await self._drop_extra(admission)
                admission.extra_hold_id, admission.extra_hold_nano = hold_id, extra
                admission.hold_nano = worst
        admission.model_id, admission.price, admission.price_version_id = model_id, price, version

    async def _drop_extra(self, admission: Admission) -> None:
        hold_id, admission.extra_hold_id = admission.extra_hold_id, None
        admission.hold_nano -= admission.extra_hold_nano
        admission.extra_hold_nano = 0
        if hold_id is not None:
            self._leased.pop(hold_id, None)
            try:
                await self.holds.release(admission.account_id, hold_id)
            except Exception as exc:  # expires with its TTL (Redis); nothing is billed by it
                log.warning("fallback hold %s not released: %s", hold_id, _reason(exc))

    async def settle(self, admission: Admission, record: UsageRecord) -> int:
        """Bill `record` once (idempotent by request id); returns its cost in nano-USD. Returns
        after the record committed; caller cancellation does not stop the settlement."""
        if admission.cost_nano is not None:
            return admission.cost_nano
        cost = self._price(admission, record)
        if self.enabled and not admission.released:
            if self._lane is not None:
                self._settle_now(self._lane, admission, record)
            else:
                await asyncio.shield(self._settle(admission, record))
        if admission.extra_hold_id is not None:
            await self._drop_extra(admission)
        if admission.capped:
            await self.caps.settle(admission.request_id, cost)
        admission.cost_nano = cost
        return cost

    def settle_now(self, admission: Admission, record: UsageRecord) -> int | None:
        """`settle` as a plain call when nothing in it waits (the in-process lane, no spend cap,
        no fallback hold to drop): the cost. None, having done nothing, otherwise: await
        `settle`. BillingMeter asks this first: one coroutine less a request."""
        if admission.cost_nano is not None:
            return admission.cost_nano
        lane = self._lane
        if lane is None or admission.capped or admission.extra_hold_id is not None:
            return None
        cost = self._price(admission, record)
        if self.enabled and not admission.released:
            self._settle_now(lane, admission, record)
        admission.cost_nano = cost
        return cost

    async def settle_lines(self, items: list[tuple[Admission, UsageRecord]]) -> None:
        """Settle batch lines that ended together (a vendor batch's answers), each as `settle`
        would and idempotent by its request id, in fewer round trips: their records go to the
        writer at once (committed in its groups) and their holds' Redis steps in one pipeline
        (`Holds.settle_many`). No token bucket: batch lines are not rate limited. Raises
        after the others settled if a record did not commit (that line is not billed)."""
        todo = [(a, r, self._price(a, r)) for a, r in items if a.cost_nano is None]
        failed: BaseException | None = None
        unbilled: set[str] = set()
        live = [(a, r) for a, r, _ in todo if self.enabled and not a.released]
        if live:
            fresh = await asyncio.shield(
                asyncio.gather(*(self.writer.submit(r) for _, r in live), return_exceptions=True)
            )
            steps: list[tuple[str, str, int | None]] = []
            for (a, r), ok in zip(live, fresh, strict=True):
                if isinstance(ok, BaseException):
                    failed = ok
                    unbilled.add(a.request_id)
                self._leased.pop(a.request_id, None)
                steps.append((a.account_id, a.request_id, r.cost_nano if ok is True else None))
            try:
                await self.holds.settle_many(steps)
            except Exception as exc:  # replayed when Redis answers again, as _update_holds
                log.warning("balance cache unreachable (%s): settlements queue", _reason(exc))
                for account, rid, cost in steps:
                    self._deferred[rid] = (account, cost, self._redis_run_id)
        for a, _, cost in todo:
            if a.request_id in unbilled:
                continue
            if a.extra_hold_id is not None:
                await self._drop_extra(a)
            if a.capped:
                await self.caps.settle(a.request_id, cost)
            a.cost_nano = cost
        if failed is not None:
            raise failed

    def _price(self, admission: Admission, record: UsageRecord) -> int:
        """Price `record` (its cost and upstream cost, what the customer is not billed) and
        stamp it with the admission's ids; the customer's cost."""
        price, version = admission.price, admission.price_version_id
        if record.model and record.model != admission.model_id:  # a fallback model answered
            price, version = self.prices.price_for(record.model, admission.started_at)
        metered = _totals(record)
        ppm, upstream_ppm = admission.multiplier_ppm, admission.upstream_ppm
        upstream, cost = priced_nano(metered, price, ppm, upstream_ppm)
        reason = record.reason  # an Outcome when set by the meter (Enum's lookup costs ~1 µs)
        if not isinstance(reason, policy.Outcome):
            reason = policy.Outcome(reason)
        billed = billable(metered, reason, self.policy)
        if billed is not metered:  # the customer pays less than the vendor billed: our loss
            billed_list, cost = priced_nano(billed, price, ppm, upstream_ppm)
            record.loss_nano = upstream - billed_list
        record.cost_nano, record.upstream_cost_nano = cost, upstream
        record.price_version_id = version
        record.request_id, record.key_id = admission.request_id, admission.key_id
        record.account_id = admission.account_id
        record.multiplier_ppm = admission.multiplier_ppm
        record.started_at = record.started_at or admission.started_at
        return cost

    async def _settle(self, admission: Admission, record: UsageRecord) -> None:
        account_id = admission.account_id
        with self._changing(account_id):
            try:
                fresh = await self.writer.submit(record)
            except BaseException:
                await self._update_holds(account_id, admission.request_id, None)
                raise
            # Recorded before (a retry): billed then, only the hold goes.
            cost = record.cost_nano if fresh else None
            await self._update_holds(account_id, admission.request_id, cost)
        try:
            await self.limiter.consume_tokens(admission.key_id, admission.tpm, _tokens(record))
        except Exception as exc:  # a token bucket missing one request loses no money
            log.debug("token bucket not charged: %s", _reason(exc))

    def _settle_now(self, lane: _Lane, admission: Admission, record: UsageRecord) -> None:
        """`_settle` on the in-process store, as plain calls. No `changing` mark: with no await
        between the journal append and the balance step, the refresh cannot run between them
        (and keys with uncommitted journal records are not refreshed at all)."""
        request_id = admission.request_id
        self._leased.pop(request_id, None)
        try:
            lane.writer.submit_now(record)
        except BaseException:
            lane.holds.release_now(request_id)
            raise
        lane.holds.settle_now(admission.account_id, request_id, record.cost_nano)
        lane.limiter.consume_now(admission.key_id, admission.tpm, _tokens(record))

    async def _update_holds(self, key_id: str, request_id: str, cost: int | None) -> None:
        """The balance cache's half of a settlement: debit `cost` and drop the hold (None: drop
        the hold only). The ledger is the truth and has committed, so an unreachable Redis must
        not fail the request: the step waits in `_deferred` and is replayed when Redis answers
        again (idempotent by request id)."""
        self._leased.pop(request_id, None)
        try:
            await self._hold_step(key_id, request_id, cost)
        except Exception as exc:
            if not self._deferred:
                log.warning("balance cache unreachable (%s): settlements queue", _reason(exc))
            self._deferred[request_id] = (key_id, cost, self._redis_run_id)

    async def _hold_step(self, key_id: str, request_id: str, cost: int | None) -> None:
        if cost is None:
            await self.holds.release(key_id, request_id)
        else:
            await self.holds.settle(key_id, request_id, cost)

    def _changing(self, key_id: str) -> contextlib.AbstractContextManager[None]:
        """Marks a DB write whose in-memory twin follows, so the balance refresh skips the key
        meanwhile (Redis holds need no such care: they are never refreshed from the DB)."""
        if isinstance(self.holds, MemoryHolds):
            return self.holds.changing(key_id)
        return contextlib.nullcontext()

    async def release(self, admission: Admission) -> None:
        """Drop the hold of a request that never reached a vendor (nothing is billed)."""
        if admission.released or admission.cost_nano is not None:
            return
        admission.released = True
        if admission.capped:
            await self.caps.release(admission.request_id)
        if self.enabled:
            await self._update_holds(admission.account_id, admission.request_id, None)
            await self._drop_extra(admission)

    # ---------------------------------------------------------------- admin

    async def add_credits(
        self,
        key_id: str,
        amount_nano: int,
        note: str | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Credit (or, negative, adjust) the account of a key; returns the account's new
        balance. KeyError if the key is unknown; see `credit_account` for the rest."""
        account_id = await ledger.account_of(self.engine, key_id)
        if account_id is None:
            raise KeyError(key_id)
        return await self.credit_account(
            account_id, amount_nano, note, idempotency_key, key_id=key_id
        )

    async def credit_account(
        self,
        account_id: str,
        amount_nano: int,
        note: str | None = None,
        idempotency_key: str | None = None,
        *,
        key_id: str | None = None,
        kind: str | None = None,
    ) -> int:
        """Credit (or, negative, adjust) an account; returns the new balance. KeyError if
        unknown; ledger.BalanceOverflow, ledger.IdempotencyConflict (see
        ledger.add_ledger_entry). A repeat under the same idempotency key returns the first
        call's balance, moving nothing."""
        self._crediting += 1
        try:
            with self._changing(account_id):
                entry = await ledger.add_ledger_entry(
                    self.engine,
                    account_id,
                    amount_nano,
                    note,
                    idempotency_key,
                    key_id=key_id,
                    kind=kind,
                )
                if entry is None:
                    raise KeyError(account_id)
                balance, entry_id, fresh = entry
                if not fresh:  # a replay: the first call updated the live balance
                    return balance
                if self._follow_credits:
                    self._own.add(entry_id)
                try:
                    await self.holds.credit(account_id, amount_nano, entry_id)
                except Exception as exc:  # the ledger has it: Redis gets it when it returns
                    log.warning("credit queued for the balance cache: %s", _reason(exc))
                    self._deferred_credits[entry_id] = (
                        account_id,
                        amount_nano,
                        self._redis_run_id,
                    )
        finally:
            self._crediting -= 1
        return balance

    async def available(self, account_id: str) -> int:
        """What the account can spend now: balance less the holds of requests in flight."""
        return await self.holds.available(account_id)

    async def ping(self) -> None:
        """Raises unless the database answers (readiness)."""
        await ledger.ping(self.engine)

    async def ping_redis(self) -> None:
        """Raises unless Redis answers (readiness)."""
        if self._redis is not None:
            await self._redis.ping()

    async def key_summary(self, key_id: str) -> dict[str, Any] | None:
        await self.writer.flush()  # reads see every request this process settled
        return await ledger.key_summary(self.engine, key_id)

    async def usage(
        self, key_id: str | None = None, since: dt.datetime | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        await self.writer.flush()
        return await ledger.usage(self.engine, key_id, since, limit)

    async def account(self, key_id: str) -> dict[str, Any] | None:
        summary = await self.key_summary(key_id)
        if summary is None:
            return None
        return {**summary, "recent_usage": await self.usage(key_id, None, 20)}

    async def verify(self) -> list[str]:
        """The ledger's problems, then Redis's: balances it holds that the database does not
        explain once every committed entry's Redis step has run (replayed here first)."""
        await self.writer.flush()
        problems = await ledger.verify(self.engine)
        if isinstance(self.holds, RedisHolds):
            replayed = await self.reconcile(_VERIFY_ENTRIES)
            if replayed:
                log.warning("ledger verify: %d Redis balance steps replayed", replayed)
            cached = await self.holds.balances()
            in_db = await ledger.load_balances(self.engine, list(cached))
            for account, balance in sorted(cached.items()):
                db = in_db.get(account, (0, 0))[0]
                if balance != db:
                    problems.append(
                        f"account {account}: Redis balance {usd(balance)} != database "
                        f"{usd(db)} (Redis {usd(balance - db)} richer)"
                    )
        return problems

    async def reconcile(self, newest_entries: int | None = None) -> int:
        """Replay the Redis step of every committed ledger entry that lacks it (a process
        killed between its commit and its Redis step): the entries after the oldest newest-id
        of the last rounds, or the `newest_entries` newest. Idempotent, and safe beside live
        steps (the same markers). Returns how many steps were applied."""
        assert isinstance(self.holds, RedisHolds)
        newest = await ledger.newest_entry_id(self.engine)
        rolling = newest_entries is None and bool(self._reconciled_ids)
        if rolling:
            after = self._reconciled_ids[0]
        else:
            after = newest - (newest_entries or _RECONCILE_START_ENTRIES)
        entries = await ledger.entries_after(self.engine, max(after, 0))
        if rolling:
            # An entry replayed once is done (the replay is its Redis step, or finds it done):
            # the window stays wide only for ids that commit late, the gaps of earlier reads.
            # Replaying every entry each round sent Redis as many steps again as the live
            # traffic did, six times over.
            seen, gaps = self._seen_upto, self._gaps
            entries = [e for e in entries if e[0] > seen or e[0] in gaps]
        applied = await self.holds.replay(entries) if entries else 0
        top = max(newest, entries[-1][0] if entries else 0)
        lower = self._seen_upto if rolling else max(after, 0)
        read = {e[0] for e in entries}
        gaps = self._gaps - read if rolling else set()
        gaps.update(i for i in range(lower + 1, top + 1) if i not in read)
        self._reconciled_ids.append(newest)
        floor = self._reconciled_ids[0]
        self._gaps = {i for i in gaps if i > floor}
        self._seen_upto = max(self._seen_upto, top)
        return applied

    async def _publish_prices(self, what: str) -> None:
        if self._redis is not None:
            try:
                await self._redis.publish(f"{self._prefix}prices", what)
            except Exception as exc:  # the poll picks it up anyway
                log.warning("price change notice not published: %s", exc)

    # ---------------------------------------------------------------- background

    async def _load_balance_marked(self, account_id: str) -> tuple[int, int]:
        return await ledger.load_balance_marked(self.engine, account_id)

    async def _load_balance(self, key_id: str) -> int:
        if not self._follow_credits:
            return await ledger.load_balance(self.engine, key_id)
        self._loading.add(key_id)
        try:
            balance, mark = await ledger.load_balance_marked(self.engine, key_id)
        finally:
            self._loading.discard(key_id)
        self._marks[key_id] = mark
        return balance

    def _spawn(self, coro: Any) -> None:
        self._tasks.append(asyncio.create_task(coro))

    async def _poll_prices(self) -> None:
        while True:
            await asyncio.sleep(_PRICE_POLL_S)
            try:
                await self.prices.load()
            except Exception as exc:
                log.warning("price book reload failed: %s", exc)

    async def _listen_prices(self) -> None:
        assert self._redis is not None
        while True:
            try:
                pubsub = self._redis.pubsub()
                await pubsub.subscribe(f"{self._prefix}prices")
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        await self.prices.load()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("price notices: %s; reconnecting", exc)
                await asyncio.sleep(1.0)

    async def _replay_deferred(self) -> None:
        """Bring Redis level with the ledger once it answers again. A restarted Redis (a new
        run id) lost its balances, which reload from the ledger, debits included: its steps
        are dropped, not replayed on top."""
        assert self._redis is not None
        while True:
            try:
                run_id = str((await self._redis.info("server"))["run_id"])
                self._redis_run_id = run_id
                for request_id, (key_id, cost, meant_for) in list(self._deferred.items()):
                    if meant_for in (None, run_id):
                        await self._hold_step(key_id, request_id, cost)
                    del self._deferred[request_id]
                for entry_id, (key_id, amount, meant_for) in list(self._deferred_credits.items()):
                    if meant_for in (None, run_id):
                        await self.holds.credit(key_id, amount, entry_id)
                    del self._deferred_credits[entry_id]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("balance cache still unreachable: %s", _reason(exc))
            await asyncio.sleep(0.5 if self._deferred or self._deferred_credits else 5.0)

    async def _renew_leases(self) -> None:
        assert isinstance(self.holds, RedisHolds)
        while True:
            await asyncio.sleep(HOLD_RENEW_S)
            by_account: dict[str, list[str]] = {}
            for hold_id, account in list(self._leased.items()):
                by_account.setdefault(account, []).append(hold_id)
            if not by_account:
                continue
            try:
                await self.holds.renew(by_account)
            except Exception as exc:  # next round; holds outlive one missed renewal
                log.debug("hold leases not renewed: %s", _reason(exc))

    async def _reconcile_redis(self) -> None:
        """At start and every few seconds, on one replica at a time: Redis balances follow
        the ledger even when a process died between a commit and its Redis step."""
        assert self._redis is not None
        lock = f"{self._prefix}reconciling"
        while True:
            try:
                if await self._redis.set(lock, "1", nx=True, px=int(_RECONCILE_S * 800)):
                    applied = await self.reconcile()
                    if applied:
                        log.warning("Redis balances: %d missing step(s) replayed", applied)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("Redis reconciliation skipped: %s", _reason(exc))
            await asyncio.sleep(_RECONCILE_S)

    async def _refresh_balances(self) -> None:
        """Credits that another process (the CLI) wrote reach the in-memory balances within
        seconds, without a restart: read on along the ledger. Quiet keys also adopt their DB
        balance outright (a busy key always has debits on their way to the database, so it
        never is quiet: before the ledger was followed, its CLI credits never arrived)."""
        assert isinstance(self.holds, MemoryHolds)
        while True:
            await asyncio.sleep(_REFRESH_S)
            try:
                if self._follow_credits:
                    await self._apply_new_credits()
                # Keys with journaled debits not yet committed would read a stale balance.
                unsettled = getattr(self.writer, "uncommitted", {})
                snap = {k: g for k, g in self.holds.snapshot().items() if k not in unsettled}
                balances = await ledger.load_balances(self.engine, list(snap))
                for key_id, (balance, mark) in balances.items():
                    if self.holds.refresh(key_id, balance, snap[key_id]):
                        self._marks[key_id] = mark
            except Exception as exc:
                log.warning("balance refresh failed: %s", exc)

    async def _apply_new_credits(self) -> None:
        if self._crediting:  # an own credit may be committed but not yet in `_own`
            return
        entries = await ledger.credits_since(self.engine, self._credit_mark)
        if self._crediting:
            return
        for entry_id, key_id, amount in entries:
            if key_id in self._loading:
                return  # its balance may or may not include this entry: next round
            if entry_id in self._own:
                self._own.discard(entry_id)
            elif entry_id > self._marks.get(key_id, entry_id):  # loaded before this entry
                await self.holds.credit(key_id, amount)
            self._credit_mark = entry_id


def _reason(exc: BaseException) -> str:
    """One line for the log: the exception's type and message, no traceback."""
    return f"{type(exc).__name__}: {exc}"[:300]


def _sqlite_file(engine: AsyncEngine) -> str | None:
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return str(url.database)


def _tokens(r: UsageRecord) -> int:
    """What a settled request takes from its key's token bucket."""
    return r.input_tokens + r.cache_read_tokens + r.cache_write_tokens + r.output_tokens


def _insufficient(available: int, worst: int, what: str) -> GatewayError:
    """The 402 of a hold that does not fit."""
    return GatewayError(
        "billing",
        f"Insufficient balance{what}: ${usd(max(available, 0))} available, this request may "
        f"cost up to ${usd(worst)} (lower max_tokens or add credits)",
        402,
    )


def _totals(r: UsageRecord) -> ir.UsageTotals:
    return ir.UsageTotals(
        input=r.input_tokens,
        output=r.output_tokens,
        cache_read=r.cache_read_tokens,
        cache_write=r.cache_write_tokens,
        cache_write_1h=r.cache_write_1h_tokens,
        reasoning=r.reasoning_tokens,
    )


def _limits(key: ApiKeyInfo) -> str:
    parts = [
        f"{key.rpm} requests/min" if key.rpm else "",
        f"{key.tpm} tokens/min" if key.tpm else "",
    ]
    return ", ".join(p for p in parts if p)


def _rate_limited(
    what: str, wait: float, limit: Literal["requests", "tokens"] = "requests"
) -> GatewayError:
    """A 429 that says which limit refused and when to retry (whole seconds, rounded up)."""
    seconds = math.ceil(wait)
    return GatewayError(
        "rate_limit", f"{what}; retry in {seconds} s", 429, retry_after=float(seconds), limit=limit
    )
