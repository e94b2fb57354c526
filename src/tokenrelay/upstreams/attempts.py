"""The one owner of a request's upstream calls: which deployment gets each attempt, retries,
cooldowns, refused keys, leases, and the model's fallbacks — behind one call, `Caller.open`.

Everything here happens before the first byte reaches the client; after that an upstream
failure is the response's business (the client format's error event). What a fallback model's
call looks like, and whether the request may use it, is the gateway's decision: `open` asks
for it through `decide_fallback` and skips a fallback that raises GatewayError.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

from tokenrelay import ir
from tokenrelay.errors import GatewayError
from tokenrelay.settings import Settings
from tokenrelay.upstreams.calls import (
    RETRYABLE_STATUS,
    Upstreams,
    backoff_s,
    no_deployment,
    upstream_unreachable,
)
from tokenrelay.upstreams.http_client import NO_HEADERS, Response
from tokenrelay.upstreams.pools import Deployment, Pool, VendorEndpoint, retarget
from tokenrelay.vendors.base import UpstreamRequest

log = logging.getLogger("tokenrelay.upstreams")


class Target(Protocol):
    """One model's vendor call as the gateway decided it (built for the vendor's first
    deployment: `open` retargets it to the one chosen)."""

    @property
    def model_id(self) -> str: ...
    @property
    def endpoint(self) -> VendorEndpoint: ...
    @property
    def call(self) -> UpstreamRequest: ...


class CallRecord(Protocol):
    """What `open` writes down about its attempts (the request's metering record)."""

    request_id: str
    attempts: int
    deployment: str
    fallback_from: str
    upstream_answered: bool
    upstream_request_id: str


T = TypeVar("T", bound=Target)
# (deployment id, attempt start in ns since the epoch, HTTP status or None, error or None)
AttemptHook = Callable[[str, int, int | None, str | None], None]


class Exhausted(Exception):
    """No deployment of the model could take the request: its fallbacks may."""

    def __init__(self, error: GatewayError) -> None:
        super().__init__(error.message)
        self.error = error


class Opened(Generic[T]):
    """A vendor call that answered 200: its response, the target it answers (the model asked,
    or a fallback), and the deployment lease the request holds until `release`."""

    __slots__ = ("_lease", "response", "target")

    def __init__(self, response: Response, target: T, lease: Deployment) -> None:
        self.response = response
        self.target = target
        self._lease: Deployment | None = lease

    def release(self) -> None:
        """The request is done with its deployment (idempotent)."""
        lease, self._lease = self._lease, None
        if lease is not None:
            Pool.release(lease)


class Caller:
    def __init__(self, upstreams: Upstreams, settings: Settings) -> None:
        self.upstreams = upstreams
        self.retries = max(settings.upstream_retries, 0)
        self.budget_s = settings.upstream_retry_budget_s
        self.affinity_on = settings.upstream_affinity

    async def open(
        self,
        first: T,
        record: CallRecord,
        *,
        fallbacks: Sequence[str] = (),
        decide_fallback: Callable[[str], Awaitable[T]] | None = None,
        affinity: Callable[[], int | None] | None = None,
        on_attempt: AttemptHook | None = None,
    ) -> Opened[T]:
        """Open `first`'s call; when no deployment of its model can take it, each fallback in
        order (decided only when the one before is out). Raises the vendor's error, mapped,
        when nothing answers."""
        last: GatewayError | None = None
        candidates: list[str | None] = [None, *fallbacks]
        for i, model in enumerate(candidates):
            target = first
            if model is not None:
                assert decide_fallback is not None
                try:
                    target = await decide_fallback(model)
                except GatewayError as err:  # not for this request (allow-list, cap, balance)
                    log.warning(
                        "request %s: fallback %s from %s unusable: %s",
                        record.request_id,
                        model,
                        first.model_id,
                        err.message,
                    )
                    continue
                log.info(
                    "request %s: %s unavailable, falling back to %s",
                    record.request_id,
                    first.model_id,
                    model,
                )
                record.fallback_from = first.model_id
            try:
                return await self._attempts(
                    target,
                    record,
                    affinity=affinity,
                    fall_back=i + 1 < len(candidates),
                    on_attempt=on_attempt,
                )
            except Exhausted as exc:
                last = exc.error
        assert last is not None  # the model itself was tried, or it raised
        raise last

    async def fetch(self, target: T, record: CallRecord) -> bytes:
        """A non-streaming call to one model (count_tokens): the 200 body, or the vendor's
        error as GatewayError."""
        opened = await self._attempts(target, record)
        try:
            async with opened.response as resp:
                return await resp.read()
        finally:
            opened.release()

    async def _attempts(
        self,
        target: T,
        record: CallRecord,
        *,
        affinity: Callable[[], int | None] | None = None,
        fall_back: bool = False,
        on_attempt: AttemptHook | None = None,
    ) -> Opened[T]:
        """Open the call on one of the vendor's deployments (Pool.pick): a deployment that
        fails (connection, 5xx/529, 429) is cooled down and the next attempt goes to another
        one when there is one (otherwise, after a jittered backoff that honours
        `retry-after`, to the same); one whose key is refused is taken out. At most
        1 + upstream_retries attempts within the retry budget. `Exhausted` instead of the
        error when `fall_back` and the failure was the deployments', not the request's."""
        ep, model = target.endpoint, target.model_id
        pool = self.upstreams.pools[ep.name]
        key = affinity() if affinity is not None and self.affinity_on and not pool.single else None
        deadline = time.monotonic() + self.budget_s
        tried: list[Deployment] = []
        err: GatewayError | None = None
        for n in range(1 + self.retries):
            d = pool.pick(model, key, tried)
            if d is None:
                if fall_back:
                    raise Exhausted(err or no_deployment(ep.name))
                d = pool.last_resort(model)
                if d is None:
                    raise err or no_deployment(ep.name)
                if err is not None:  # waiting for the same deployment again
                    if err.status == 429 or (err.code == ir.UPSTREAM_ACCOUNT_ERROR):
                        raise err  # the vendor's word for this deployment: not soon
                    wait = backoff_s(n, err.retry_after)
                    if time.monotonic() + wait > deadline:
                        raise err
                    await asyncio.sleep(wait)
            elif n and time.monotonic() > deadline:
                raise err or no_deployment(ep.name)
            record.attempts += 1
            sent = target.call if d.endpoint is ep else retarget(target.call, ep, d.endpoint)
            pool.acquire(d)
            started_ns = time.time_ns() if on_attempt is not None else 0
            try:
                resp = await self.upstreams.open(ep.name, sent)
            except OSError as exc:  # connection failures and timeouts
                Pool.release(d)
                err = upstream_unreachable(ep.name, exc)
                pool.failed(d, type(exc).__name__)
                tried.append(d)
                if on_attempt is not None:
                    on_attempt(d.id, started_ns, None, err.message)
                continue
            except BaseException:
                Pool.release(d)
                raise
            if on_attempt is not None:
                on_attempt(d.id, started_ns, resp.status, None)
            if resp.status == 200:
                pool.succeeded(d)
                record.deployment = d.id
                record.upstream_answered = True
                record.upstream_request_id = resp.headers.get(ep.adapter.request_id_header, "")
                # Nothing reads the others: a stream does not keep them for its life (a vendor
                # sends ~20, ~5 KB of them).
                resp.headers = NO_HEADERS
                return Opened(resp, target, d)
            try:
                async with resp:
                    body = await resp.read()
            finally:
                Pool.release(d)
            err = GatewayError.from_ir(ep.adapter.parse_error(resp.status, body, resp.headers))
            if err.code == ir.UPSTREAM_ACCOUNT_ERROR:
                if not pool.reject_key(d, f"HTTP {resp.status}: {err.message[:200]}"):
                    raise err  # the vendor's last deployment: its answer goes to the client
            elif resp.status == 429 or resp.status in RETRYABLE_STATUS:
                pool.failed(d, f"HTTP {resp.status}", err.retry_after)
            else:
                raise err  # the request's own fault: no other deployment answers otherwise
            tried.append(d)
        assert err is not None
        if fall_back and not pool.any_available(model):
            raise Exhausted(err)
        raise err
