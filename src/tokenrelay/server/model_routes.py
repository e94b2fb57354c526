"""`GET /v1/models` (OpenAI list shape, or Anthropic's when an Anthropic SDK asks),
`GET /v1beta/models` (Gemini's), and `POST /v1/messages/count_tokens` and Gemini's
`:countTokens` (the vendor's own count where it has one, estimated otherwise)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tokenrelay.asgi import ClientDisconnected, Receive, Scope, Send, send_json
from tokenrelay.billing.metering import RequestContext, estimate_request_tokens_counted
from tokenrelay.errors import GatewayError
from tokenrelay.frontends.anthropic.frontend import ANTHROPIC_FRONTEND, AnthropicFrontend
from tokenrelay.frontends.gemini.frontend import GEMINI_FRONTEND, GeminiFrontend
from tokenrelay.frontends.responses.frontend import ResponsesFrontend
from tokenrelay.gateway.intake import receive_request
from tokenrelay.gateway.relay import new_request_id
from tokenrelay.upstreams.pools import VendorEndpoint
from tokenrelay.vendors.base import UpstreamRequest
from tokenrelay.vendors.openai_responses import (
    RESPONSES,
    input_tokens_request,
    parse_input_tokens,
)

if TYPE_CHECKING:
    from tokenrelay.gateway.relay import Relay

log = logging.getLogger("tokenrelay.server.model_routes")


async def list_models(relay: Relay, request: Request) -> Response:
    if "x-goog-api-key" in request.headers or "x-goog-api-client" in request.headers:
        return await list_gemini_models(relay, request)  # google-genai calls v1 too
    listing = relay.meter.engine.prices.listing(relay.upstreams.emulated)
    data: list[dict[str, Any]] = listing["data"]
    model_id = request.path_params.get("model_id")
    anthropic_client = "anthropic-version" in request.headers
    if model_id is not None:
        resolved = relay.catalog.resolve(model_id)
        match = next((m for m in data if resolved and m["id"] == resolved.entry.id), None)
        if match is None:
            err = GatewayError("not_found", f"model '{model_id}' not found", 404)
            frontend = ANTHROPIC_FRONTEND if anthropic_client else None
            if frontend is not None:
                status, body = frontend.render_error(err)
                return JSONResponse(body, status_code=status)
            return JSONResponse(
                {
                    "error": {
                        "message": err.message,
                        "type": "invalid_request_error",
                        "param": "model",
                        "code": "model_not_found",
                    }
                },
                status_code=404,
            )
        return JSONResponse(_anthropic_model(match) if anthropic_client else match)
    if anthropic_client:
        items = [_anthropic_model(m) for m in data]
        return JSONResponse(
            {
                "data": items,
                "has_more": False,
                "first_id": items[0]["id"] if items else None,
                "last_id": items[-1]["id"] if items else None,
            }
        )
    return JSONResponse(listing)


def _anthropic_model(m: dict[str, Any]) -> dict[str, Any]:
    created = datetime.fromtimestamp(m.get("created", 0), tz=UTC).isoformat().replace("+00:00", "Z")
    return {
        "type": "model",
        "id": m["id"],
        "display_name": m.get("display_name", m["id"]),
        "created_at": created,
        "max_input_tokens": m.get("context_window"),
        "max_tokens": m.get("max_output"),
        "vendor": m.get("vendor"),
    }


def _gemini_model(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "models/" + m["id"],
        "baseModelId": m["id"],
        "version": "001",
        "displayName": m.get("display_name", m["id"]),
        "description": f"{m.get('display_name', m['id'])} ({m.get('vendor')})",
        "inputTokenLimit": m.get("context_window"),
        "outputTokenLimit": m.get("max_output"),
        "supportedGenerationMethods": ["embedContent", "batchEmbedContents"]
        if m.get("kind") == "embedding"
        else ["generateContent", "countTokens"],
    }


async def list_gemini_models(relay: Relay, request: Request) -> Response:
    """Gemini's `models.list` / `models.get` shape, for the google-genai SDK and Gemini CLI."""
    data: list[dict[str, Any]] = relay.meter.engine.prices.listing(relay.upstreams.emulated)["data"]
    model_id = request.path_params.get("model_id")
    if model_id is None:
        return JSONResponse({"models": [_gemini_model(m) for m in data]})
    resolved = relay.catalog.resolve(model_id.removeprefix("models/"))
    match = next((m for m in data if resolved and m["id"] == resolved.entry.id), None)
    if match is None:
        err = GatewayError("not_found", f"model '{model_id}' not found", 404)
        status, body = GEMINI_FRONTEND.render_error(err)
        return JSONResponse(body, status_code=status)
    return JSONResponse(_gemini_model(match))


