"""Redis follows the ledger through crashes (issue 21, items 1 and 2), on PostgreSQL + Redis
with real `tokenrelay serve` processes and the official SDKs. (SQLite + in-process holds has no
second copy of a balance to drift: a killed process's memory is gone, and the next one loads
from the database.)

- A gateway SIGKILLed between a settlement's commit and its Redis step (the writer's fault
  hook) leaves Redis richer than the database; the next gateway's start, and `ledger verify`,
  replay the missing step: Redis = database again, to the nano.
- `ledger verify` reports a Redis balance the ledger does not explain.
- The holds of a killed replica are reclaimed within seconds (a lease its process renewed
  while their requests ran), not after half an hour.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis

from backends import Backend, backend
from gateway_support import ADMIN_TOKEN, free_port, spawn_gateway
from tokenrelay.billing.holds import DEFAULT_HOLD_TTL_S, RedisHolds

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
TOKENRELAY = Path(sys.executable).with_name("tokenrelay")
NANO = Decimal(10**9)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Backend]:
    with backend("postgres+redis", tmp_path) as b:
        yield b


def gateway_env(store: Backend, **extra: str) -> dict[str, str]:
    assert store.redis_url is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENRELAY_")}
    return {
        **env,
        "TOKENRELAY_DATABASE_URL": store.database_url,
        "TOKENRELAY_REDIS_URL": store.redis_url,
        "TOKENRELAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "TOKENRELAY_EMULATE": "all",
        "TOKENRELAY_LOG_LEVEL": "warning",
        **extra,
    }


def create_key(url: str) -> dict[str, Any]:
    r = httpx.post(
        f"{url}/admin/v1/keys", headers=ADMIN, json={"name": "crash", "credits_usd": "20.00"}
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def balances(store: Backend, url: str, key: dict[str, Any]) -> tuple[int, int]:
    """(Redis balance, database balance) of the key's account, nano-USD."""
    assert store.redis_url is not None
    client = redis.Redis.from_url(store.redis_url)
    cached = client.hget(f"tokenrelay:bal:{{{key['account_id']}}}", "balance")
    client.close()
    r = httpx.get(f"{url}/admin/v1/keys/{key['id']}", headers=ADMIN)
    assert cached is not None
    return int(cached), int(Decimal(r.json()["balance_usd"]) * NANO)


def ledger_verify(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TOKENRELAY), "ledger", "verify"], env=env, capture_output=True, text=True, timeout=60
    )


def answer_and_die(url: str, key: dict[str, Any]) -> None:
    client = openai.OpenAI(api_key=key["key"], base_url=f"{url}/api/proxy/v1", max_retries=0)
    with pytest.raises(openai.APIConnectionError):  # the gateway died under the request
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "[[words:30]] bill me"}]
        )


