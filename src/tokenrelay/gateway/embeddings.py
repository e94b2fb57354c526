"""Embeddings through the gateway, whichever API the client speaks (OpenAI's /v1/embeddings,
Gemini's :embedContent and :batchEmbedContents, a batch line).

The model must be an embedding model of the catalog on a vendor that embeds (vendors.base
Embedder); the hold is every input at one token a byte (no tokenizer yields more) at the input
price; the vendor is called on its deployments like any request (retries, cooldowns); the cost
is the vendor's input token count, or the local tokenizer's where the vendor reports none
(Gemini), marked `estimated`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tokenrelay import ir
from tokenrelay.billing.metering import RequestContext, count_tokens
from tokenrelay.errors import GatewayError, invalid
from tokenrelay.upstreams.pools import VendorEndpoint
from tokenrelay.vendors.base import Embedder, UpstreamRequest

if TYPE_CHECKING:
    from tokenrelay.gateway.relay import Relay
    from tokenrelay.gateway.respond import Flight


@dataclass(slots=True)
class EmbeddingCall:
    """An embeddings request decided: the vendor call as it will be sent."""

    ctx: RequestContext
    req: ir.EmbeddingRequest
    endpoint: VendorEndpoint
    embedder: Embedder
    call: UpstreamRequest

    @property
    def model_id(self) -> str:  # the upstream caller's target
        return self.ctx.model_id


def decide_embeddings(relay: Relay, ctx: RequestContext, req: ir.EmbeddingRequest) -> EmbeddingCall:
    """Resolve the model and build the vendor call; sets what the hold prices (input_bound)."""
    resolved = relay.catalog.resolve(req.model)
    if resolved is None:
        raise GatewayError(
            "not_found",
            f"model: '{req.model}' is not available here. GET /api/proxy/v1/models lists models.",
            404,
            param="model",
        )
    entry = resolved.entry
    if entry.kind != "embedding":
        raise invalid(f"model: '{req.model}' is not an embedding model", "model")
    endpoint = relay.upstreams.endpoints.get(entry.vendor)
    if endpoint is None:
        raise GatewayError(
            "api_error", f"model: '{req.model}' is unavailable on this gateway right now.", 503
        )
    embedder = endpoint.adapter
    if not isinstance(embedder, Embedder):
        raise invalid(f"model: '{req.model}': vendor {entry.vendor} serves no embeddings", "model")
    if not embedder.embeds_token_arrays and any(not isinstance(i, str) for i in req.inputs):
        raise invalid(f"input: model '{req.model}' takes text only, not token arrays", "input")
    ctx.model_asked, ctx.model_id, ctx.vendor = req.model, entry.id, endpoint.name
    ctx.input_bound = sum(
        len(i.encode("utf-8", "surrogatepass")) if isinstance(i, str) else len(i)
        for i in req.inputs
    )
    call = embedder.build_embeddings(
        req, entry.upstream, api_key=endpoint.api_key, base_url=endpoint.base_url
    )
    return EmbeddingCall(ctx, req, endpoint, embedder, call)


async def run_embeddings(relay: Relay, f: Flight, e: EmbeddingCall) -> ir.Embeddings:
    """Call the vendor and settle (the caller admitted `f`); raises GatewayError with
    nothing billed when no whole answer came."""
    ctx = e.ctx
    body = await relay.caller.fetch(e, ctx)
    try:
        result = e.embedder.parse_embeddings(body)
    except (ValueError, KeyError, TypeError, AttributeError):
        result = ir.Embeddings([])
    if len(result.vectors) != len(e.req.inputs):
        ctx.upstream_answered = False  # not delivered: not billed
        raise GatewayError("api_error", "The vendor's embeddings answer was malformed.", 502)
    tokens = result.input_tokens
    if tokens is None:
        ctx.usage_source = "estimated"
        tokens = sum(count_tokens(i) if isinstance(i, str) else len(i) for i in e.req.inputs)
    ctx.apply_usage(ir.Usage(input=tokens, output=0))
    ctx.finish("ok")
    await relay.meter.settle(f.admission, ctx)
    return result


async def embed(
    relay: Relay,
    f: Flight,
    req: ir.EmbeddingRequest,
    hold: Callable[[Flight], Awaitable[None]],
) -> ir.Embeddings:
    """Decide, hold (`hold`: the relay's admission, or a batch line's own), call and settle.
    Whatever fails, nothing reached the client: the record costs nothing. Cancelled (the
    server stops), the hold is dropped without a record, so a batch line that runs again is
    billed then."""
    ctx = f.ctx
    try:
        e = decide_embeddings(relay, ctx, req)
        await hold(f)
        return await run_embeddings(relay, f, e)
    except asyncio.CancelledError:
        if f.admission is not None:
            await asyncio.shield(relay.meter.engine.release(f.admission))
        raise
    except BaseException as exc:
        ctx.upstream_answered = False
        if ctx.duration_ms is None:
            ctx.finish("error", getattr(exc, "message", "internal error"), complete=False)
        raise
    finally:
        if f.admission is not None and ctx.cost_nano is None and not f.admission.released:
            with contextlib.suppress(GatewayError):
                await asyncio.shield(relay.meter.settle(f.admission, ctx))
