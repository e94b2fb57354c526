"""The billing seam the relay calls: admit before the upstream call, settle after it.

`BillingMeter` adapts the per-request accounting context (metering.RequestContext: usage, how
it ended) to the format-free BillingEngine: it holds the worst case at admission, turns the
finished context into one usage record, and renders the settled cost for the client (the
`x-tokenrelay-cost-usd` header and the final stream event). It knows nothing of the relay.
"""

from __future__ import annotations

import logging
from typing import Any

from tokenrelay.billing.engine import Admission, BillingEngine, UsageRecord
from tokenrelay.billing.metering import RequestContext
from tokenrelay.billing.policy import outcome
from tokenrelay.billing.pricing import usd
from tokenrelay.customers.keys import ApiKeyInfo
from tokenrelay.errors import GatewayError
from tokenrelay.ir import UsageTotals

log = logging.getLogger("tokenrelay.usage")


class BillingMeter:
    def __init__(self, engine: BillingEngine) -> None:
        self.engine = engine

    async def admit(
        self, key: ApiKeyInfo, ctx: RequestContext, model_id: str, max_output: int
    ) -> Admission:
        """Rate limits and the credit hold; raises GatewayError (429/402/503) before any
        upstream call. The hold prices the vendor call as it will be sent: `ctx.input_bound`
        for its prompt, `max_output` for every output token it allows."""
        return await self.engine.admit(key, ctx.request_id, model_id, ctx.input_bound, max_output)

    async def rehold(
        self,
        admission: Admission,
        key: ApiKeyInfo,
        ctx: RequestContext,
        model_id: str,
        max_output: int,
    ) -> None:
        """A fallback model will answer: the same admission as a direct request for it (the
        allow-list, caps, its worst case held when that is dearer); raises GatewayError."""
        await self.engine.rehold(admission, key, model_id, ctx.input_bound, max_output)

    async def admit_count(self, key: ApiKeyInfo, model_id: str) -> bool:
        """A token count: allow-list and throttle (raises 403/429); True when the account can
        pay for the vendor's own count."""
        return await self.engine.admit_count(key, model_id)

    def cost(self, ctx: RequestContext) -> int:
        if ctx.cost_nano is None:
            raise RuntimeError("cost asked before the request was settled")
        return ctx.cost_nano

    def extra_usage(self, ctx: RequestContext) -> dict[str, Any]:
        return {"cost_usd": usd(self.cost(ctx))}

    def cost_headers(self, ctx: RequestContext) -> list[tuple[bytes, bytes]]:
        return [(b"x-tokenrelay-cost-usd", usd(self.cost(ctx)).encode())]

    async def settle(self, admission: Admission | None, ctx: RequestContext) -> None:
        """Bill the request once (later calls are no-ops; None: never admitted, nothing to
        bill). A request the vendor refused (no 200 ever came back) costs nothing: its record
        shows the error at zero tokens."""
        if admission is None or ctx.cost_nano is not None:
            return
        if not ctx.upstream_answered:
            ctx.usage = UsageTotals()
            ctx.usage_source = "vendor"
        record = UsageRecord.from_context(ctx, attempts=max(ctx.attempts, 1))
        record.reason = outcome(ctx)
        try:
            ctx.cost_nano = await self.engine.settle(admission, record)
        except Exception as exc:  # the ledger did not commit: nothing is billed
            log.error("request %s not settled: %s", ctx.request_id, type(exc).__name__)
            raise GatewayError(
                "api_error", "Billing is briefly unavailable; this request was not charged.", 503
            ) from None
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "usage request_id=%s key=%s model=%s status=%s source=%s in=%d out=%d cost=%s",
                ctx.request_id,
                ctx.key_id,
                ctx.model_id,
                ctx.status,
                ctx.usage_source,
                record.input_tokens,
                record.output_tokens,
                usd(ctx.cost_nano),
            )
