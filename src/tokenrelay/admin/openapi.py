"""OpenAPI 3.1 document of the admin API, served at GET /admin/v1/openapi.json.

Hand-written so it says what admin.py accepts and answers, field by field; tests/fuzz feeds it
to schemathesis, which checks every answer against it (and that none is a 5xx).
"""

from __future__ import annotations

from typing import Any

_USD_OUT = {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{2,9}$"}
_RATE_OUT = {"type": "string"}
_INT_OR_NULL = {"type": ["integer", "null"]}
_TIME_OUT = {"type": "string"}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {
                "type": {"type": "string"},
                "message": {"type": "string"},
                "param": {"type": "string"},
            },
        }
    },
}
_KEY: dict[str, Any] = {
    "type": "object",
    "required": ["id", "name", "key_hint", "balance_usd", "rpm", "tpm", "created_at"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "key_hint": {"type": "string"},
        "balance_usd": _USD_OUT,
        "spent_usd": _USD_OUT,
        "requests": {"type": "integer", "minimum": 0},
        "rpm": _INT_OR_NULL,
        "tpm": _INT_OR_NULL,
        "created_at": _TIME_OUT,
        "revoked_at": {"type": ["string", "null"]},
        "account_id": {"type": "string"},
        "allowed_models": {"type": ["array", "null"], "items": {"type": "string"}},
        "expires_at": {"type": ["string", "null"]},
        "daily_cap_usd": {"type": ["string", "null"]},
        "monthly_cap_usd": {"type": ["string", "null"]},
    },
}
# The creation's answer is the only one with the key itself.
_CREATED_KEY = _KEY | {
    "required": [*_KEY["required"], "key"],
    "properties": {**_KEY["properties"], "key": {"type": "string"}},
}
_RATES = ("input", "output", "cache_read", "cache_write", "cache_write_1h")
# Money in: a JSON number or a decimal string, exponent form included ("1E+2" is 100). The
# bounds (amounts: at most 1e9 USD, 9 decimals; rates: 0 to 100000 per 1M tokens, 9 decimals)
# are the server's to enforce with a 400: left out here, so the fuzzer sends "1e999999" too.
_DECIMAL_TEXT = r"^\s*[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"
_USD_IN = {
    "description": "USD: at most 1000000000 in magnitude, at most 9 decimals",
    "anyOf": [{"type": "string", "pattern": _DECIMAL_TEXT}, {"type": "number"}],
}
_RATE_IN = {
    "description": "USD per 1M tokens: 0 to 100000, at most 9 decimals",
    "anyOf": [{"type": "string", "pattern": _DECIMAL_TEXT}, {"type": "number"}],
}
_TIER_IN = {
    "type": "object",
    "required": ["above_prompt_tokens", "input", "output"],
    "additionalProperties": False,
    "properties": {
        "above_prompt_tokens": {"type": "integer", "minimum": 0, "maximum": 1_000_000_000},
        **{f: _RATE_IN for f in _RATES},
    },
}
_PRICE_VERSION = {
    "type": "object",
    "required": ["id", "model", "effective_from", *_RATES, "tiers", "created_at", "note"],
    "properties": {
        "id": {"type": "string"},
        "model": {"type": "string"},
        "effective_from": _TIME_OUT,
        **{f: _RATE_OUT for f in _RATES},
        "tiers": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["above_prompt_tokens", *_RATES],
                "properties": {
                    "above_prompt_tokens": {"type": "integer"},
                    **{f: _RATE_OUT for f in _RATES},
                },
            },
        },
        "created_at": _TIME_OUT,
        "note": {"type": ["string", "null"]},
    },
}
_USAGE = {
    "type": "object",
    "required": ["request_id", "key_id", "model", "cost_usd", "status", "started_at"],
    "properties": {
        "cost_usd": _USD_OUT,
        "input_tokens": {"type": "integer"},
        # The client's session (Claude Code's X-Claude-Code-Session-Id, Codex's session-id).
        "session_id": {"type": ["string", "null"]},
    },
}
_KEY_ID = {
    "name": "key_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _list_of(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["object", "data"],
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": item}},
    }


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _responses(ok: str, schema: dict[str, Any], *errors: int) -> dict[str, Any]:
    out = {ok: _json(schema, "success")}
    out["401"] = _json(_ERROR, "missing or wrong admin token")
    out["403"] = _json(_ERROR, "admin API disabled (no TOKENRELAY_ADMIN_TOKEN)")
    out["429"] = _json(_ERROR, "too many wrong admin tokens from this address (Retry-After)")
    for status in errors:
        out[str(status)] = _json(_ERROR, "see error.message")
    return out


