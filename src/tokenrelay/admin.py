"""Admin API for customer keys: create, list, show, revoke.

Guarded by `Authorization: Bearer $TOKENRELAY_ADMIN_TOKEN`. A plaintext key appears in exactly
one response, the 201 of its creation; everything else shows the hint only.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tokenrelay.auth import KeyStore, usd_to_nano
from tokenrelay.settings import Settings, get_settings

_CREATE_FIELDS = frozenset({"name", "credits_usd", "rpm", "tpm"})
_MAX_NAME = 200

Handler = Callable[[Request], Awaitable[Response]]


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def admin_routes(
    key_store: KeyStore,
    meter: object | None = None,
    *,
    settings: Settings | None = None,
) -> list[Route]:
    """Routes under /admin/v1. The admin token comes from `settings` (default: the environment,
    via get_settings()). `meter` is accepted for the billing endpoints to come (credit top-ups
    must also reach the live balances); the key routes do not use it."""
    del meter
    secret = (settings or get_settings()).admin_token
    token = secret.get_secret_value().encode() if secret else None

    def guarded(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            denied = _check_admin(request, token)
            if denied is not None:
                return denied
            try:
                return await handler(request)
            except _BadRequest as exc:
                return _error(400, "invalid_request_error", exc.message, exc.param)

        return endpoint

    async def create_key(request: Request) -> Response:
        fields = _parse_create(await _json_object(request))
        info, plaintext = await key_store.create(**fields)
        # The only response that ever carries the key.
        return JSONResponse({**info.public(), "key": plaintext}, status_code=201)

    async def list_keys(request: Request) -> Response:
        keys = await key_store.list()
        return JSONResponse({"object": "list", "data": [k.public() for k in keys]})

    async def show_key(request: Request) -> Response:
        info = await key_store.get(request.path_params["key_id"])
        if info is None:
            return _not_found(request.path_params["key_id"])
        return JSONResponse(info.public())

    async def revoke_key(request: Request) -> Response:
        info = await key_store.revoke(request.path_params["key_id"])
        if info is None:
            return _not_found(request.path_params["key_id"])
        return JSONResponse(info.public())

    return [
        Route("/admin/v1/keys", guarded(create_key), methods=["POST"]),
        Route("/admin/v1/keys", guarded(list_keys), methods=["GET"]),
        Route("/admin/v1/keys/{key_id}", guarded(show_key), methods=["GET"]),
        Route("/admin/v1/keys/{key_id}", guarded(revoke_key), methods=["DELETE"]),
    ]


def _check_admin(request: Request, token: bytes | None) -> Response | None:
    if token is None:
        return _error(
            403,
            "permission_error",
            "the admin API is disabled: set TOKENRELAY_ADMIN_TOKEN to a long random secret "
            "and restart the gateway",
        )
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return _error(
            401, "authentication_error", "missing admin token: send Authorization: Bearer <token>"
        )
    if not hmac.compare_digest(presented.strip().encode(), token):
        return _error(401, "authentication_error", "invalid admin token")
    return None


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise _BadRequest("request body must be a JSON object") from exc
    if not isinstance(body, dict):
        raise _BadRequest("request body must be a JSON object")
    return body


def _parse_create(body: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(body) - _CREATE_FIELDS)
    if unknown:
        # A typo such as "credits" would otherwise silently create a key with $0.
        raise _BadRequest(f"unknown field {unknown[0]!r}", unknown[0])
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _BadRequest("name: a non-empty string is required", "name")
    if len(name) > _MAX_NAME:
        raise _BadRequest(f"name: at most {_MAX_NAME} characters", "name")
    return {
        "name": name.strip(),
        "credits_usd": _credits(body.get("credits_usd")),
        "rpm": _limit(body, "rpm"),
        "tpm": _limit(body, "tpm"),
    }


def _credits(value: Any) -> Decimal | None:
    if value is None:
        return None
    # bool is an int in Python; `true` dollars is a client bug, not $1.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _BadRequest("credits_usd: must be a number or a decimal string", "credits_usd")
    try:
        # str() first: Decimal(0.1) would carry the float's binary error into the balance.
        amount = Decimal(str(value).strip())
        usd_to_nano(amount)
    except (InvalidOperation, ValueError) as exc:
        raise _BadRequest(
            "credits_usd: must be a non-negative amount with at most 9 decimal places",
            "credits_usd",
        ) from exc
    return amount


def _limit(body: dict[str, Any], field: str) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
        raise _BadRequest(f"{field}: must be a positive integer or null", field)
    return value


def _not_found(key_id: str) -> Response:
    return _error(404, "not_found_error", f"no key with id {key_id!r}")


def _error(status: int, kind: str, message: str, param: str | None = None) -> Response:
    error: dict[str, Any] = {"type": kind, "message": message}
    if param is not None:
        error["param"] = param
    return JSONResponse({"error": error}, status_code=status)
