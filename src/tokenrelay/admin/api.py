"""Admin API (keys, credits, usage, prices, ledger check) and the customer's account route.

Guarded by `Authorization: Bearer $TOKENRELAY_ADMIN_TOKEN`. A plaintext key appears in exactly
one response, the 201 of its creation; everything else shows the hint only. Money goes out as
9-decimal USD strings (`money.usd`); prices per 1M tokens keep the catalog's format. Every
input is checked before anything is written: a bad one is a 400 naming the field, never a 500
(tests/fuzz runs schemathesis on the OpenAPI document served at /admin/v1/openapi.json).
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tokenrelay.admin.actions import ActionError, Actor, NotFound, OperatorActions
from tokenrelay.admin.openapi import admin_openapi
from tokenrelay.billing.ledger import (
    MAX_USAGE_LIMIT,
    BalanceOverflow,
    IdempotencyConflict,
    customer_usage_json,
)
from tokenrelay.billing.pricebook import PriceError, parse_price, parse_time
from tokenrelay.customers.keys import KeyStore, presented_key
from tokenrelay.money import MAX_AMOUNT_NANO, MoneyError, parse_nano, usd
from tokenrelay.portal.throttle import Backoff, client_ip, shared_store
from tokenrelay.settings import Settings, get_settings

if TYPE_CHECKING:
    from tokenrelay.billing.engine import BillingEngine
    from tokenrelay.upstreams.calls import Upstreams
    from tokenrelay.upstreams.deployment_state import DeploymentStates

_CREATE_FIELDS = frozenset(
    {
        "name",
        "credits_usd",
        "rpm",
        "tpm",
        "account_id",
        "allowed_models",
        "expires_at",
        "daily_cap_usd",
        "monthly_cap_usd",
    }
)
_PRICE_FIELDS = frozenset(
    {"model", "input", "output", "cache_read", "cache_write", "cache_write_1h", "tiers"}
    | {"effective_from", "note"}
)
_MAX_NAME = 200
_MAX_NOTE = 500  # the ledger's note column; price notes are cut there too
_MAX_ID = 200
_MAX_IDEMPOTENCY_KEY = 200

Handler = Callable[[Request], Awaitable[Response]]
API = Actor("admin-api")  # the shared token names no person


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def admin_routes(
    key_store: KeyStore,
    billing: object | None = None,
    *,
    settings: Settings | None = None,
    upstreams: Upstreams | None = None,
    states: DeploymentStates | None = None,
) -> list[Route]:
    """Routes under /admin/v1. The admin token comes from `settings` (default: the environment,
    via get_settings()). The credit, usage, price and ledger routes exist when `billing` is a
    BillingEngine (credits must reach the live balances, not just the database)."""
    from tokenrelay.billing.engine import BillingEngine

    engine = billing if isinstance(billing, BillingEngine) else None
    actions = OperatorActions(
        key_store.engine, key_store, engine, upstreams=upstreams, states=states
    )
    secret = (settings or get_settings()).admin_token
    token = secret.get_secret_value().encode() if secret else None
    # Wrong tokens per client IP: a few free, then each guess waits longer (across replicas).
    guesses = Backoff(shared_store(settings or get_settings()), "admin-token", 5, 300)

    def guarded(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            # The right token always passes: an address slowed for wrong guesses (a NAT, the
            # proxy every client shares) never locks the operator out; wrong ones wait.
            denied = _check_admin(request, token)
            if denied is not None:
                ip = client_ip(request)
                wait = await guesses.wait(ip)
                if wait is not None:
                    refused = _error(429, "rate_limit_error", "too many invalid admin tokens")
                    refused.headers["retry-after"] = str(int(wait) + 1)
                    return refused
                if denied.status_code == 401:
                    await guesses.failed(ip)
                return denied
            try:
                return await handler(request)
            except (_BadRequest, PriceError) as exc:
                param = exc.param if isinstance(exc, _BadRequest) else None
                return _error(400, "invalid_request_error", str(exc), param)
            except IdempotencyConflict as exc:
                return _error(409, "idempotency_error", str(exc), "Idempotency-Key")

        return endpoint

    async def create_key(request: Request) -> Response:
        fields = _parse_create(await _json_object(request))
        if fields["account_id"] is not None and fields["credits_usd"] is not None:
            raise _BadRequest(
                "credits_usd: a key of an existing account spends the account's balance; "
                "credit the account instead",
                "credits_usd",
            )
        try:
            info, plaintext = await actions.create_key(API, **fields)
        except NotFound:
            return _error(404, "not_found_error", "no such account", "account_id")
        # The only response that ever carries the key.
        return JSONResponse({**info.public(), "key": plaintext}, status_code=201)

    async def list_keys(request: Request) -> Response:
        keys = await key_store.list()
        return JSONResponse({"object": "list", "data": [k.public() for k in keys]})

    async def show_key(request: Request) -> Response:
        info = await key_store.get(key_id) if (key_id := _key_id(request)) else None
        if info is None:
            return _not_found(request.path_params["key_id"])
        body = info.public()
        if engine is not None:
            summary = await engine.key_summary(info.id) or {}
            body |= {
                k: summary[k] for k in ("balance_usd", "spent_usd", "requests") if k in summary
            }
        return JSONResponse(body)

    async def revoke_key(request: Request) -> Response:
        key_id = _key_id(request)
        try:
            info = await actions.revoke_key(API, key_id or "")
        except NotFound:
            return _not_found(request.path_params["key_id"])
        return JSONResponse(info.public())

    models = [e.id for e in engine.prices.catalog.entries()] if engine else None
    ids = None
    if upstreams is not None:
        ids = [d.id for pool in upstreams.pools.values() for d in pool.deployments]
    document = admin_openapi(billing=engine is not None, models=models, deployments=ids)

    async def list_deployments(request: Request) -> Response:
        assert upstreams is not None
        now = time.monotonic()
        data = [d.snapshot(now) for pool in upstreams.pools.values() for d in pool.deployments]
        return JSONResponse({"object": "list", "data": data})

    def deployment_action(action: str) -> Handler:
        async def handler(request: Request) -> Response:
            assert upstreams is not None
            dep_id = f"{request.path_params['vendor']}/{request.path_params['name']}"
            found = upstreams.deployment(dep_id)
            if found is None:
                return _error(404, "not_found_error", f"No deployment {dep_id!r}.", "id")
            pool, d = found
            # Through the operator actions (audited, as from the console): every process and
            # replica applies it within a second.
            if states is not None:
                await actions.set_deployment_drained(API, dep_id, action == "drain")
            elif action == "drain":
                pool.drain(d)
            else:
                pool.restore(d)
            return JSONResponse(d.snapshot(time.monotonic()))

        return handler

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    def account_action(disabled: bool) -> Handler:
        async def handler(request: Request) -> Response:
            body = await _json_object(request)
            unknown = sorted(set(body) - {"reason"})
            if unknown:
                raise _BadRequest(f"unknown field {unknown[0]!r}", unknown[0])
            reason = _text(body.get("reason"), "reason", _MAX_NOTE)
            account_id = str(request.path_params["account_id"])[:40]
            try:
                await actions.set_account_disabled(API, account_id, disabled, reason or "")
            except ActionError as exc:
                raise _BadRequest(str(exc), exc.field) from exc
            except NotFound:
                return _error(404, "not_found_error", "no such account", "account_id")
            return JSONResponse({"id": account_id, "disabled": disabled})

        return handler

    routes = [
        Route("/admin/v1/openapi.json", guarded(openapi), methods=["GET"]),
        Route("/admin/v1/keys", guarded(create_key), methods=["POST"]),
        Route("/admin/v1/keys", guarded(list_keys), methods=["GET"]),
        Route("/admin/v1/keys/{key_id}", guarded(show_key), methods=["GET"]),
        Route("/admin/v1/keys/{key_id}", guarded(revoke_key), methods=["DELETE"]),
        Route(
            "/admin/v1/accounts/{account_id}/disable",
            guarded(account_action(True)),
            methods=["POST"],
        ),
        Route(
            "/admin/v1/accounts/{account_id}/enable",
            guarded(account_action(False)),
            methods=["POST"],
        ),
        *(
            [
                Route("/admin/v1/deployments", guarded(list_deployments), methods=["GET"]),
                Route(
                    "/admin/v1/deployments/{vendor}/{name}/drain",
                    guarded(deployment_action("drain")),
                    methods=["POST"],
                ),
                Route(
                    "/admin/v1/deployments/{vendor}/{name}/restore",
                    guarded(deployment_action("restore")),
                    methods=["POST"],
                ),
            ]
            if upstreams is not None
            else []
        ),
    ]
    if engine is not None:
        routes += [
            Route(path, guarded(handler), methods=[method])
            for path, method, handler in _billing_handlers(engine, actions)
        ]
    return routes


def _billing_handlers(
    billing: BillingEngine, actions: OperatorActions
) -> list[tuple[str, str, Handler]]:
    async def add_credits(request: Request) -> Response:
        idempotency_key = _idempotency_key(request)
        body = await _json_object(request)
        unknown = sorted(set(body) - {"amount_usd", "note"})
        if unknown:
            raise _BadRequest(f"unknown field {unknown[0]!r}", unknown[0])
        amount = signed_nano(body.get("amount_usd"), "amount_usd")
        note = _text(body.get("note"), "note", _MAX_NOTE)
        key_id = _key_id(request)
        if key_id is None:
            return _not_found(request.path_params["key_id"])
        try:
            balance = await actions.credit_key(API, key_id, amount, note, idempotency_key)
        except NotFound:
            return _not_found(key_id)
        except BalanceOverflow as exc:
            raise _BadRequest(f"amount_usd: {exc}", "amount_usd") from exc
        return JSONResponse({"id": key_id, "amount_usd": usd(amount), "balance_usd": usd(balance)})

    async def list_usage(request: Request) -> Response:
        q = request.query_params
        key_id = _text(q.get("key_id") or None, "key_id", _MAX_ID)
        rows = await billing.usage(key_id, _since(q.get("since")), _limit_param(q.get("limit")))
        return JSONResponse({"object": "list", "data": rows})

    async def list_prices(request: Request) -> Response:
        model = _text(request.query_params.get("model") or None, "model", _MAX_ID)
        versions = billing.prices.versions(model)
        return JSONResponse({"object": "list", "data": [v.public() for v in versions]})

    async def set_price(request: Request) -> Response:
        body = await _json_object(request)
        unknown = sorted(set(body) - _PRICE_FIELDS)
        if unknown:
            raise _BadRequest(f"unknown field {unknown[0]!r}", unknown[0])
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _BadRequest("model: a catalog model id is required", "model")
        note = _text(body.get("note"), "note", _MAX_NOTE)
        try:
            current = billing.price_for(model)[0]
        except KeyError:
            raise _BadRequest(f"model: {model[:80]!r} is not a catalog model id", "model") from None
        version = await actions.set_price(
            API, model, parse_price(body, current), parse_time(body.get("effective_from")), note
        )
        return JSONResponse(version.public(), status_code=201)

    async def verify(request: Request) -> Response:
        problems = await billing.verify()
        return JSONResponse({"ok": not problems, "problems": problems})

    return [
        ("/admin/v1/keys/{key_id}/credits", "POST", add_credits),
        ("/admin/v1/usage", "GET", list_usage),
        ("/admin/v1/prices", "GET", list_prices),
        ("/admin/v1/prices", "POST", set_price),
        ("/admin/v1/ledger/verify", "GET", verify),
    ]


# What a customer sees of a usage record: never the upstream cost (the reseller's price), the
# price version or how the gateway served it.
CUSTOMER_USAGE_FIELDS = frozenset(
    (
        "request_id", "model", "model_asked", "vendor", "stream", "input_tokens",
        "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
        "reasoning_tokens", "usage_source", "cost_usd", "status", "error", "started_at",
        "duration_ms", "ttft_ms", "session_id",
    )
)  # fmt: skip


def account_route(billing: BillingEngine, key_store: KeyStore) -> Route:
    """GET /api/proxy/v1/account: the caller's own balance, spend and recent usage, with the
    customer key (x-api-key or Authorization: Bearer) as the only credential."""

    async def account(request: Request) -> Response:
        presented = presented_key(request.headers)
        info = await key_store.authenticate(presented) if presented else None
        if info is None:
            return _error(401, "authentication_error", "invalid or missing API key")
        summary = await billing.account(info.id)
        if summary is None:
            return _error(401, "authentication_error", "invalid or missing API key")
        return JSONResponse(
            {
                "id": info.id,
                "name": info.name,
                "balance_usd": summary["balance_usd"],
                "spent_usd": summary["spent_usd"],
                "requests": summary["requests"],
                "recent_usage": [customer_usage_json(row) for row in summary["recent_usage"]],
            }
        )

    return Route("/api/proxy/v1/account", account, methods=["GET"])


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
        body = json.loads(await request.body())
        # A lone surrogate ("\ud800") is valid JSON but no UTF-8 text: the database driver
        # failed on it (a 500). Encoding the whole body back finds one anywhere in it.
        json.dumps(body, ensure_ascii=False).encode()
    except (ValueError, RecursionError) as exc:  # UnicodeError is a ValueError
        raise _BadRequest("request body must be a JSON object of UTF-8 text") from exc
    if not isinstance(body, dict):
        raise _BadRequest("request body must be a JSON object")
    return body


def _parse_create(body: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(body) - _CREATE_FIELDS)
    if unknown:
        # A typo such as "credits" would otherwise silently create a key with $0.
        raise _BadRequest(f"unknown field {unknown[0]!r}", unknown[0])
    name = _text(body.get("name"), "name", _MAX_NAME)
    if name is None or not name.strip():
        raise _BadRequest("name: a non-empty string is required", "name")
    return {
        "name": name.strip(),
        "credits_usd": _credits(body.get("credits_usd")),
        "rpm": _limit(body, "rpm"),
        "tpm": _limit(body, "tpm"),
        "account_id": _text(body.get("account_id"), "account_id", 40),
        "allowed_models": _models(body.get("allowed_models")),
        "expires_at": _expiry(body.get("expires_at")),
        "daily_cap_nano": _cap(body, "daily_cap_usd"),
        "monthly_cap_nano": _cap(body, "monthly_cap_usd"),
    }


def _cap(body: dict[str, Any], field: str) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    try:
        return parse_nano(value)
    except MoneyError as exc:
        raise _BadRequest(f"{field}: {exc}", field) from exc


def _models(value: Any) -> list[str] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(m, str) and 0 < len(m) <= 200 for m in value)
    ):
        raise _BadRequest(
            "allowed_models: a non-empty list of model ids, or null", "allowed_models"
        )
    return list(value)


def _expiry(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None:
        raise _BadRequest("expires_at: an ISO 8601 date-time, or null", "expires_at")
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _credits(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        nano = parse_nano(value)
    except MoneyError as exc:
        raise _BadRequest(
            f"credits_usd: {exc}; a non-negative amount up to {usd(MAX_AMOUNT_NANO)} with at "
            "most 9 decimal places",
            "credits_usd",
        ) from exc
    return Decimal(nano).scaleb(-9)


def signed_nano(value: Any, field: str) -> int:
    """A signed USD amount (number or decimal string) as nano-USD; 0 is refused."""
    try:
        return parse_nano(value, signed=True, allow_zero=False)
    except MoneyError as exc:
        raise _BadRequest(
            f"{field}: {exc}; a non-zero amount up to {usd(MAX_AMOUNT_NANO)} with at most 9 "
            "decimal places",
            field,
        ) from exc


def _since(raw: str | None) -> dt.datetime | None:
    try:
        return parse_time(raw, "since") if raw else None
    except PriceError as exc:
        raise _BadRequest(str(exc), "since") from exc


def _limit_param(raw: str | None) -> int:
    if raw is None or raw == "":
        return 100
    # ASCII digits only: str.isdigit() also accepts "²", which int() then refuses.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not 0 < int(raw) <= 1000:
        raise _BadRequest(f"limit: an integer from 1 to {MAX_USAGE_LIMIT}", "limit")
    return int(raw)


def _text(value: Any, field: str, max_len: int) -> str | None:
    """An optional text field the database can store: a string of at most `max_len`
    characters, without NUL (PostgreSQL refuses it) or lone surrogates (not UTF-8)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _BadRequest(f"{field}: must be a string", field)
    if len(value) > max_len:
        raise _BadRequest(f"{field}: at most {max_len} characters", field)
    if "\x00" in value or not _utf8(value):
        raise _BadRequest(f"{field}: must be UTF-8 text without NUL characters", field)
    return value