@dataclass(frozen=True, slots=True)
class _Count:
    """A count_tokens call, as the upstream caller's target."""

    model_id: str
    endpoint: VendorEndpoint
    call: UpstreamRequest


# The count's field in each API's answer.
_COUNT_FIELD = {"anthropic": "input_tokens", "gemini": "totalTokens", "responses": "input_tokens"}
# What else the answer says (OpenAI's `POST /v1/responses/input_tokens` names its object).
_COUNT_EXTRA: dict[str, dict[str, str]] = {"responses": {"object": "response.input_tokens"}}


async def count_tokens(
    relay: Relay,
    scope: Scope,
    receive: Receive,
    send: Send,
    frontend: AnthropicFrontend | GeminiFrontend | ResponsesFrontend = ANTHROPIC_FRONTEND,
) -> None:
    """The prompt's token count: the vendor's own count where it has one (Anthropic, Gemini;
    OpenAI's for a Responses body), the local tokenizer's otherwise. Authenticated like a
    request, and answers nothing for a model the key may not use."""
    ctx = RequestContext(request_id=new_request_id(), client_format=frontend.name)
    try:
        # The same intake as a request: body bound, key, model, aliases, vendor, validation.
        got = await receive_request(relay.keys, relay.settings.max_body_bytes, ctx, scope, receive)
        parse = getattr(frontend, "parse_count_tokens", None) or frontend.parse_request
        it = relay.take_in(parse, ctx, got.body)
        ep, req = it.endpoint, it.req
        can_pay = await relay.meter.admit_count(got.key, it.resolved.entry.id)
        if frontend.name == "responses":  # only OpenAI counts a Responses body itself
            openai = ep.adapter.passthrough(frontend.name) is RESPONSES
            call = (
                input_tokens_request(
                    got.body.payload, req.model, api_key=ep.api_key, base_url=ep.base_url
                )
                if openai
                else None
            )
            parse_count = parse_input_tokens
        else:
            call = ep.adapter.build_count_tokens(
                req, req.model, api_key=ep.api_key, base_url=ep.base_url
            )
            parse_count = ep.adapter.parse_count_tokens
        if call is None or not can_pay:  # a key that cannot pay gets the local estimate
            tokens, exact = await estimate_request_tokens_counted(req), False
        else:
            body = await relay.caller.fetch(_Count(it.resolved.entry.id, ep, call), ctx)
            tokens, exact = parse_count(body), True
    except GatewayError as err:
        status, err_body = frontend.render_error(err)
        await send_json(send, status, err_body)
        return
    except ClientDisconnected:
        return
    except Exception:  # a bug: the client gets a 500 in its format, never the exception text
        log.exception("count_tokens failed")
        status, err_body = frontend.render_error(
            GatewayError("api_error", "Internal gateway error.", 500)
        )
        await send_json(send, status, err_body)
        return
    await send_json(
        send,
        200,
        {**_COUNT_EXTRA.get(frontend.name, {}), _COUNT_FIELD[frontend.name]: tokens},
        [
            (b"x-tokenrelay-count", b"exact" if exact else b"estimated"),
            (b"x-request-id", ctx.request_id.encode()),
        ],
    )
