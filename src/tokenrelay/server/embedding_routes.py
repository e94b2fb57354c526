"""`POST /v1/embeddings` (OpenAI's shape) and Gemini's `models/{m}:embedContent` and
`:batchEmbedContents`: authenticated, bounded, held and settled like any request
(gateway.embeddings), answered in the client's own format."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from tokenrelay import ir
from tokenrelay.asgi import (
    JSON_HEADERS,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    header_map,
    send_bytes,
    send_json,
)
from tokenrelay.billing.metering import RequestContext
from tokenrelay.customers.keys import presented_key
from tokenrelay.errors import GatewayError
from tokenrelay.frontends.chat.embeddings import parse_embeddings, render_embeddings
from tokenrelay.frontends.chat.frontend import OPENAI_FRONTEND
from tokenrelay.frontends.gemini.embeddings import parse_embed, render_embed
from tokenrelay.frontends.gemini.frontend import GEMINI_FRONTEND
from tokenrelay.gateway.embeddings import embed
from tokenrelay.gateway.jsonbody import parse_object, read_limited
from tokenrelay.gateway.relay import new_request_id
from tokenrelay.gateway.respond import Flight
from tokenrelay.ops.metrics import observe

if TYPE_CHECKING:
    from tokenrelay.gateway.relay import Relay

log = logging.getLogger("tokenrelay.server.embedding_routes")

Parse = Callable[[dict[str, Any]], ir.EmbeddingRequest]
Render = Callable[[ir.Embeddings, RequestContext, dict[str, Any]], dict[str, Any]]


async def openai_embeddings(relay: Relay, scope: Scope, receive: Receive, send: Send) -> None:
    def render(result: ir.Embeddings, ctx: RequestContext, payload: dict[str, Any]) -> Any:
        return render_embeddings(
            result,
            model=ctx.model_asked,
            encoding_format=str(payload.get("encoding_format", "float")),
            input_tokens=ctx.usage.input,
            extra_usage=relay.meter.extra_usage(ctx),
        )

    await _serve(relay, scope, receive, send, OPENAI_FRONTEND, parse_embeddings, render)


async def gemini_embeddings(
    relay: Relay, scope: Scope, receive: Receive, send: Send, model: str, method: str
) -> None:
    batch = method == "batchEmbedContents"

    def render(result: ir.Embeddings, ctx: RequestContext, payload: dict[str, Any]) -> Any:
        return render_embed(result, batch=batch)

    def parse(payload: dict[str, Any]) -> ir.EmbeddingRequest:
        return parse_embed(model, payload, batch=batch)

    await _serve(relay, scope, receive, send, GEMINI_FRONTEND, parse, render)


async def _serve(
    relay: Relay,
    scope: Scope,
    receive: Receive,
    send: Send,
    frontend: Any,
    parse: Parse,
    render: Render,
) -> None:
    ctx = RequestContext(request_id=new_request_id(), client_format=frontend.name)
    rid = (b"x-request-id", ctx.request_id.encode())
    try:
        body = await read_limited(receive, relay.settings.max_body_bytes)
        key = await relay.keys.authenticate(presented_key(header_map(scope)))
        if key is None:
            raise GatewayError("authentication", "Invalid or missing API key.", 401)
        ctx.key_id = key.id
        payload = parse_object(body)
        result = await embed(relay, Flight(ctx, frontend, key=key), parse(payload), _admit(relay))
        answer = render(result, ctx, payload)
    except GatewayError as err:
        status, err_body = frontend.render_error(err)
        await send_json(send, status, err_body, [rid])
        return
    except ClientDisconnected:
        return
    except Exception:  # a bug: a 500 in the client's format, never the exception text
        log.exception("embeddings request %s failed", ctx.request_id)
        status, err_body = frontend.render_error(
            GatewayError("api_error", "Internal gateway error.", 500)
        )
        await send_json(send, status, err_body, [rid])
        return
    finally:
        observe(ctx)
    headers = [*JSON_HEADERS, rid, *relay.meter.cost_headers(ctx)]
    await send_bytes(send, 200, orjson.dumps(answer), headers)


def _admit(relay: Relay) -> Callable[[Flight], Any]:
    async def admit(f: Flight) -> None:
        assert f.key is not None
        f.admission = await relay.meter.admit(f.key, f.ctx, f.ctx.model_id, 0)

    return admit
