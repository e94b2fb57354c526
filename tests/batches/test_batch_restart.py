"""A batch run by the gateway itself (vendor batch APIs off: every line through the gateway
path) survives a restart in the middle of it: the second process runs what the first did not,
no line is lost and none reaches a vendor twice, each is billed once (on SQLite, the embedded
default, and on PostgreSQL + Redis). test_vendor_batches covers lines at a vendor's batch."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from counting_emulator import CountingEmulator

from backends import backend
from gateway_support import ADMIN_TOKEN, start_gateway

LINES = 120
MODELS = ["gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash", "grok-3-mini", "deepseek-chat"]
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
NANO = Decimal("1e-9")


def start_batch(client: openai.OpenAI) -> Any:
    """A batch of LINES slow lines over every vendor, each marked for the counting emulator."""
    rows = [
        {
            "custom_id": f"c{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": MODELS[i % len(MODELS)],
                "max_tokens": 30,
                "messages": [{"role": "user", "content": f"#line-{i} [[first-delay:40]]"}],
            },
        }
        for i in range(LINES)
    ]
    data = "\n".join(json.dumps(r) for r in rows).encode()
    f = client.files.create(file=("in.jsonl", data), purpose="batch")
    return client.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
    )


@pytest.mark.parametrize("store", ["sqlite", "postgres+redis"])
def test_restart_in_the_middle_loses_nothing_and_runs_nothing_twice(
    store: str, tmp_path: Path
) -> None:
    with backend(store, str(tmp_path)) as b, CountingEmulator() as emulator:
        settings = {
            "database_url": b.database_url,
            "redis_url": b.redis_url,
            "emulator_url": emulator.url,
            "batch_concurrency": 8,
            "batch_vendor_apis": False,
        }
        first, thread = start_gateway(tmp_path / "a", **settings)
        r = httpx.post(
            first.url + "/admin/v1/keys", headers=ADMIN, json={"name": "r", "credits_usd": "100"}
        )
        key, key_id = r.json()["key"], r.json()["id"]
        client = openai.OpenAI(api_key=key, base_url=first.proxy + "/v1")
        batch = start_batch(client)
        while client.batches.retrieve(batch.id).request_counts.completed < LINES // 4:
            time.sleep(0.05)
        first.server.should_exit = True  # graceful stop, lines still pending
        thread.join(timeout=30)
        assert sum(emulator.calls.values()) < LINES
        second, thread = start_gateway(tmp_path / "b", **settings)
        try:
            client = openai.OpenAI(api_key=key, base_url=second.proxy + "/v1")
            for _ in range(600):
                done = client.batches.retrieve(batch.id)
                if done.status == "completed":
                    break
                time.sleep(0.1)
            assert done.status == "completed" and done.request_counts.completed == LINES
            out = client.files.content(done.output_file_id).text.splitlines()
            assert sorted(json.loads(x)["custom_id"] for x in out) == sorted(
                f"c{i}" for i in range(LINES)
            )
            assert emulator.calls == {i: 1 for i in range(LINES)}  # each line sent once
            usage = httpx.get(
                second.url + "/admin/v1/usage",
                headers=ADMIN,
                params={"key_id": key_id, "limit": 1000},
            ).json()["data"]
            billed = [u for u in usage if u["request_id"].startswith(batch.id)]
            assert sorted(u["request_id"] for u in billed) == sorted(
                f"{batch.id}-{i}" for i in range(LINES)
            )
            spent = sum(Decimal(u["cost_usd"]) for u in billed)
            balance = httpx.get(
                second.proxy + "/v1/account", headers={"authorization": f"Bearer {key}"}
            ).json()["balance_usd"]
            assert Decimal("100") - Decimal(balance) == spent > 0
        finally:
            second.server.should_exit = True
            thread.join(timeout=30)


def test_two_replicas_share_a_batch_each_line_once(tmp_path: Path) -> None:
    """Two gateways on one PostgreSQL + Redis claim lines of the same batch (SKIP LOCKED):
    every line runs once, on one of them."""
    with backend("postgres+redis", str(tmp_path)) as b, CountingEmulator() as emulator:
        settings = {
            "database_url": b.database_url,
            "redis_url": b.redis_url,
            "emulator_url": emulator.url,
            "batch_concurrency": 4,
            "batch_vendor_apis": False,
        }
        one, t1 = start_gateway(tmp_path / "a", **settings)
        two, t2 = start_gateway(tmp_path / "b", **settings)
        try:
            r = httpx.post(
                one.url + "/admin/v1/keys", headers=ADMIN, json={"name": "r", "credits_usd": "100"}
            )
            client = openai.OpenAI(api_key=r.json()["key"], base_url=one.proxy + "/v1")
            batch = start_batch(client)
            other = openai.OpenAI(api_key=client.api_key, base_url=two.proxy + "/v1")
            for _ in range(600):
                done = other.batches.retrieve(batch.id)
                if done.status == "completed":
                    break
                time.sleep(0.1)
            assert done.request_counts.completed == LINES
            assert emulator.calls == {i: 1 for i in range(LINES)}
        finally:
            for gw, thread in ((one, t1), (two, t2)):
                gw.server.should_exit = True
                thread.join(timeout=30)
