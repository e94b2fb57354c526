"""A request decided once, before its credit hold: the path (the client's own bytes to its
vendor, or translated through the IR), the vendor call as it will be sent, and every output
token that call allows — so the hold prices exactly what the vendor can bill."""

from __future__ import annotations

from dataclasses import dataclass

from tokenrelay.billing.metering import RequestContext
from tokenrelay.errors import invalid
from tokenrelay.gateway.codec import Frontend
from tokenrelay.gateway.exchange import Exchange
from tokenrelay.gateway.fastpath import PassthroughExchange
from tokenrelay.gateway.intake import Intake, rereader
from tokenrelay.gateway.prompt_bound import prompt_bound
from tokenrelay.gateway.translated import TranslatedExchange
from tokenrelay.reasoning.cache import ReasoningCache, convert_for, needs_conversion, restore
from tokenrelay.sse import Framing
from tokenrelay.upstreams.pools import VendorEndpoint
from tokenrelay.vendors.base import Passthrough, UpstreamRequest


@dataclass(slots=True)
class Prepared:
    """A request decided: the vendor call as it will be sent, and what may come back."""

    _intake: Intake | None  # until the answer is under way
    call: UpstreamRequest
    exchange: Exchange
    max_output: int  # every output token the call allows, over all its choices
    endpoint: VendorEndpoint
    model_id: str
    # The gateway put text in the prompt the client did not send (reasoning restored for the
    # vendor): the client's bytes, read again, would not say it.
    prompt_changed: bool = False

    @property
    def intake(self) -> Intake:
        assert self._intake is not None, "the request was let go (under_way)"
        return self._intake

    def waiting(self, ctx: RequestContext) -> None:
        """The call is made: while the vendor thinks (seconds, for a reasoning model), keep of
        the request only what a retry sends again (the call) and the client's own bytes, which
        a fallback and a prompt estimate parse again — not the parsed body nor the IR (a
        coding agent's 40 KB prompt parsed is ~70 KB of objects). Kept whole when there are
        no such bytes, or when the gateway rewrote the prompt (as `under_way`)."""
        it = self._intake
        if it is None or not it.raw or self.prompt_changed:
            return
        self._intake = None
        ctx.let_go(rereader(it), len(it.raw))

    def under_way(self, ctx: RequestContext) -> None:
        """The vendor's answer streams: nothing sends, retries or re-decides this call again
        (upstreams.attempts: every retry and fallback is over once one answers 200), so a
        stream keeps none of its request for its life — the call's body, the client's parsed
        body, the IR (a coding agent's 40 KB prompt parsed is ~70 KB of objects) — only the
        client's own bytes, read again in the rare case its prompt must be estimated, and not
        even those once the vendor has said the prompt's count (RequestContext.apply_usage)."""
        self.call.body = b""
        self.waiting(ctx)
        self._intake = None  # a rewritten prompt: its IR stays on the record (ctx.request)


async def decide(
    frontend: Frontend, it: Intake, ctx: RequestContext, reasoning: ReasoningCache
) -> Prepared:
    """The vendor call for a request taken in, as it will be sent (to the vendor's first
    deployment: the upstream caller retargets it to the one chosen)."""
    ep, req, entry = it.endpoint, it.req, it.resolved.entry
    if reasoning.shared:  # the previous turn may have been answered by another replica
        await reasoning.prefetch(req)
    exchange: Exchange
    prompt_changed = False
    framing: Framing = it.route.get("framing", "sse")  # Gemini's URL may ask for a JSON array
    # Stop sequences the model refuses (a 400) are sent without and enforced here, on the
    # translated path, which sees the text as IR deltas.
    own_stop = bool(req.stop) and not ep.adapter.enforces_stop(req.model)
    fast = None if own_stop else ep.adapter.passthrough(frontend.name)
    if fast is not None and needs_conversion(reasoning, ep.name, req):
        fast = None  # another vendor's turns: converted on the translated path
    if fast is not None:
        ctx.fast_path = True
        # The client's own body goes on: what it asks is what the vendor is asked.
        via = Passthrough(it.headers, ep.api_key, ep.base_url, reasoning)
        call = fast.passthrough_request(it.payload, req, via)
        exchange = PassthroughExchange(frontend, fast, ctx, req, reasoning, framing)
    else:
        ctx.fast_path = False
        if req.native_only:  # what only the client format's own vendor runs
            param, what = req.native_only[0]
            raise invalid(
                f"{param}: {what} is not available on model '{ctx.model_asked}' (vendor {ep.name})",
                param,
            )
        # The one place the output cap is decided: clients ask every model for their own cap
        # (Claude Code: 32000) and the vendor would refuse more than the model can write; no
        # cap at all takes the catalog's default for the model.
        if req.max_tokens is not None and req.max_tokens > entry.max_output:
            req.max_tokens = entry.max_output
        ep.adapter.finalize(req, entry.default_max_tokens)
        restored = restore(reasoning, ep.name, req)
        prompt_changed = convert_for(ep.name, req) or restored
        stops = req.stop
        if own_stop:
            req.stop = []
        call = ep.adapter.build_request(req, req.model, api_key=ep.api_key, base_url=ep.base_url)
        req.stop = stops
        translated = TranslatedExchange(frontend, ep.adapter, ctx, req, reasoning, framing)
        if own_stop:
            translated.enforce_stop(req.stop)
        exchange = translated
    ctx.input_bound = prompt_bound(
        req,
        call.body,
        max_image_tokens=ep.adapter.max_image_tokens,
        url_media_bounded=ep.adapter.url_media_bounded,
        context_window=entry.context_window,
        fast_path=fast is not None,
    )
    # Without a cap of its own the vendor may write up to the model's output limit.
    max_output = (call.max_output or entry.max_output) * call.choices
    return Prepared(it, call, exchange, max_output, ep, entry.id, prompt_changed)