def _utf8(value: str) -> bool:
    try:
        value.encode()
    except UnicodeError:
        return False
    return True


def _key_id(request: Request) -> str | None:
    """The path's key id, or None for one no key can have (the caller answers 404)."""
    raw = request.path_params["key_id"]
    ok = 0 < len(raw) <= _MAX_ID and raw.isascii() and raw.isprintable()
    return raw if ok else None


def _idempotency_key(request: Request) -> str | None:
    raw = request.headers.get("idempotency-key")
    if raw is None:
        return None
    if not 0 < len(raw) <= _MAX_IDEMPOTENCY_KEY or not (raw.isascii() and raw.isprintable()):
        raise _BadRequest(
            f"Idempotency-Key: 1 to {_MAX_IDEMPOTENCY_KEY} printable ASCII characters",
            "Idempotency-Key",
        )
    return raw


def _limit(body: dict[str, Any], field: str) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
        raise _BadRequest(f"{field}: must be a positive integer or null", field)
    return value


def _not_found(key_id: str) -> Response:
    return _error(404, "not_found_error", f"no key with id {key_id[:80]!r}")


def _error(status: int, kind: str, message: str, param: str | None = None) -> Response:
    error: dict[str, Any] = {"type": kind, "message": message}
    if param is not None:
        error["param"] = param
    return JSONResponse({"error": error}, status_code=status)
