"""`POST /api/proxy/v1/quote/...`: what a request would cost, without calling a vendor or
moving money.

The body is any client API's request (the path names which: `/quote/messages`,
`/quote/chat/completions`, `/quote/responses`, `/quote/gemini/{model}`). It goes through the
relay's own intake and decision (`Relay.prepare`: authentication, model and alias resolution,
validation, the vendor call as it would be sent, the prompt bound), so the quote cannot drift
from what a request holds: the hold is `BillingEngine`'s own figure for that decision. A quote
is throttled and allow-listed like a token count (403, 429).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.routing import Route

from tokenrelay.asgi import ClientDisconnected, Receive, Scope, Send, send_json
from tokenrelay.billing.metering import RequestContext
from tokenrelay.errors import GatewayError, invalid
from tokenrelay.gateway.codec import Frontend
from tokenrelay.gateway.opening_usage import count_opening
from tokenrelay.gateway.relay import Relay, new_request_id

log = logging.getLogger("tokenrelay.gateway.quote")

QUOTE_PREFIX = "/api/proxy/v1/quote/"
# The answer length the expected cost assumes when `?output_tokens=` is not given.
DEFAULT_OUTPUT_TOKENS = 1000


def _output_tokens(scope: Scope) -> int:
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    raw = query.get("output_tokens")
    if raw is None:
        return DEFAULT_OUTPUT_TOKENS
    if not raw.isdigit() or len(raw) > 12:
        raise invalid("output_tokens: expected a whole number of tokens", "output_tokens")
    return int(raw)


async def serve_quote(
    relay: Relay, frontend: Frontend, scope: Scope, receive: Receive, send: Send
) -> None:
    ctx = RequestContext(request_id=new_request_id(), client_format=frontend.name)
    try:
        output = _output_tokens(scope)
        key, p = await relay.prepare(frontend, ctx, scope, receive)
        model_id = p.model_id
        await relay.meter.admit_count(key, model_id)
        input_tokens = await count_opening(p.intake.req)
        body: dict[str, Any] = {
            "object": "quote",
            "model_asked": ctx.model_asked,
            "model": model_id,
            "input_tokens": input_tokens,
            "input_tokens_bound": ctx.input_bound,
            "max_output_tokens": p.max_output,
            **relay.meter.quote(key, ctx, model_id, p.max_output, input_tokens, output),
        }
    except GatewayError as err:
        status, err_body = frontend.render_error(err)
        await send_json(send, status, err_body, [(b"x-request-id", ctx.request_id.encode())])
        return
    except ClientDisconnected:
        return
    except Exception:  # a bug: the client gets a 500 in its format, never the exception text
        log.exception("quote %s failed", ctx.request_id)
        status, err_body = frontend.render_error(
            GatewayError("api_error", "Internal gateway error.", 500)
        )
        await send_json(send, status, err_body)
        return
    await send_json(send, 200, body, [(b"x-request-id", ctx.request_id.encode())])


class _QuoteEndpoint:
    """One client API's quote route (an ASGI app: the relay reads the raw body itself)."""

    def __init__(self, relay: Relay, frontend: Frontend, *, model_in_path: bool) -> None:
        self.relay, self.frontend, self.model_in_path = relay, frontend, model_in_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.model_in_path:  # Gemini's body has no model: the URL names it, as in its API
            model = scope["path_params"]["model"].removeprefix("models/").split(":", 1)[0]
            scope["path_params"] = {"model": model, "stream": False}
        else:
            scope["path_params"] = {}
        await serve_quote(self.relay, self.frontend, scope, receive, send)


def quote_routes(
    relay: Relay, by_path: Mapping[str, Frontend], model_in_path: Mapping[str, Frontend]
) -> list[Route]:
    """`/quote/<the API's own path>` for each client API (`by_path`), and
    `/quote/<path>/{model}` for an API whose URL names the model (`model_in_path`)."""
    routes = [
        Route(QUOTE_PREFIX + path, _QuoteEndpoint(relay, f, model_in_path=False), methods=["POST"])
        for path, f in by_path.items()
    ]
    routes += [
        Route(
            QUOTE_PREFIX + path + "/{model:path}",
            _QuoteEndpoint(relay, f, model_in_path=True),
            methods=["POST"],
        )
        for path, f in model_in_path.items()
    ]
    return routes
