"""A Redis outage under load bills no request the client did not receive.

PostgreSQL + a Redis server of this test's own (the shared one is never stopped). While
clients stream and call both APIs, Redis first hangs (SIGSTOP: calls time out, data survives)
and then dies (SIGKILL + restart: data lost). Every request billed must have been delivered,
admissions during the outage answer 503 in the client's format, and once Redis is back its
balance is level with the ledger.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from backends import PrivateRedis, _pg, _run
from gateway_support import ADMIN_TOKEN, RunningGateway, start_gateway

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
OUTAGE_S = float(os.environ.get("TOKENRELAY_OUTAGE_S", "6"))  # past the 5 s socket timeout
CREDIT = Decimal("100")


@pytest.fixture
def outage_gateway(tmp_path: Path) -> Iterator[tuple[RunningGateway, PrivateRedis, str]]:
    db = "tokenrelay_outage_" + uuid.uuid4().hex[:10]
    _run(_pg(f'CREATE DATABASE "{db}"'))
    server = PrivateRedis(tmp_path)
    server.start()
    gw, thread = start_gateway(
        tmp_path,
        database_url=f"postgresql://postgres@127.0.0.1:5432/{db}",
        redis_url=server.url,
    )
    try:
        yield gw, server, db
    finally:
        gw.server.should_exit = True
        thread.join(timeout=15)
        if server.proc is not None and server.proc.poll() is None:
            server.signal(signal.SIGCONT)
            server.kill()
        _run(_pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))


class Load:
    """Clients calling both APIs, streamed and not, recording what each one received."""

    def __init__(self, gw: RunningGateway, key: str) -> None:
        self.gw, self.key = gw, key
        self.delivered: set[str] = set()
        self.refused: list[tuple[int, Any]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(6)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def _run(self, i: int) -> None:
        api, stream = ("anthropic", "openai")[i % 2], i % 3 == 0
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                # A cut connection is not delivered, so it must not be billed.
                with contextlib.suppress(httpx.HTTPError):
                    self._one(client, api, stream)

    def _one(self, client: httpx.Client, api: str, stream: bool) -> None:
        if api == "anthropic":
            url = self.gw.proxy + "/v1/messages"
            headers = {"x-api-key": self.key, "anthropic-version": "2023-06-01"}
            body: dict[str, Any] = {"model": "claude-haiku-4-5", "max_tokens": 50}
            end = b"message_stop"
        else:
            url = self.gw.proxy + "/v1/chat/completions"
            headers = {"authorization": f"Bearer {self.key}"}
            body = {"model": "gpt-4o-mini", "max_tokens": 50}
            end = b"[DONE]"
        body |= {"messages": [{"role": "user", "content": "[[words:12]]"}], "stream": stream}
        with client.stream("POST", url, headers=headers, json=body) as resp:
            data = resp.read()
        if resp.status_code != 200:
            self.refused.append((resp.status_code, orjson.loads(data)))  # JSON, or this raises
            return
        complete = end in data if stream else bool(orjson.loads(data).get("id"))
        if complete:
            self.delivered.add(resp.headers["x-request-id"])


async def _billed(db: str, key_id: str) -> dict[str, int]:
    """Every usage record of the key, straight from the ledger's database (request id: cost)."""
    import asyncpg

    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{db}")
    try:
        rows = await conn.fetch(
            "SELECT request_id, cost_nano FROM usage_records WHERE key_id = $1", key_id
        )
    finally:
        await conn.close()
    return {r["request_id"]: r["cost_nano"] for r in rows}


def test_redis_outage_bills_only_what_was_delivered(
    outage_gateway: tuple[RunningGateway, PrivateRedis, str],
) -> None:
    gw, server, db = outage_gateway
    r = httpx.post(
        gw.url + "/admin/v1/keys", headers=ADMIN, json={"name": "o", "credits_usd": str(CREDIT)}
    )
    key_id, key = r.json()["id"], r.json()["key"]
    with Load(gw, key) as load:
        time.sleep(1.0)
        server.signal(signal.SIGSTOP)  # hangs: calls time out, the data survives
        time.sleep(OUTAGE_S)
        server.signal(signal.SIGCONT)
        time.sleep(2.0)
        server.kill()  # dies: the data is gone
        time.sleep(OUTAGE_S / 2)
        server.start()
        time.sleep(3.0)
    costs = _run(_billed(db, key_id))
    billed = {request_id for request_id, cost in costs.items() if cost > 0}
    print(
        f"\nredis outage: {len(load.delivered)} delivered, {len(billed)} billed, "
        f"{len(load.refused)} refused, billed but not delivered: {len(billed - load.delivered)}"
    )
    assert billed - load.delivered == set()
    assert load.delivered - billed == set()  # and nothing delivered went unbilled
    assert load.refused, "the outage refused no admission: it did not happen"
    for status, body in load.refused:
        assert status == 503, body
        assert "error" in body
    # Redis, reloaded from the ledger after the restart, agrees with it (no holds left).
    account = httpx.get(gw.proxy + "/v1/account", headers={"x-api-key": key}).json()
    assert Decimal(account["balance_usd"]) == CREDIT - Decimal(sum(costs.values())) / 10**9
    client = redis.Redis.from_url(server.url)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        cached = client.hgetall(f"tokenrelay:bal:{{acct_{key_id}}}")
        if cached and int(cached[b"held"]) == 0:
            break
        time.sleep(0.2)
    assert cached and int(cached[b"held"]) == 0, f"holds left after the load ended: {cached}"
    assert Decimal(int(cached[b"balance"])) / 10**9 == Decimal(account["balance_usd"])


def test_a_credit_during_an_outage_reaches_redis_once_when_it_returns(
    outage_gateway: tuple[RunningGateway, PrivateRedis, str],
) -> None:
    gw, server, _ = outage_gateway
    r = httpx.post(gw.url + "/admin/v1/keys", headers=ADMIN, json={"name": "c", "credits_usd": "1"})
    key_id, key = r.json()["id"], r.json()["key"]
    ok = httpx.post(
        gw.proxy + "/v1/messages",
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        json={
            "model": "claude-haiku-4-5",
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert ok.status_code == 200  # the balance now lives in Redis
    credit = {**ADMIN, "idempotency-key": "outage-credit-1"}
    url = f"{gw.url}/admin/v1/keys/{key_id}/credits"
    server.signal(signal.SIGSTOP)
    try:
        r = httpx.post(url, headers=credit, json={"amount_usd": "5"}, timeout=30)
    finally:
        server.signal(signal.SIGCONT)
    assert r.status_code == 200, r.text  # the ledger has it: the admin hears so
    again = httpx.post(url, headers=credit, json={"amount_usd": "5"}, timeout=30)
    assert again.status_code == 200 and again.json()["balance_usd"] == r.json()["balance_usd"]
    client = redis.Redis.from_url(server.url)
    expected = Decimal(r.json()["balance_usd"]) * 10**9
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if Decimal(int(client.hget(f"tokenrelay:bal:{{acct_{key_id}}}", "balance"))) == expected:
            break
        time.sleep(0.2)
    assert Decimal(int(client.hget(f"tokenrelay:bal:{{acct_{key_id}}}", "balance"))) == expected
    time.sleep(1.5)  # a second replay round must not add it again
    assert Decimal(int(client.hget(f"tokenrelay:bal:{{acct_{key_id}}}", "balance"))) == expected
