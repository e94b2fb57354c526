"""Admin API: auth (401/403), validation (400 naming the field), key shown only at creation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from tokenrelay.admin.api import admin_routes
from tokenrelay.customers.keys import KeyStore
from tokenrelay.settings import Settings
from tokenrelay.store.db import create_engine, migrate_async

TOKEN = "admin-secret-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def make_settings(admin_token: str | None) -> Settings:
    return Settings(TOKENRELAY_ADMIN_TOKEN=admin_token)  # type: ignore[call-arg]


@pytest.fixture
async def store() -> AsyncIterator[KeyStore]:
    engine = create_engine("sqlite:///:memory:")
    await migrate_async(engine)
    yield KeyStore(engine)
    await engine.dispose()


def client_for(store: KeyStore, admin_token: str | None = TOKEN) -> httpx.AsyncClient:
    app = Starlette(routes=admin_routes(store, settings=make_settings(admin_token)))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin")


async def create(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/admin/v1/keys", json=body, headers=AUTH)


async def test_create_returns_key_once(store: KeyStore) -> None:
    async with client_for(store) as client:
        r = await create(client, name="alice", credits_usd=5, rpm=60, tpm=10_000)
        assert r.status_code == 201, r.text
        body = r.json()
        assert {"id", "key", "name", "balance_usd"} <= set(body)
        assert body["name"] == "alice" and body["balance_usd"] == "5.00"
        assert (body["rpm"], body["tpm"]) == (60, 10_000)
        key = body["key"]
        assert key.startswith("sk-aic-") and body["key_hint"] == f"sk-aic-...{key[-4:]}"
        assert "key_hash" not in body
        assert (await store.authenticate(key)) is not None

        listed = await client.get("/admin/v1/keys", headers=AUTH)
        shown = await client.get(f"/admin/v1/keys/{body['id']}", headers=AUTH)
        assert listed.status_code == 200 and shown.status_code == 200
        for response in (listed, shown):
            assert key not in response.text
            assert key[len("sk-aic-") :] not in response.text
            assert "key_hash" not in response.text
        assert [k["id"] for k in listed.json()["data"]] == [body["id"]]
        assert shown.json()["key_hint"] == body["key_hint"]
        assert "key" not in shown.json()


async def test_credits_as_string_and_defaults(store: KeyStore) -> None:
    async with client_for(store) as client:
        r = await create(client, name="bob", credits_usd="0.000000001")
        assert r.status_code == 201 and r.json()["balance_usd"] == "0.000000001"
        r = await create(client, name="carol", credits_usd=0.1)  # float, taken as written
        assert r.json()["balance_usd"] == "0.10"
        r = await create(client, name="dave")
        body = r.json()
        assert body["balance_usd"] == "0.00" and body["rpm"] is None and body["tpm"] is None


async def test_revoke(store: KeyStore) -> None:
    async with client_for(store) as client:
        created = (await create(client, name="erin")).json()
        r = await client.delete(f"/admin/v1/keys/{created['id']}", headers=AUTH)
        assert r.status_code == 200 and r.json()["revoked_at"] is not None
        assert created["key"] not in r.text
        assert await store.authenticate(created["key"]) is None
        shown = await client.get(f"/admin/v1/keys/{created['id']}", headers=AUTH)
        assert shown.json()["revoked_at"] == r.json()["revoked_at"]


async def test_unknown_key_id_is_404(store: KeyStore) -> None:
    async with client_for(store) as client:
        for method in ("GET", "DELETE"):
            r = await client.request(method, "/admin/v1/keys/key_nope", headers=AUTH)
            assert r.status_code == 404
            assert r.json()["error"]["type"] == "not_found_error"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong-token"},
        {"authorization": f"Basic {TOKEN}"},
        {"authorization": "Bearer "},
        {"authorization": f"Bearer {TOKEN}x"},
    ],
)
async def test_missing_or_wrong_token_is_401(store: KeyStore, headers: dict[str, str]) -> None:
    async with client_for(store) as client:
        for method, path in (
            ("GET", "/admin/v1/keys"),
            ("POST", "/admin/v1/keys"),
            ("GET", "/admin/v1/keys/key_x"),
            ("DELETE", "/admin/v1/keys/key_x"),
        ):
            r = await client.request(method, path, headers=headers, json={"name": "x"})
            assert r.status_code == 401, (method, path)
            error = r.json()["error"]
            assert error["type"] == "authentication_error" and error["message"]
    assert await store.list() == []


async def test_unconfigured_admin_token_is_403(store: KeyStore) -> None:
    async with client_for(store, admin_token=None) as client:
        r = await client.post("/admin/v1/keys", json={"name": "x"}, headers=AUTH)
        assert r.status_code == 403
        assert "TOKENRELAY_ADMIN_TOKEN" in r.json()["error"]["message"]
        r = await client.get("/admin/v1/keys")
        assert r.status_code == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": 5}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "x", "credits_usd": -1}, "credits_usd"),
        ({"name": "x", "credits_usd": "abc"}, "credits_usd"),
        ({"name": "x", "credits_usd": True}, "credits_usd"),
        ({"name": "x", "credits_usd": [1]}, "credits_usd"),
        ({"name": "x", "credits_usd": "0.0000000001"}, "credits_usd"),
        ({"name": "x", "credits_usd": "NaN"}, "credits_usd"),
        ({"name": "x", "rpm": 0}, "rpm"),
        ({"name": "x", "rpm": "10"}, "rpm"),
        ({"name": "x", "tpm": 1.5}, "tpm"),
        ({"name": "x", "tpm": True}, "tpm"),
        ({"name": "x", "credits": 5}, "credits"),
    ],
)
async def test_bad_body_is_400_naming_the_field(
    store: KeyStore, body: dict[str, Any], field: str
) -> None:
    async with client_for(store) as client:
        r = await create(client, **body)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["param"] == field and field in error["message"]
    assert await store.list() == []


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'"name"', b""])
async def test_body_must_be_a_json_object(store: KeyStore, raw: bytes) -> None:
    async with client_for(store) as client:
        r = await client.post(
            "/admin/v1/keys", content=raw, headers={**AUTH, "content-type": "application/json"}
        )
        assert r.status_code == 400
        assert "JSON object" in r.json()["error"]["message"]