def test_a_kill_between_commit_and_the_redis_step_is_reconciled(
    store: Backend, tmp_path: Path
) -> None:
    port, log = free_port(), tmp_path / "gw.log"
    url = f"http://127.0.0.1:{port}"
    env = gateway_env(store)
    dying = spawn_gateway(gateway_env(store, TOKENRELAY_FAULT="kill-after-commit"), port, log)
    key = create_key(url)
    answer_and_die(url, key)
    assert dying.wait(timeout=20) == -signal.SIGKILL

    # Read with the hook off (the admin API reads the database; no settlement runs here).
    proc = spawn_gateway(env, port, log)
    try:
        # The next gateway's start replays the step the killed one never took.
        deadline = time.monotonic() + 20
        cached, in_db = balances(store, url, key)
        while cached != in_db and time.monotonic() < deadline:
            time.sleep(0.2)
            cached, in_db = balances(store, url, key)
        assert in_db < 20 * NANO  # the request was billed (committed before the kill)
        assert cached == in_db
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    # Killed once more, with no gateway left to start: `ledger verify` replays it.
    dying = spawn_gateway(gateway_env(store, TOKENRELAY_FAULT="kill-after-commit"), port, log)
    answer_and_die(url, key)
    dying.wait(timeout=20)
    verify = ledger_verify(env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    proc = spawn_gateway(env, port, log)
    try:
        cached, in_db = balances(store, url, key)
        assert cached == in_db < 20 * NANO
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_ledger_verify_reports_a_redis_balance_the_ledger_does_not_explain(
    store: Backend, tmp_path: Path
) -> None:
    port = free_port()
    env = gateway_env(store)
    proc = spawn_gateway(env, port, tmp_path / "gw.log")
    try:
        key = create_key(f"http://127.0.0.1:{port}")
        client = openai.OpenAI(
            api_key=key["key"], base_url=f"http://127.0.0.1:{port}/api/proxy/v1", max_retries=0
        )
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hello"}]
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert ledger_verify(env).returncode == 0
    assert store.redis_url is not None
    client_r = redis.Redis.from_url(store.redis_url)
    client_r.hincrby(f"tokenrelay:bal:{{{key['account_id']}}}", "balance", 1500)
    client_r.close()
    broken = ledger_verify(env)
    assert broken.returncode == 1
    assert key["account_id"] in broken.stdout and "Redis balance" in broken.stdout
    assert "0.0000015" in broken.stdout  # how much richer


def test_a_killed_replicas_holds_are_released_within_seconds(
    store: Backend, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = spawn_gateway(gateway_env(store), port, tmp_path / "gw.log")
    key = create_key(url)
    account = key["account_id"]
    client = httpx.Client(timeout=30)
    # Each stream's line iterator is kept: a dropped one closes its connection, a hang-up the
    # gateway settles, and its hold is gone before any lease matters.
    streams: list[tuple[httpx.Response, Iterator[str]]] = []
    try:
        for i in range(3):  # three streams that stall mid-answer: their holds stay
            request = client.build_request(
                "POST",
                f"{url}/api/proxy/v1/chat/completions",
                headers={"authorization": f"Bearer {key['key']}"},
                json={
                    "model": "gpt-4o",
                    "stream": True,
                    "messages": [{"role": "user", "content": f"[[stall]] {i}"}],
                },
            )
            resp = client.send(request, stream=True)
            assert resp.status_code == 200
            lines = resp.iter_lines()
            next(lines)
            streams.append((resp, lines))
        running = {resp.headers["x-request-id"] for resp, _ in streams}
        _, leases = _leases(store, account)
        assert set(leases) == running
        held = asyncio.run(_held(store, account))
        assert held > 0
        # The live replica renews its running requests' leases before they run out.
        _wait_renewed(store, account, leases)
        assert asyncio.run(_held(store, account)) == held
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        killed_at = time.monotonic()
        for resp, _ in streams:
            resp.close()
        client.close()
    # Nothing released them (no script has purged since), and nothing renews them now: once
    # Redis's clock passes the last lease, which a lease's length after the kill bounds, the
    # holds stop counting.
    now, leases = _leases(store, account)
    assert set(leases) == running
    while now <= max(leases.values()):
        assert time.monotonic() < killed_at + 2 * DEFAULT_HOLD_TTL_S, "renewed after the kill"
        time.sleep(0.2)
        now, leases = _leases(store, account)
    assert asyncio.run(_held(store, account)) == 0


def _leases(store: Backend, account_id: str) -> tuple[int, dict[str, int]]:
    """Redis's clock and the lease end of each of the account's holds, both in ms, read
    together and as stored: reading them purges nothing."""
    assert store.redis_url is not None
    client = redis.Redis.from_url(store.redis_url)
    try:
        pipe = client.pipeline(transaction=True)
        pipe.time()
        pipe.zrange(f"tokenrelay:holdexp:{{{account_id}}}", 0, -1, withscores=True)
        (seconds, micros), ends = pipe.execute()
    finally:
        client.close()
    return seconds * 1000 + micros // 1000, {rid.decode(): int(end) for rid, end in ends}


def _wait_renewed(store: Backend, account_id: str, first: dict[str, int]) -> None:
    """Until each hold's lease has moved past `first`; a hold gone, or Redis's clock past
    its first lease end unrenewed, fails (a live request's hold lapsed)."""
    while True:
        now, leases = _leases(store, account_id)
        assert set(leases) == set(first)
        waiting = [rid for rid, end in first.items() if leases[rid] == end]
        if not waiting:
            return
        assert all(now < first[rid] for rid in waiting), "a running request's lease ran out"
        time.sleep(0.1)


async def _held(store: Backend, account_id: str) -> int:
    from redis.asyncio import Redis

    assert store.redis_url is not None
    client = Redis.from_url(store.redis_url)
    try:

        async def unused(_: str) -> int:
            raise AssertionError("the balance is loaded")

        holds = RedisHolds(client, unused)
        bal = f"tokenrelay:bal:{{{account_id}}}"
        balance = int(await client.hget(bal, "balance"))
        return balance - await holds.available(account_id)
    finally:
        await client.aclose()