def admin_openapi(
    *,
    billing: bool = True,
    models: list[str] | None = None,
    deployments: list[str] | None = None,
) -> dict[str, Any]:
    """The document; without `billing` only the key routes exist (as in admin_routes).
    `models`: the catalog's ids, the only ones a price can be set for. `deployments`: the
    upstream deployments' ids (`<vendor>/<name>`); None when the routes do not exist."""
    paths: dict[str, Any] = {
        "/admin/v1/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": _responses("200", {"type": "object"}),
            }
        },
        "/admin/v1/keys": {
            "post": {
                "summary": "Create a key; the response is the only one that shows it",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1, "maxLength": 200},
                            "credits_usd": _USD_IN,
                            "rpm": {"type": ["integer", "null"], "minimum": 1},
                            "tpm": {"type": ["integer", "null"], "minimum": 1},
                            # Join an existing account (then no credits_usd: credit the
                            # account); without it the key gets an account of its own.
                            "account_id": {"type": ["string", "null"], "maxLength": 40},
                            "allowed_models": {
                                "type": ["array", "null"],
                                "minItems": 1,
                                "items": {"type": "string", "minLength": 1, "maxLength": 200},
                            },
                            "expires_at": {"type": ["string", "null"], "format": "date-time"},
                            "daily_cap_usd": _USD_IN,
                            "monthly_cap_usd": _USD_IN,
                        },
                    }
                ),
                "responses": _responses("201", _CREATED_KEY, 400, 404),
            },
            "get": {"summary": "Every key", "responses": _responses("200", _list_of(_KEY))},
        },
        "/admin/v1/keys/{key_id}": {
            "parameters": [_KEY_ID],
            "get": {"summary": "One key", "responses": _responses("200", _KEY, 404)},
            "delete": {"summary": "Revoke a key", "responses": _responses("200", _KEY, 404)},
        },
    }
    if billing:
        paths |= _billing_paths(models)
    if deployments is not None:
        paths |= _deployment_paths(deployments)
    paths |= _account_paths()
    return {
        "openapi": "3.1.0",
        "info": {"title": "tokenrelay admin API", "version": "1"},
        "components": {"securitySchemes": {"admin": {"type": "http", "scheme": "bearer"}}},
        "security": [{"admin": []}],
        "paths": paths,
    }


