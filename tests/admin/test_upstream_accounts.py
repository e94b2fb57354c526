"""Upstream accounts in the console (issue 22, item 4): an owner adds a deployment, tests it
with a live call, changes its weight, drains it and rotates its key, all through the console's
forms on one gateway, and another gateway on the same database (another replica) applies each
change within a second, without a restart. Keys are stored encrypted and never shown back."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).parents[1] / "portal"))
from portal_support import Browser

from backends import BACKENDS, backend
from gateway_support import ADMIN_TOKEN, RunningGateway, free_port, start_gateway, within
from tokenrelay.admin.operators import OperatorStore
from tokenrelay.store.db import create_engine
from tokenrelay.store.tables import upstream_deployments

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
OWNER = ("owner@example.com", "operator password 1")
MODEL = "gpt-4o-mini"


@pytest.fixture(params=BACKENDS)
def two(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """Two gateways on one database: openai deployment `a` (from the catalog) on an emulator."""
    with backend(request.param, tmp_path) as store:
        yield from _two(store, tmp_path, monkeypatch)


def _two(store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    port = free_port()
    emulator = f"http://127.0.0.1:{port}"
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        f'[[deployments.openai]]\nname = "a"\nbase_url = "{emulator}/_d/a/openai/v1"\n'
        'api_key_env = "UPSTREAM_KEY_A"\n'
    )
    monkeypatch.setenv("UPSTREAM_KEY_A", "sk-configured-a")
    common: dict[str, Any] = {
        "database_url": store.database_url,
        "redis_url": store.redis_url,
        "catalog_path": str(catalog),
        "session_secret": "upstream-accounts-secret",
        "secret_key": "upstream-accounts-fernet-secret",
        "emulate": "keyless",
    }
    started = []
    for name, where in (("one", {"emulator_port": port}), ("two", {"emulator_url": emulator})):
        (tmp_path / name).mkdir()
        started.append(start_gateway(tmp_path / name, **where, **common))

    async def seed() -> None:
        engine = create_engine(common["database_url"])
        try:
            await OperatorStore(engine).create(*OWNER, "owner")
        finally:
            await engine.dispose()

    asyncio.run(seed())
    ops = Browser(started[0][0].url)
    assert ops.post("/admin/login", {"email": OWNER[0], "password": OWNER[1]}).url.path == "/admin"
    yield started[0][0], started[1][0], ops, emulator
    for gw, thread in started:
        gw.server.should_exit = True
        thread.join(timeout=10)


def _deployments(gw: RunningGateway) -> dict[str, dict[str, Any]]:
    r = httpx.get(gw.url + "/admin/v1/deployments", headers=ADMIN)
    return {d["id"]: d for d in r.json()["data"] if d["vendor"] == "openai"}


def _keys_seen(emulator: str, n: int, after: int = 0) -> list[tuple[str | None, str | None]]:
    """(deployment, sha256 prefix of the key) of the emulator's latest `n` POSTs (numbered
    after `after`: the log is shared by every emulator of the process)."""
    data = httpx.get(emulator + "/_requests").json()["data"]
    posts = [
        (q.get("deployment"), q.get("bearer_sha256"))
        for q in data
        if q["method"] == "POST" and q["seq"] > after
    ]
    return posts[-n:]


def _mark(emulator: str) -> int:
    return max((q["seq"] for q in httpx.get(emulator + "/_requests").json()["data"]), default=0)


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _ask(gw: RunningGateway, n: int) -> None:
    client = openai.OpenAI(api_key=gw.create_key(), base_url=gw.proxy + "/v1", max_retries=0)
    for i in range(n):
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": f"[[words:3]] {i}"}], max_tokens=16
        )


def test_add_test_drain_and_rotate_reach_the_other_replica(two: Any, tmp_path: Path) -> None:
    one, other, ops, emulator = two
    first, second = "sk-first-key-1111", "sk-second-key-2222"
    mark = _mark(emulator)
    r = ops.post(
        "/admin/upstreams",
        {
            "vendor": "openai",
            "name": "b",
            "base_url": f"{emulator}/_d/b/openai/v1",
            "key": first,
            "weight": "3",
            "region": "eu",
        },
        page="/admin/upstreams",
    )
    assert r.status_code == 200 and r.url.path == "/admin/upstreams", r.text[:300]
    assert "openai/b" in r.text and "…1111" in r.text
    assert first not in r.text  # never shown back
    took = within(1.5, lambda: "openai/b" in _deployments(other))
    print(f"\nadded deployment in service on the other replica after {took:.2f} s")
    assert _deployments(other)["openai/b"]["weight"] == 3

    # Stored encrypted: the database holds no plaintext key.
    async def stored() -> Any:
        engine = create_engine(one.settings.database_url)
        try:
            async with engine.connect() as conn:
                t = upstream_deployments
                return (await conn.execute(select(t).where(t.c.id == "openai/b"))).one()
        finally:
            await engine.dispose()

    row = asyncio.run(stored())
    assert first not in str(tuple(row)) and row.key_last4 == "1111"

    # A live call through it.
    r = ops.post("/admin/upstreams/openai/b/test", {}, page="/admin/upstreams")
    assert "Test of <code>openai/b</code>: 200" in r.text, r.text[r.text.find("<main") :][:1500]
    assert _keys_seen(emulator, 1) == [("b", _sha(first))]

    # Drain `a` through the console: the other replica sends everything to `b`.
    r = ops.post("/admin/upstreams/openai/a/drain", {"drained": "yes"}, page="/admin/upstreams")
    assert r.url.path == "/admin/upstreams"
    within(1.5, lambda: _deployments(other)["openai/a"]["state"] == "drained")
    _ask(other, 3)
    assert _keys_seen(emulator, 3) == [("b", _sha(first))] * 3

    # Rotate b's key on one replica: the other uses the new key, no restart.
    r = ops.post("/admin/upstreams/openai/b/key", {"key": second}, page="/admin/upstreams")
    assert "…2222" in r.text and second not in r.text

    def new_key_used() -> bool:
        _ask(other, 1)
        return _keys_seen(emulator, 1)[0][1] == _sha(second)

    took = within(2.0, new_key_used)
    print(f"rotated key used by the other replica after {took:.2f} s")

    # Weight, then restore `a`.
    r = ops.post(
        "/admin/upstreams/openai/b/settings",
        {"weight": "7", "region": "us", "models": ""},
        page="/admin/upstreams",
    )
    assert r.url.path == "/admin/upstreams"
    within(1.5, lambda: _deployments(other)["openai/b"]["weight"] == 7)
    ops.post("/admin/upstreams/openai/a/drain", {"drained": "no"}, page="/admin/upstreams")
    within(1.5, lambda: _deployments(other)["openai/a"]["state"] == "healthy")

    # Counts summed over both gateways: `b` served the other's requests (the test call is
    # not traffic); shown on this one, which served none of them.
    served = sum(1 for d, _ in _keys_seen(emulator, 64, mark) if d == "b") - 1
    time.sleep(2.5)  # the other's next health report
    page = ops.http.get("/admin/upstreams").text
    row = page.split('data-deployment="openai/b"')[1].split("</tr>")[0]
    assert f'<td data-testid="served">{served}</td>' in row, row
    assert "<td>2</td>" in row  # two processes reported


def test_bad_input_and_plaintext_without_a_secret(two: Any) -> None:
    _one, _other, ops, emulator = two
    base = {"vendor": "openai", "name": "c", "base_url": f"{emulator}/_d/c/openai/v1"}
    for field, value, said in (
        ("vendor", "nobody", "Vendor: not a vendor"),
        ("name", "a/b", "Name: letters"),
        ("base_url", "ftp://x", "Base_url: an http(s) URL"),
        ("key", "short", "Key: the vendor"),
        ("weight", "0", "Weight: a whole number"),
        ("models", "claude-sonnet-4-6", "Models: claude-sonnet-4-6 is not a model of openai"),
    ):
        form = {**base, "key": "sk-valid-key-3333", field: value}
        r = ops.post("/admin/upstreams", form, page="/admin/upstreams")
        assert r.status_code == 400 and said in r.text, (field, r.text[:300])
    r = ops.post("/admin/upstreams", {**base, "name": "a", "key": "env:X"}, page="/admin/upstreams")
    assert r.status_code == 400 and "already has a deployment" in r.text


def test_without_a_secret_key_only_env_references(tmp_path: Path) -> None:
    gw, thread = start_gateway(tmp_path, session_secret="no-secret-key-here")
    try:

        async def seed() -> None:
            engine = create_engine(gw.settings.database_url)
            try:
                await OperatorStore(engine).create(*OWNER, "owner")
            finally:
                await engine.dispose()

        asyncio.run(seed())
        ops = Browser(gw.url)
        ops.post("/admin/login", {"email": OWNER[0], "password": OWNER[1]})
        page = ops.http.get("/admin/upstreams").text
        assert "TOKENRELAY_SECRET_KEY is not set" in page
        form = {"vendor": "openai", "name": "x", "base_url": "https://api.openai.com/v1"}
        r = ops.post("/admin/upstreams", {**form, "key": "sk-plain-key-4444"}, "/admin/upstreams")
        assert r.status_code == 400 and "set TOKENRELAY_SECRET_KEY" in r.text
        r = ops.post("/admin/upstreams", {**form, "key": "env:OPENAI_EU_KEY"}, "/admin/upstreams")
        # The variable is not set here: accepted, shown by its name, not in service.
        assert r.url.path == "/admin/upstreams", r.text[:300]
        assert "env:OPENAI_EU_KEY" in r.text and "not in service" in r.text
        assert "openai/x" not in httpx.get(gw.url + "/admin/v1/deployments", headers=ADMIN).text
    finally:
        gw.server.should_exit = True
        thread.join(timeout=10)
