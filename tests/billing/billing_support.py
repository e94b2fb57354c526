"""Helpers for tests/billing: the two storage set-ups (SQLite + in-process state, PostgreSQL +
Redis), a real gateway on either, and the admin calls the tests share.

No conftest.py here on purpose: the suite imports `from conftest import ...` (tests/conftest.py)
in prepend import mode, and a second top-level `conftest` module would shadow it. Each test
module declares its fixtures with the context managers below.

The storage set-ups themselves are tests/backends.py, shared with tests/billing_e2e.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest

from backends import Backend, backend
from gateway_support import ADMIN_TOKEN, RunningGateway, start_gateway

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
# One pooled client for the admin calls: a new httpx client per call costs tens of ms.
http = httpx.Client(timeout=30)


@contextmanager
def running_gateway(
    name: str, tmp_path_factory: pytest.TempPathFactory, **overrides: Any
) -> Iterator[tuple[RunningGateway, Backend]]:
    """A real gateway (uvicorn, emulated vendors) on a fresh `name` backend."""
    with backend(name, tmp_path_factory.mktemp("store")) as store:
        gw, thread = start_gateway(
            tmp_path_factory.mktemp("gw"),
            database_url=store.database_url,
            redis_url=store.redis_url,
            **overrides,
        )
        try:
            yield gw, store
        finally:
            gw.server.should_exit = True
            thread.join(timeout=10)


def cli_env(tmp_path_factory: pytest.TempPathFactory, **extra: str) -> dict[str, str]:
    """Environment for a `tokenrelay` subprocess: no TOKENRELAY_* from the caller, plus `extra`.

    Where PYTHONDONTWRITEBYTECODE is set, every CLI process would recompile the whole import
    tree (~2 s each); compiled bytecode goes to a per-session temp dir instead (never into the
    venv or the checkout), so only the first process pays for it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENRELAY_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.getbasetemp() / "pycache")
    return {**env, **extra}


def create_key(url: str, credits: str = "10.00", **extra: Any) -> tuple[str, str]:
    """(key id, plaintext key) of a new funded key."""
    body = {"name": "billing", "credits_usd": credits, **extra}
    r = http.post(f"{url}/admin/v1/keys", headers=ADMIN, json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["key"]


def usage_records(url: str, key_id: str) -> list[dict[str, Any]]:
    r = http.get(f"{url}/admin/v1/usage", headers=ADMIN, params={"key_id": key_id, "limit": 1000})
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def record_of(url: str, key_id: str, request_id: str) -> dict[str, Any]:
    records = {r["request_id"]: r for r in usage_records(url, key_id)}
    assert request_id in records, (request_id, sorted(records))
    return records[request_id]


def wait_for_record(url: str, key_id: str, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """The record of a request that ended in an error: the error response goes out before its
    (zero-cost) settlement commits, so the record may land a moment after the client saw it."""
    deadline = time.monotonic() + timeout
    while True:
        records = {r["request_id"]: r for r in usage_records(url, key_id)}
        if request_id in records or time.monotonic() > deadline:
            assert request_id in records, (request_id, sorted(records))
            return records[request_id]
        time.sleep(0.05)


def key_summary(url: str, key_id: str) -> dict[str, Any]:
    r = http.get(f"{url}/admin/v1/keys/{key_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return dict(r.json())


def expected_cost(record: dict[str, Any], input_rate: str, output_rate: str) -> Decimal:
    """USD cost of a record without cache tokens at the given per-1M rates, rounded half-up to
    nano-USD exactly as the gateway does."""
    assert record["cache_read_tokens"] == 0 and record["cache_write_tokens"] == 0, record
    nano = (
        Decimal(record["input_tokens"]) * Decimal(input_rate)
        + Decimal(record["output_tokens"]) * Decimal(output_rate)
    ) * 1000
    return nano.to_integral_value(rounding=ROUND_HALF_UP) / Decimal(10**9)


def module_gateway() -> Any:
    """A module-scoped `gw` fixture (assign it: `gw = module_gateway()`): a real gateway on
    each storage set-up in turn."""
    from backends import BACKENDS

    @pytest.fixture(scope="module", params=BACKENDS)
    def gw(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[RunningGateway]:
        with running_gateway(request.param, tmp_path_factory) as (gateway, _store):
            yield gateway

    return gw