def _billing_paths(models: list[str] | None) -> dict[str, Any]:
    model = {"type": "string", "minLength": 1} | ({"enum": models} if models else {})
    credit = {
        "type": "object",
        "required": ["id", "amount_usd", "balance_usd"],
        "properties": {"id": {"type": "string"}, "amount_usd": _USD_OUT, "balance_usd": _USD_OUT},
    }
    return {
        "/admin/v1/keys/{key_id}/credits": {
            "parameters": [_KEY_ID],
            "post": {
                "summary": "Credit (or, negative, adjust) a key's balance",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "A retry with the same key and body replays the first "
                        "answer; with another body it is a 409",
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 200,
                            "pattern": "^[ -~]+$",
                        },
                    }
                ],
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["amount_usd"],
                        "additionalProperties": False,
                        "properties": {
                            "amount_usd": _USD_IN,
                            "note": {"type": ["string", "null"], "maxLength": 500},
                        },
                    }
                ),
                "responses": _responses("200", credit, 400, 404, 409),
            },
        },
        "/admin/v1/usage": {
            "get": {
                "summary": "Usage records, newest first",
                "parameters": [
                    {"name": "key_id", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "since",
                        "in": "query",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                ],
                "responses": _responses("200", _list_of(_USAGE), 400),
            }
        },
        "/admin/v1/prices": {
            "get": {
                "summary": "Every price version",
                "parameters": [{"name": "model", "in": "query", "schema": {"type": "string"}}],
                "responses": _responses("200", _list_of(_PRICE_VERSION), 400),
            },
            "post": {
                "summary": "Add a price version (USD per 1M tokens)",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["model", "input", "output"],
                        "additionalProperties": False,
                        "properties": {
                            "model": model,
                            **{f: _RATE_IN for f in _RATES},
                            "tiers": {"type": ["array", "null"], "items": _TIER_IN},
                            "effective_from": {"type": ["string", "null"], "format": "date-time"},
                            "note": {"type": ["string", "null"], "maxLength": 500},
                        },
                    }
                ),
                "responses": _responses("201", _PRICE_VERSION, 400),
            },
        },
        "/admin/v1/ledger/verify": {
            "get": {
                "summary": "Balances against the ledger, debits against usage records",
                "responses": _responses(
                    "200",
                    {
                        "type": "object",
                        "required": ["ok", "problems"],
                        "properties": {
                            "ok": {"type": "boolean"},
                            "problems": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                ),
            }
        },
    }


_DEPLOYMENT = {
    "type": "object",
    "required": ["id", "vendor", "name", "state", "weight", "in_flight", "served", "failures"],
    "properties": {
        "id": {"type": "string"},
        "vendor": {"type": "string"},
        "name": {"type": "string"},
        "base_url": {"type": "string"},
        "emulated": {"type": "boolean"},
        "weight": {"type": "integer", "minimum": 1},
        "region": {"type": ["string", "null"]},
        "models": {"type": ["array", "null"], "items": {"type": "string"}},
        "state": {"enum": ["healthy", "cooling", "probing", "removed", "drained"]},
        "cooling_for_s": {"type": ["number", "null"]},
        "removed_reason": {"type": ["string", "null"]},
        "in_flight": {"type": "integer", "minimum": 0},
        "served": {"type": "integer", "minimum": 0},
        "consecutive_failures": {"type": "integer", "minimum": 0},
        "failures": {"type": "integer", "minimum": 0},
        "last_error": {"type": ["string", "null"]},
    },
}


def _deployment_paths(ids: list[str]) -> dict[str, Any]:
    # The known vendors and names (a fuzzer then also drains and restores real ones); anything
    # else is a 404.
    parts = [i.partition("/") for i in ids]
    params = [
        {
            "name": field,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1}
            | ({"enum": sorted({p[at] for p in parts})} if parts else {}),
        }
        for field, at in (("vendor", 0), ("name", 2))
    ]

    def action(summary: str) -> dict[str, Any]:
        return {
            "parameters": params,
            "post": {"summary": summary, "responses": _responses("200", _DEPLOYMENT, 404)},
        }

    return {
        "/admin/v1/deployments": {
            "get": {
                "summary": "Every upstream deployment and its state",
                "responses": _responses("200", _list_of(_DEPLOYMENT)),
            }
        },
        "/admin/v1/deployments/{vendor}/{name}/drain": action(
            "Take a deployment out (every worker and replica)"
        ),
        "/admin/v1/deployments/{vendor}/{name}/restore": action("Put a deployment back in"),
    }


def _account_paths() -> dict[str, Any]:
    account_id = {
        "name": "account_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 40},
    }
    answer = {
        "type": "object",
        "required": ["id", "disabled"],
        "properties": {"id": {"type": "string"}, "disabled": {"type": "boolean"}},
    }
    reason = _body(
        {
            "type": "object",
            "required": ["reason"],
            "additionalProperties": False,
            "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 500}},
        }
    )

    def action(summary: str) -> dict[str, Any]:
        return {
            "parameters": [account_id],
            "post": {
                "summary": summary,
                "requestBody": reason,
                "responses": _responses("200", answer, 400, 404),
            },
        }

    return {
        "/admin/v1/accounts/{account_id}/disable": action(
            "Disable an account: every key refused at once on every replica, sign-ins end"
        ),
        "/admin/v1/accounts/{account_id}/enable": action("Enable an account again"),
    }
