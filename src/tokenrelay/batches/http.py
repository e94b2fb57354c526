"""What the batch and file routes of both APIs share: the customer's key, bounded bodies,
errors in the client's format, and the public base URL of absolute links."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tokenrelay.asgi import BodyTooLarge, read_body
from tokenrelay.batches.store import Batch, BatchStore
from tokenrelay.customers.keys import ApiKeyInfo, KeyStore, presented_key
from tokenrelay.errors import GatewayError
from tokenrelay.gateway.codec import Frontend
from tokenrelay.gateway.jsonbody import parse_object

Endpoint = Callable[[Request], Awaitable[Response]]


def not_found(what: str, ident: str) -> GatewayError:
    return GatewayError("not_found", f"No {what} found with id '{ident}'.", 404)


async def authenticated(keys: KeyStore, request: Request) -> ApiKeyInfo:
    key = await keys.authenticate(presented_key(request.headers))
    if key is None:
        raise GatewayError("authentication", "Invalid or missing API key.", 401)
    return key


def too_large(limit: int) -> GatewayError:
    return GatewayError("request_too_large", f"Request body exceeds {limit} bytes.", 413)


async def json_body(request: Request, limit: int) -> dict[str, Any]:
    """The JSON object of the request, read no further than `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    try:
        body = await read_body(request.receive, limit)
    except BodyTooLarge:
        raise too_large(limit) from None
    return parse_object(body)


def answering(frontend: Frontend, handler: Endpoint) -> Endpoint:
    """`handler`, its GatewayErrors answered in `frontend`'s error shape."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except GatewayError as err:
            status, body = frontend.render_error(err)
            headers = {"retry-after": str(round(err.retry_after))} if err.retry_after else None
            return JSONResponse(body, status_code=status, headers=headers)

    return endpoint


def routes(prefix: str, frontend: Frontend, table: list[tuple[str, str, Endpoint]]) -> list[Route]:
    """(method, path, handler) rows as routes under `prefix`, errors in `frontend`'s shape."""
    return [
        Route(prefix + path, answering(frontend, handler), methods=[method])
        for method, path, handler in table
    ]


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def public_base(request: Request, public_url: str | None) -> str:
    """The gateway's public URL (TOKENRELAY_PUBLIC_URL), else the one the request came to."""
    if public_url:
        return public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


def page_limit(request: Request, default: int = 20, most: int = 100) -> int:
    raw = request.query_params.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise GatewayError(
            "invalid_request", f"limit: expected an integer in 1..{most}", 400, param="limit"
        )
    return int(raw)


def page(data: list[dict[str, Any]], has_more: bool, head: dict[str, Any]) -> dict[str, Any]:
    """A list page as both APIs write it: `head` (OpenAI's `object: list`), the items, the
    first and last ids, whether more follow."""
    return {
        **head,
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


async def batch_page(
    store: BatchStore,
    account_id: str,
    api: str,
    request: Request,
    render: Callable[[Batch], dict[str, Any]],
    *,
    most: int,
    after: str,
    head: dict[str, Any],
) -> Response:
    """The account's batches of `api`, newest first, a page of `limit` (1..`most`) after the
    id in the query parameter `after` (OpenAI: `after`; Anthropic: `after_id`)."""
    limit = page_limit(request, default=20, most=most)
    rows = await store.batches(account_id, api, limit + 1, request.query_params.get(after))
    return JSONResponse(page([render(b) for b in rows[:limit]], len(rows) > limit, head))
