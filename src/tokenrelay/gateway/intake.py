"""A request taken in, the same way for every route that names a model (messages, count
tokens, quotes): read the body within its bound, authenticate the key, resolve the model and
its vendor, validate the body into the IR with the frontend's parser."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tokenrelay import ir
from tokenrelay.asgi import Receive, Scope, header_map
from tokenrelay.billing.metering import RequestContext, session_id
from tokenrelay.catalog import Catalog, Resolved
from tokenrelay.customers.keys import ApiKeyInfo, KeyStore, presented_key
from tokenrelay.errors import GatewayError, invalid
from tokenrelay.gateway.jsonbody import parse_object, read_limited
from tokenrelay.upstreams.pools import VendorEndpoint

Parser = Callable[[Any, Mapping[str, str]], ir.Request]


@dataclass(slots=True)
class Body:
    """What a request says: its JSON body, its headers, and what its route says beside the
    body (Gemini's URL: the model and streaming; a fallback: its model), which overrides it."""

    payload: dict[str, Any]
    headers: dict[str, str]
    route: Mapping[str, Any] = field(default_factory=dict)
    raw: bytes = b""  # the body as the client sent it (none for a batch line)
    scope: Scope | None = None  # the request's, whose headers `headers` were read from


@dataclass(slots=True)
class Received:
    """An authenticated request, before anything is decided."""

    key: ApiKeyInfo
    body: Body


@dataclass(slots=True)
class Intake:
    """A validated request, routed to its vendor."""

    payload: dict[str, Any]
    headers: dict[str, str]
    route: Mapping[str, Any]
    resolved: Resolved
    endpoint: VendorEndpoint
    req: ir.Request
    raw: bytes  # the client's body, which `parse` read
    parse: Parser
    scope: Scope | None = None  # as Body's


def rereader(it: Intake) -> Callable[[], ir.Request]:
    """`it.req` as `take_in` parsed it, parsed again from the client's bytes when called: it
    keeps those bytes, not the parsed body, and reads the headers again from the request's
    scope, which the server keeps anyway while it answers (kept as a dict, they were ~0.7 KB a
    live stream of 1,000, traced)."""
    raw, parse, scope = it.raw, it.parse, it.scope
    if scope is None:
        headers = it.headers
        return lambda: parse(parse_object(raw), headers)
    return lambda: parse(parse_object(raw), header_map(scope))


async def receive_request(
    keys: KeyStore, max_body_bytes: int, ctx: RequestContext, scope: Scope, receive: Receive
) -> Received:
    """The body (bounded before it is read), the headers and the key they present (401
    without one), and what the route's URL says (Gemini's model and streaming) beside them:
    never merged into the body, which may go to the vendor as it came."""
    body = await read_limited(receive, max_body_bytes)
    headers = header_map(scope)
    ctx.session_id = session_id(headers)
    ctx.wants_receipt = headers.get("x-tokenrelay-receipt") in ("1", "true")
    key = await keys.authenticate(presented_key(headers))
    if key is None:
        raise GatewayError("authentication", "Invalid or missing API key.", 401)
    ctx.key_id = key.id
    route = dict(scope.get("path_params") or ())
    return Received(key, Body(parse_object(body), headers, route, body, scope))


def take_in(
    catalog: Catalog,
    endpoints: Mapping[str, VendorEndpoint],
    parse: Parser,
    ctx: RequestContext,
    body: Body,
) -> Intake:
    """Resolve the model and its vendor, validate the body into the IR (`parse`: the
    frontend's parser for this route's shape of body). `route` overrides the body's model
    and streaming: the URL's (Gemini), or the model of a fallback."""
    payload, headers, route = body.payload, body.headers, body.route
    model = route.get("model", payload.get("model"))
    if not isinstance(model, str) or not model:
        raise invalid("model: Field required (a model name string)", "model")
    resolved = catalog.resolve(model)
    if resolved is None:
        raise GatewayError(
            "not_found",
            f"model: '{model}' is not available here. GET /api/proxy/v1/models lists models.",
            404,
            param="model",
        )
    if resolved.entry.kind != "chat":
        raise invalid(f"model: '{model}' is an embedding model (POST /v1/embeddings)", "model")
    endpoint = endpoints.get(resolved.entry.vendor)
    if endpoint is None:
        raise GatewayError(
            "api_error",
            f"model: '{model}' is unavailable on this gateway right now.",
            503,
            retry_after=60.0,
        )
    req = parse(payload, headers)
    if "stream" in route:
        req.stream = bool(route["stream"])
    ctx.model_asked = model
    ctx.model_id = resolved.entry.id
    ctx.vendor = endpoint.name
    ctx.stream = req.stream
    ctx.request = req
    ctx.shown_at_end = req.shown_at_end
    req.model = resolved.entry.upstream
    if resolved.thinking is not None and (req.thinking is None or req.thinking.enabled is None):
        req.thinking = ir.ThinkingConfig(enabled=resolved.thinking)
    return Intake(payload, headers, route, resolved, endpoint, req, body.raw, parse, body.scope)
