"""A revoked key stops working everywhere within a second: in a gateway whose key cache is
warm, whether the revoke came from the CLI (another process) or from another replica's admin
API (PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backends import _pg, _run
from gateway_support import ADMIN_TOKEN, RunningGateway, start_gateway

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
# The target is 1 s; the assertion leaves room for a slow CI core, the figure is printed.
LIMIT_S = 2.0


def _create(gw: RunningGateway) -> tuple[str, str]:
    r = httpx.post(
        gw.url + "/admin/v1/keys", headers=ADMIN, json={"name": "rev", "credits_usd": "10"}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"]), str(r.json()["key"])


def _status(client: httpx.Client, gw: RunningGateway, key: str) -> int:
    r = client.post(
        gw.proxy + "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    )
    return r.status_code


def _seconds_until_refused(gw: RunningGateway, key: str, revoked_at: float) -> float:
    with httpx.Client(timeout=10) as client:
        while time.monotonic() - revoked_at < 30:
            if _status(client, gw, key) == 401:
                return time.monotonic() - revoked_at
            time.sleep(0.02)
    raise AssertionError("the revoked key kept working for 30 s")


def test_cli_revoke_reaches_a_running_gateway(tmp_path: Path) -> None:
    gw, thread = start_gateway(tmp_path)
    try:
        key_id, key = _create(gw)
        with httpx.Client(timeout=10) as client:
            assert _status(client, gw, key) == 200  # warm: the key is cached
        env = {**os.environ, "TOKENRELAY_DATABASE_URL": gw.settings.database_url}
        exe = Path(sys.executable).with_name("tokenrelay")
        subprocess.run([str(exe), "keys", "revoke", key_id], env=env, check=True)
        took = _seconds_until_refused(gw, key, time.monotonic())
        print(f"\nCLI revoke → 401 on the gateway after {took:.2f} s")
        assert took < LIMIT_S
    finally:
        gw.server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def two_replicas(tmp_path: Path) -> Iterator[tuple[RunningGateway, RunningGateway]]:
    db = "tokenrelay_revoke_" + uuid.uuid4().hex[:10]
    _run(_pg(f'CREATE DATABASE "{db}"'))
    url = f"postgresql://postgres@127.0.0.1:5432/{db}"
    a, ta = start_gateway(tmp_path / "a", database_url=url)
    b, tb = start_gateway(tmp_path / "b", database_url=url)
    try:
        yield a, b
    finally:
        for gw, t in ((a, ta), (b, tb)):
            gw.server.should_exit = True
            t.join(timeout=10)
        _run(_pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))


def test_admin_revoke_on_one_replica_reaches_the_other(
    two_replicas: tuple[RunningGateway, RunningGateway],
) -> None:
    a, b = two_replicas
    key_id, key = _create(a)
    with httpx.Client(timeout=10) as client:
        assert _status(client, b, key) == 200  # warm on b
    r = httpx.delete(f"{a.url}/admin/v1/keys/{key_id}", headers=ADMIN)
    assert r.status_code == 200
    took = _seconds_until_refused(b, key, time.monotonic())
    print(f"\nadmin revoke on replica a → 401 on replica b after {took:.2f} s")
    assert took < LIMIT_S
