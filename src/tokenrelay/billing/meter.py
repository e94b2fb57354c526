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
from tokenrelay.errors import GatewayError
from tokenrelay.ir import UsageTotals

log = logging.getLogger("tokenrelay.usage")


class BillingMeter:
    def __init__(self, engine: BillingEngine) -> None:
        self.engine = engine

    async def admit(self, ctx: RequestContext, model_id: str, max_output: int) -> None:
        """Rate limits and the credit hold; raises GatewayError (429/402/503) before any
        upstream call. The hold prices the vendor call as it will be sent: `ctx.input_bound`
        for its prompt, `max_output` for every output token it allows."""
        ctx.admission = await self.engine.admit(
            ctx.key, ctx.request_id, model_id, ctx.input_bound, max_output
        )

    async def rehold(self, ctx: RequestContext, model_id: str, max_output: int) -> None:
        """A fallback model will answer: hold its worst case too when that is dearer (raises
        GatewayError 402 when the balance does not cover it)."""
        if ctx.admission is not None:
            await self.engine.rehold(ctx.admission, model_id, ctx.input_bound, max_output)

    def cost(self, ctx: RequestContext) -> int:
        if ctx.cost_nano is None:
            raise RuntimeError("cost asked before the request was settled")
        return ctx.cost_nano

    def extra_usage(self, ctx: RequestContext) -> dict[str, Any]:
        return {"cost_usd": usd(self.cost(ctx))}

    def cost_headers(self, ctx: RequestContext) -> list[tuple[bytes, bytes]]:
        return [(b"x-tokenrelay-cost-usd", usd(self.cost(ctx)).encode())]

    async def settle(self, ctx: RequestContext) -> None:
        """Bill the request once (later calls are no-ops). A request the vendor refused (no
        200 ever came back) costs nothing: its record shows the error at zero tokens."""
        admission: Admission | None = ctx.admission
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
