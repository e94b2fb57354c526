"""Three `tokenrelay serve` replicas on one PostgreSQL and one Redis, 500 concurrent mixed
requests, one replica SIGKILLed mid-run and restarted.

What must hold afterwards:
- the ledger verifies (every balance the sum of its ledger, one debit per usage record);
- every request a client received in full (its stream's end event, or a 200 body) is billed
  exactly once, under the request id the client was given;
- nothing else is billed, except requests the SIGKILL cut (sent to the killed replica, not
  received in full). "Billed at most what was generated" for those: a cut request is billed no
  more than the same request delivered in full (the emulator answers one prompt identically
  every time, so each model's delivered records are the yardstick), or not at all.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from backends import PrivateRedis, backend
from gateway_support import ADMIN_TOKEN, free_port

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
MODELS = ["claude-sonnet-4-6", "gpt-4o", "gemini-2.5-flash", "grok-4.3", "deepseek-chat"]
# Streams last ~1 s (20 words, 50 ms apart): the kill lands in the middle of many.
PROMPT = "Tell me about replicas [[words:20]] [[delay:50]]"
TOTAL = 500
KILLED = 1  # index of the replica that is SIGKILLed
KILL_AFTER = 120  # delivered responses before the kill


@dataclass
class Outcome:
    replica: int
    request_id: str | None = None
    delivered: bool = False
    cut: bool = False  # reached a replica, not received in full
    why: str = ""  # what a cut request got (its status and the start of its body, or the error)


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(log.read_text()[-3000:])


class Replica:
    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        exe = Path(sys.executable).with_name("tokenrelay")
        self.proc = subprocess.Popen(
            [exe, "serve", "--port", str(self.port)],
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self) -> None:
        assert self.proc is not None
        _wait_http(self.url + "/healthz", self.proc, self.log)

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def wait_stopped(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[Replica]]:
    redis = PrivateRedis(tmp_path)
    redis.start()
    emu_port = free_port()
    emu_log = tmp_path / "emulator.log"
    emulator = subprocess.Popen(
        [sys.executable, "-m", "tokenrelay.emulator", "--port", str(emu_port)],
        stdout=emu_log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        with backend("postgres+redis", tmp_path) as store:
            env = {
                **os.environ,
                "TOKENRELAY_DATABASE_URL": store.database_url,
                "TOKENRELAY_REDIS_URL": redis.url,
                "TOKENRELAY_ADMIN_TOKEN": ADMIN_TOKEN,
                "TOKENRELAY_EMULATE": "all",
                "TOKENRELAY_EMULATOR_URL": f"http://127.0.0.1:{emu_port}",
                "TOKENRELAY_LOG_LEVEL": "warning",
            }
            replicas = [Replica(env, free_port(), tmp_path / f"gw{i}.log") for i in range(3)]
            try:
                # Started together, as a deployment's replicas are (the first to migrate the
                # fresh database holds a lock the others wait on), while the emulator starts:
                # one start's wait out of the test's budget, not four in a row.
                for r in replicas:
                    r.spawn()
                _wait_http(f"http://127.0.0.1:{emu_port}/", emulator, emu_log)
                for r in replicas:
                    r.wait_ready()
                yield replicas
            finally:
                # Stopped together, and before their database is dropped: replicas that lose
                # it keep retrying their writes through the shutdown grace.
                for r in replicas:
                    r.terminate()
                for r in replicas:
                    r.wait_stopped()
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
        redis.kill()


async def _one(
    client: httpx.AsyncClient, replicas: list[Replica], key: str, i: int, out: Outcome
) -> None:
    model = MODELS[i % len(MODELS)]
    anthropic_api, stream = bool(i // 5 % 2), bool(i // 10 % 2)
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": stream,
    }
    if anthropic_api:
        path, end = "/api/proxy/v1/messages", b"event: message_stop"
        body["max_tokens"] = 200
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    else:
        path, end = "/api/proxy/v1/chat/completions", b"data: [DONE]"
        headers = {"authorization": f"Bearer {key}"}
    for attempt in range(40):
        # Like a load balancer: a replica that refuses the connection is skipped.
        replica = (out.replica + attempt) % len(replicas)
        try:
            async with client.stream(
                "POST", replicas[replica].url + path, json=body, headers=headers
            ) as resp:
                out.replica = replica
                out.request_id = resp.headers.get("x-request-id")
                data = b"".join([c async for c in resp.aiter_bytes()])
        except httpx.ConnectError:
            await asyncio.sleep(0.1)
            continue
        except httpx.HTTPError as exc:
            out.replica, out.cut, out.why = replica, True, repr(exc)
            return
        whole = resp.status_code == 200 and (not stream or end in data)
        error_event = b"event: error" in data or b'"error"' in data.split(b"data: [DONE]")[0]
        out.delivered = whole and not (stream and error_event)
        out.cut = not out.delivered
        if out.cut:
            out.why = f"{resp.status_code} {data[-300:]!r}"
        return
    raise AssertionError(f"request {i}: no replica accepted it")


async def _run(replicas: list[Replica], key: str) -> list[Outcome]:
    outcomes = [Outcome(replica=i % len(replicas)) for i in range(TOTAL)]
    limits = httpx.Limits(max_connections=TOTAL + 50, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        tasks = [
            asyncio.create_task(_one(client, replicas, key, i, o)) for i, o in enumerate(outcomes)
        ]
        while sum(o.delivered for o in outcomes) < KILL_AFTER:
            await asyncio.sleep(0.02)
        replicas[KILLED].kill()
        await asyncio.sleep(0.5)
        await asyncio.to_thread(replicas[KILLED].start)
        await asyncio.gather(*tasks)
    return outcomes


def test_three_replicas_bill_exactly_once_across_a_sigkill(cluster: list[Replica]) -> None:
    started = time.monotonic()
    url = cluster[0].url
    r = httpx.post(
        url + "/admin/v1/keys", headers=ADMIN, json={"name": "replicas", "credits_usd": "500.00"}
    )
    assert r.status_code == 201, r.text
    key_id, key = r.json()["id"], r.json()["key"]

    outcomes = asyncio.run(_run(cluster, key))

    cut = [o for o in outcomes if o.cut]
    delivered = {o.request_id for o in outcomes if o.delivered}
    assert all(o.request_id for o in outcomes if o.delivered)
    assert len(delivered) == sum(o.delivered for o in outcomes)  # ids are unique
    left_alone = [(o.replica, o.request_id, o.why) for o in cut if o.replica != KILLED]
    assert not left_alone, f"requests failed on a replica left alone: {left_alone}"
    assert len(delivered) + len(cut) == TOTAL
    assert len(delivered) >= TOTAL // 2, len(delivered)

    # The restarted replica answers the checks: it rejoined the shared state.
    check = cluster[KILLED].url
    verify = httpx.get(check + "/admin/v1/ledger/verify", headers=ADMIN, timeout=60).json()
    assert verify == {"ok": True, "problems": []}
    records = httpx.get(
        check + "/admin/v1/usage",
        headers=ADMIN,
        params={"key_id": key_id, "limit": 1000},
        timeout=60,
    ).json()
    records = list(records["data"] if isinstance(records, dict) else records)
    ids = [rec["request_id"] for rec in records]
    assert len(ids) == len(set(ids)), "a request was billed twice"
    assert delivered <= set(ids), "a delivered request was not billed"

    extra = [rec for rec in records if rec["request_id"] not in delivered]
    cut_ids = {o.request_id for o in cut}
    assert len(extra) <= len(cut)
    yardstick: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        if rec["request_id"] in delivered:
            yardstick[rec["model"]].append(rec)
    for rec in extra:
        # Unknown ids: unary requests settled just before the kill, before their headers left.
        assert rec["request_id"] in cut_ids or None in cut_ids, rec
        full = yardstick[rec["model"]]
        assert rec["output_tokens"] <= max(f["output_tokens"] for f in full), rec
        assert Decimal(rec["cost_usd"]) <= max(Decimal(f["cost_usd"]) for f in full), rec

    spent = sum(Decimal(rec["cost_usd"]) for rec in records)
    summary = httpx.get(f"{check}/admin/v1/keys/{key_id}", headers=ADMIN).json()
    assert Decimal(summary["balance_usd"]) == Decimal("500.00") - spent
    print(
        f"\n{len(delivered)} delivered, {len(cut)} cut by the kill, {len(extra)} of those "
        f"billed; {time.monotonic() - started:.1f} s"
    )
