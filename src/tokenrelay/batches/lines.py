"""One batch line: decided like a request of its client format, held at its worst case at the
batch price, answered through the gateway's own request path (so any catalog model on any
vendor), settled on its own under the line's request id.

The batch price is the account's price-group multiplier × the model's catalog `batch` field
(0.5 by default), applied once to the line's list-price cost: `customer_nano` rounds it up to
the nano-USD, like any request. The usage record's upstream cost is what the vendor bills:
the list price for a line the gateway ran (the vendor's standard API), the list price × the
model's `batch` field for a line answered by the vendor's own batch API (its batch price).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson

from tokenrelay.batches.store import line_request_id
from tokenrelay.billing.engine import Admission
from tokenrelay.billing.metering import RequestContext
from tokenrelay.billing.pricing import customer_nano, usd, worst_case_nano
from tokenrelay.customers.keys import ApiKeyInfo
from tokenrelay.errors import GatewayError
from tokenrelay.frontends.anthropic.frontend import ANTHROPIC_FRONTEND
from tokenrelay.frontends.chat.embeddings import parse_embeddings, render_embeddings
from tokenrelay.frontends.chat.frontend import OPENAI_FRONTEND
from tokenrelay.frontends.responses.frontend import RESPONSES_FRONTEND
from tokenrelay.gateway.codec import Frontend
from tokenrelay.gateway.decide import Prepared
from tokenrelay.gateway.embeddings import decide_embeddings, embed
from tokenrelay.gateway.relay import Relay
from tokenrelay.gateway.respond import Flight

EMBEDDINGS = "/v1/embeddings"
# The endpoints a line may name, and the client format that parses and answers it.
FRONTENDS: dict[str, Frontend] = {
    "/v1/chat/completions": OPENAI_FRONTEND,
    "/v1/responses": RESPONSES_FRONTEND,
    EMBEDDINGS: OPENAI_FRONTEND,
    "/v1/messages": ANTHROPIC_FRONTEND,
}


@dataclass(slots=True)
class Answer:
    status_code: int
    body: bytes
    cost_nano: int
    state: str | None = None  # the line's end when it is not answered (cancelled, expired)


class Lines:
    """Decides and runs batch lines for one gateway (its relay, billing and keys)."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.engine = relay.meter.engine

    def context(self, key: ApiKeyInfo, batch_id: str, line_no: int, endpoint: str) -> Flight:
        frontend = FRONTENDS[endpoint]
        ctx = RequestContext(
            request_id=line_request_id(batch_id, line_no), client_format=frontend.name
        )
        ctx.key_id, ctx.session_id = key.id, batch_id  # the batch is the session
        return Flight(ctx, frontend, key=key)

    async def worst_case(self, f: Flight, endpoint: str, payload: Any) -> int:
        """Decide the line as it will be sent (raises GatewayError for a line that cannot run)
        and return its worst case at the batch price, in the customer's nano-USD."""
        _, max_output = await self.decide(f, endpoint, payload)
        return self.admission(f, max_output).hold_nano

    async def run(self, f: Flight, endpoint: str, payload: Any) -> Answer:
        """Hold (again, after a restart: a hold still there is not taken twice), call, settle.
        Errors are answers too, in the line's client format, and cost nothing."""
        frontend = FRONTENDS[endpoint]
        try:
            if endpoint == EMBEDDINGS:
                return await self._embed(f, payload)
            decided, max_output = await self.decide(f, endpoint, payload)
            await self.hold(f, self.admission(f, max_output))
        except GatewayError as err:
            status, body = frontend.render_error(err)
            return Answer(status, orjson.dumps(body), 0)
        assert isinstance(decided, Prepared)
        status, raw = await self.relay.answer_detached(f, decided)
        return Answer(status, raw, f.ctx.cost_nano or 0)

    async def read_answer(
        self, f: Flight, p: Prepared, max_output: int, body: bytes
    ) -> Answer | None:
        """A vendor batch's answer to the line decided as `p`, read as the standard API's
        answer at the batch price; settled with the others of its vendor batch
        (`meter.settle_lines`), then `rendered`. An answer that does not read is the line's
        error (None then means: settle and render). No hold is taken again: the vendor ran
        the line, so it is billed whatever the balance now holds; spend caps count it."""
        admission = self.admission(f, max_output)
        entry = self.relay.catalog.get(f.ctx.model_id)
        assert entry is not None
        admission.upstream_ppm = entry.vendor_batch_ppm
        f.admission = admission
        with contextlib.suppress(GatewayError):  # over a cap now: billed all the same
            await self._count_caps(f, admission)
        ctx = f.ctx
        ctx.upstream_answered, ctx.attempts = True, 1
        try:
            p.exchange.read_unary(body)
        except GatewayError as err:
            ctx.upstream_answered = False
            ctx.finish("error", err.message, complete=False)
            status, error = f.frontend.render_error(err)
            return Answer(status, orjson.dumps(error), 0)
        ctx.finish("ok")
        return None

    def rendered(self, f: Flight, p: Prepared, answer: Answer | None) -> Answer:
        """The line's answer once settled: `answer` (its error), or the vendor's answer in the
        line's client format with its cost."""
        if answer is not None:
            return answer
        ex = p.exchange
        out = ex.unary_body(self.relay.meter.extra_usage(f.ctx) if ex.body_carries_cost else {})
        return Answer(200, out, f.ctx.cost_nano or 0)

    async def _embed(self, f: Flight, payload: Any) -> Answer:
        req = parse_embeddings(payload)

        async def hold(g: Flight) -> None:
            await self.hold(g, self.admission(g, 0))

        result = await embed(self.relay, f, req, hold)
        ctx = f.ctx
        body = render_embeddings(
            result,
            model=ctx.model_asked,
            encoding_format=str(payload.get("encoding_format", "float")),
            input_tokens=ctx.usage.input,
            extra_usage={"cost_usd": usd(ctx.cost_nano or 0)},
        )
        return Answer(200, orjson.dumps(body), ctx.cost_nano or 0)

    async def decide(self, f: Flight, endpoint: str, payload: Any) -> tuple[Prepared | object, int]:
        ctx = f.ctx
        if not isinstance(payload, dict):
            raise GatewayError("invalid_request", "body: expected a JSON object", 400)
        if endpoint == EMBEDDINGS:
            return decide_embeddings(self.relay, ctx, parse_embeddings(payload)), 0
        p = await self.relay.decide_detached(FRONTENDS[endpoint], ctx, payload)
        return p, p.max_output

    def admission(self, f: Flight, max_output: int) -> Admission:
        ctx, key = f.ctx, f.key
        assert key is not None
        if not key.allows(ctx.model_id):
            raise GatewayError(
                "permission", f"This API key may not use the model {ctx.model_id}", 403
            )
        entry = self.relay.catalog.get(ctx.model_id)
        assert entry is not None
        ppm = entry.batch_ppm(key.multiplier_ppm)
        now = dt.datetime.now(dt.UTC)
        price, version = self.engine.price_for(ctx.model_id, now)
        worst = customer_nano(worst_case_nano(ctx.input_bound, max(max_output, 0), price), ppm)
        return Admission(
            key.id,
            ctx.request_id,
            ctx.model_id,
            key.tpm,
            price,
            version,
            worst if self.engine.enabled else 0,
            now,
            account_id=key.account_id or key.id,
            multiplier_ppm=ppm,
        )

    async def hold(self, f: Flight, admission: Admission) -> None:
        """The line's hold (taken at creation; again after a restart or a Redis hold's
        expiry), and the key's spend caps, which count batch lines like any request. Rate
        limits do not apply: a batch is paced by the runner, not by the client."""
        holds, account, rid = self.engine.holds, admission.account_id, admission.request_id
        if (
            admission.hold_nano
            and not await holds.reserve(account, rid, admission.hold_nano)
            # Settled before a crash lost its answer: it runs again without a hold, and its
            # settlement (idempotent by request id) charges nothing more.
            and not await holds.settled(account, rid)
        ):
            raise GatewayError(
                "billing", "Insufficient balance for this batch request: nothing was charged", 402
            )
        await self._count_caps(f, admission)
        f.admission = admission

    async def _count_caps(self, f: Flight, admission: Admission) -> None:
        """The key's daily and monthly spend caps count the line (GatewayError when over)."""
        key = f.key
        assert key is not None
        if self.engine.enabled and (key.daily_cap_nano or key.monthly_cap_nano):
            await self.engine.caps.admit(key, admission.request_id, admission.hold_nano)
            admission.capped = True
