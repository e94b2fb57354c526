"""The billing seam the relay calls: admit before the upstream call, settle after it.

`BillingMeter` adapts the per-request accounting context (metering.RequestContext: usage, how
it ended) to the format-free BillingEngine: it holds the worst case at admission, turns the
finished context into one usage record, and renders the settled cost for the client (the
`x-tokenrelay-cost-usd` header and the final stream event). It knows nothing of the relay.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any

from tokenrelay.billing.engine import Admission, BillingEngine, UsageRecord, worst_case_hold
from tokenrelay.billing.metering import RequestContext
from tokenrelay.billing.policy import outcome
from tokenrelay.billing.pricing import cost_nano, customer_nano, usd
from tokenrelay.billing.ratelimit import Levels
from tokenrelay.billing.receipts import RECEIPT_HEADER, ReceiptSigner, claims
from tokenrelay.customers.keys import ApiKeyInfo
from tokenrelay.errors import GatewayError
from tokenrelay.ir import UsageTotals

log = logging.getLogger("tokenrelay.usage")


class BillingMeter:
    def __init__(
        self, engine: BillingEngine, receipts: ReceiptSigner, *, always_receipt: bool = False
    ) -> None:
        self.engine = engine
        self.receipts = receipts
        # Signing costs ~80 µs of CPU (claims, JSON, Ed25519): only for answers that carry one.
        self.always_receipt = always_receipt

    def admit(
        self, key: ApiKeyInfo, ctx: RequestContext, model_id: str, max_output: int
    ) -> Coroutine[Any, Any, Admission]:
        """Rate limits and the credit hold; raises GatewayError (429/402/503) before any
        upstream call. The hold prices the vendor call as it will be sent: `ctx.input_bound`
        for its prompt, `max_output` for every output token it allows. (The engine's coroutine
        itself, not one around it: one coroutine less a request.)"""
        return self.engine.admit(key, ctx.request_id, model_id, ctx.input_bound, max_output)

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

    def quote(
        self,
        key: ApiKeyInfo,
        ctx: RequestContext,
        model_id: str,
        max_output: int,
        input_tokens: int,
        output: int,
    ) -> dict[str, Any]:
        """What admitting the decided request would hold (the figure `admit` holds, from the
        same bound), the most it can cost, and its cost at `output` tokens of answer."""
        price, version = self.engine.price_for(model_id)
        ppm = self.engine.multiplier(key, model_id)
        worst = worst_case_hold(ctx.input_bound, max_output, price, ppm)
        usage = UsageTotals(input=input_tokens, output=min(max(output, 0), max_output))
        return {
            "hold_usd": usd(worst if self.engine.enabled else 0),
            "max_cost_usd": usd(worst),
            "expected_cost_usd": usd(customer_nano(cost_nano(usage, price), ppm)),
            "expected_output_tokens": usage.output,
            "price_version": version,
        }

    def rate_levels(self, key: ApiKeyInfo | None) -> tuple[int | None, int | None, Levels]:
        """The key's rpm and tpm limits and what its buckets hold now (no I/O)."""
        if key is None or not (key.rpm or key.tpm):
            return None, None, (None, None)
        return key.rpm, key.tpm, self.engine.limiter.levels(key.id, key.rpm, key.tpm)

    def cost(self, ctx: RequestContext) -> int:
        if ctx.cost_nano is None:
            raise RuntimeError("cost asked before the request was settled")
        return ctx.cost_nano

    def receipt(self, ctx: RequestContext) -> str:
        """The settled request's signed receipt (signed once, on the first ask: ~0.1 ms, spent
        only on answers that carry it)."""
        if ctx.receipt is None:
            if ctx.record is None:
                raise RuntimeError("receipt asked before the request was settled")
            ctx.receipt = self.receipts.sign(claims(ctx.record, ctx.multiplier_ppm))
        return ctx.receipt

    def extra_usage(self, ctx: RequestContext) -> dict[str, Any]:
        if self.always_receipt or ctx.wants_receipt:
            return {"cost_usd": usd(self.cost(ctx)), "receipt": self.receipt(ctx)}
        return {"cost_usd": usd(self.cost(ctx))}

    def cost_headers(self, ctx: RequestContext) -> list[tuple[bytes, bytes]]:
        cost = (b"x-tokenrelay-cost-usd", usd(self.cost(ctx)).encode())
        if self.always_receipt or ctx.wants_receipt:
            return [cost, (RECEIPT_HEADER, self.receipt(ctx).encode())]
        return [cost]

    async def settle_lines(self, lines: list[tuple[Admission, RequestContext]]) -> None:
        """`settle` for batch lines that ended together, in fewer round trips
        (BillingEngine.settle_lines); a line whose record did not commit stays unbilled."""
        for _, ctx in lines:
            await ctx.estimate()
        items = [(a, ctx, _record(ctx)) for a, ctx in lines if ctx.cost_nano is None]
        try:
            await self.engine.settle_lines([(a, r) for a, _, r in items])
        except Exception as exc:
            log.error("batch lines not all settled: %s", type(exc).__name__)
        for admission, ctx, record in items:
            if admission.cost_nano is not None:
                ctx.cost_nano = admission.cost_nano
                ctx.record, ctx.multiplier_ppm = record, admission.multiplier_ppm

    async def settle(self, admission: Admission | None, ctx: RequestContext) -> None:
        """Bill the request once (later calls are no-ops; None: never admitted, nothing to
        bill). A request the vendor refused (no 200 ever came back) costs nothing: its record
        shows the error at zero tokens. What `finish` left to estimate is counted first."""
        if ctx.estimating:
            await ctx.estimate()
        if admission is None or ctx.cost_nano is not None:
            return
        record = _record(ctx)
        try:
            cost = self.engine.settle_now(admission, record)
            ctx.cost_nano = await self.engine.settle(admission, record) if cost is None else cost
            ctx.record, ctx.multiplier_ppm = record, admission.multiplier_ppm
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


def _record(ctx: RequestContext) -> UsageRecord:
    """The usage record of a request settling: what it used, or nothing when no vendor
    answered (the vendor refused it)."""
    if not ctx.upstream_answered:
        ctx.usage = UsageTotals()
        ctx.usage_source = "vendor"
    record = UsageRecord.from_context(ctx, attempts=max(ctx.attempts, 1))
    record.reason = outcome(ctx)
    return record
