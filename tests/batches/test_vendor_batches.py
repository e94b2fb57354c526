"""Lines for a vendor with a batch API go to it as one vendor batch (OpenAI and xAI: Files +
Batch API; Anthropic: Message Batches; Gemini: batchGenerateContent), through the official
SDKs against the gateway with the emulator behind: each line billed at the batch price (half
the same request's list price, rounded up once), translated per line when the batch's format
is not the vendor's; DeepSeek (no batch API) runs through the gateway; cancel mid-way bills
only the lines the vendor finished; the batch survives a restart while at the vendor."""

from __future__ import annotations

import json
import math
import time
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from counting_emulator import CountingEmulator
from test_batches import (
    MODELS,
    NANO,
    balance_nano,
    chat_body,
    cost_nano,
    half_up,
    key_for,
    start,
    usage,
    wait_anthropic,
    wait_openai,
)

from backends import backend
from gateway_support import RunningGateway, start_gateway
from tokenrelay.catalog import Catalog

VENDOR_OF = {
    "gpt-4o-mini": "openai",
    "claude-haiku-4-5": "anthropic",
    "gemini-2.5-flash": "gemini",
    "grok-3-mini": "xai",
    "deepseek-chat": None,
}
# What each vendor's batch API is called at (the emulator's paths).
BATCH_PATHS = {
    "openai": "/openai/v1/batches",
    "xai": "/xai/v1/batches",
    "anthropic": "/anthropic/v1/messages/batches",
    "gemini": ":batchGenerateContent",
}
CATALOG = Catalog.load()
STANDARD_PATHS = {
    "openai": "/openai/v1/chat/completions",
    "xai": "/xai/v1/chat/completions",
    "anthropic": "/anthropic/v1/messages",
    "gemini": ":generateContent",
    None: "/deepseek/",
}


def vendor_batch_price_nano(row: dict[str, Any]) -> int:
    """What the vendor's batch API bills for a usage row's tokens: its list rates × the model's
    catalog `batch` field, from the exact amount, rounded half-up once to the nano-USD."""
    entry = CATALOG.get(row["model"])
    assert entry is not None and row["cache_read_tokens"] == row["cache_write_tokens"] == 0
    rates = entry.price.for_prompt(row["input_tokens"])
    per_million = row["input_tokens"] * rates.input + row["output_tokens"] * rates.output
    exact = Fraction(per_million * 1000) * Fraction(entry.batch)  # USD/1M tokens -> nano-USD
    return math.floor(exact + Fraction(1, 2))


def requests_since(gw: RunningGateway, mark: int) -> list[str]:
    seen = httpx.get(gw.emulator_url + "/_requests").json()["data"]
    return [f"{r['method']} {r['path']}" for r in seen if r["seq"] > mark]


def mark(gw: RunningGateway) -> int:
    seen = httpx.get(gw.emulator_url + "/_requests").json()["data"]
    return max((r["seq"] for r in seen), default=0)


def direct_costs(gw: RunningGateway, key: str, text: str) -> dict[str, int]:
    client = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1")
    out = {}
    for model in MODELS:
        resp = client.chat.completions.with_raw_response.create(**chat_body(model, text))
        out[model] = int(float(resp.headers["x-tokenrelay-cost-usd"]) * 1e9 + 0.5)
    return out


@pytest.mark.parametrize("model", MODELS)
def test_openai_batch_goes_to_the_vendor_batch_api(gw: RunningGateway, model: str) -> None:
    key, key_id = key_for(gw)
    direct = direct_costs(gw, key, "vendor batch")[model]
    client = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1")
    before = balance_nano(gw, key)
    since = mark(gw)
    bodies = [chat_body(model, "vendor batch") for _ in range(3)]
    batch = start(client, bodies)
    done = wait_openai(client, batch.id)
    assert done.status == "completed" and done.request_counts.completed == 3
    out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    assert sorted(o["custom_id"] for o in out) == ["line-0", "line-1", "line-2"]
    assert all(o["response"]["body"]["choices"][0]["message"]["content"] for o in out)
    calls = requests_since(gw, since)
    vendor = VENDOR_OF[model]
    if vendor is not None:  # one vendor batch, no standard call
        assert sum(1 for c in calls if c.startswith("POST") and BATCH_PATHS[vendor] in c) == 1
        assert not any(c.endswith(STANDARD_PATHS[vendor]) for c in calls), calls
    else:
        assert sum(1 for c in calls if STANDARD_PATHS[None] in c) == 3
    records = usage(gw, key_id)
    lines = [records[f"{batch.id}-{i}"] for i in range(3)]
    assert [cost_nano(r) for r in lines] == [half_up(direct)] * 3
    assert before - balance_nano(gw, key) == 3 * half_up(direct)
    # The upstream cost is what the vendor bills: its batch price for a vendor batch's line,
    # its list price (the customer's direct cost here) for a line the gateway ran.
    vendor_cost = [vendor_batch_price_nano(r) if vendor else direct for r in lines]
    assert [int(Decimal(r["upstream_cost_usd"]) / NANO) for r in lines] == vendor_cost


def test_anthropic_batch_translated_per_line_to_each_vendor(gw: RunningGateway) -> None:
    """An Anthropic-format batch for every vendor's model: each vendor's lines go to its own
    batch API translated (a GPT line as Chat Completions in OpenAI's batch), answers come
    back as Messages."""
    key, key_id = key_for(gw)
    client = anthropic.Anthropic(api_key=key, base_url=gw.proxy)
    direct = {}
    for model in MODELS:
        raw = client.messages.with_raw_response.create(
            model=model, max_tokens=40, messages=[{"role": "user", "content": "translate"}]
        )
        direct[model] = int(float(raw.headers["x-tokenrelay-cost-usd"]) * 1e9 + 0.5)
    since = mark(gw)
    requests: list[Any] = [
        {
            "custom_id": f"r{i}",
            "params": {
                "model": m,
                "max_tokens": 40,
                "messages": [{"role": "user", "content": "translate"}],
            },
        }
        for i, m in enumerate(MODELS)
    ]
    batch = client.messages.batches.create(requests=requests)
    done = wait_anthropic(client, batch.id)
    assert done.request_counts.succeeded == len(MODELS)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    calls = requests_since(gw, since)
    for vendor in ("openai", "anthropic", "gemini", "xai"):
        assert any(c.startswith("POST") and BATCH_PATHS[vendor] in c for c in calls), vendor
    records = usage(gw, key_id)
    for i, model in enumerate(MODELS):
        result = results[f"r{i}"]
        assert result.type == "succeeded" and result.message.type == "message"
        assert cost_nano(records[f"{batch.id}-{i}"]) == half_up(direct[model]), model


def test_cancel_mid_way_at_the_vendor_bills_only_finished_lines(gw: RunningGateway) -> None:
    key, key_id = key_for(gw, "5.00")
    client = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1")
    # 30 lines the vendor answers 0.2 s apart: cancelled once the vendor has some done.
    bodies = [chat_body("claude-haiku-4-5", f"slow {i} [[first-delay:200]]") for i in range(30)]
    before = balance_nano(gw, key)
    batch = start(client, bodies)
    time.sleep(1.5)
    client.batches.cancel(batch.id)
    done = wait_openai(client, batch.id)
    assert done.status == "cancelled"
    finished = done.request_counts.completed
    assert 0 < finished < 30
    errors = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert len(errors) == 30 - finished
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    records = {rid: r for rid, r in usage(gw, key_id).items() if rid.startswith(batch.id)}
    assert len(records) == finished
    spent = sum(cost_nano(r) for r in records.values())
    assert before - balance_nano(gw, key) == spent > 0


def test_vendor_batch_survives_a_restart(tmp_path: Path) -> None:
    """The gateway stops while its lines are at the vendor: the next process polls the same
    vendor batch, settles each line once, and sends nothing again."""
    with backend("sqlite", str(tmp_path)) as b, CountingEmulator() as emulator:
        settings = {
            "database_url": b.database_url,
            "emulator_url": emulator.url,
            "batch_poll_s": 0.1,
        }
        first, thread = start_gateway(tmp_path / "a", **settings)
        key, key_id = key_for(first, "100")
        client = openai.OpenAI(api_key=key, base_url=first.proxy + "/v1")
        bodies = [chat_body("gpt-4o-mini", f"#line-{i} [[first-delay:100]]") for i in range(20)]
        batch = start(client, bodies)
        while sum(emulator.calls.values()) < 20:  # sent to the vendor's batch
            time.sleep(0.05)
        first.server.should_exit = True
        thread.join(timeout=30)
        second, thread = start_gateway(tmp_path / "b", **settings)
        try:
            client = openai.OpenAI(api_key=key, base_url=second.proxy + "/v1")
            done = wait_openai(client, batch.id)
            assert done.status == "completed" and done.request_counts.completed == 20
            assert emulator.calls == {i: 1 for i in range(20)}  # each line sent once
            billed = [r for r in usage(second, key_id) if r.startswith(batch.id)]
            assert sorted(billed) == sorted(f"{batch.id}-{i}" for i in range(20))
        finally:
            second.server.should_exit = True
            thread.join(timeout=30)


def test_vendor_batch_past_its_window_bills_only_what_the_vendor_ran(tmp_path: Path) -> None:
    """Past the completion window, the vendor batch is stopped: lines the vendor answered are
    billed, the others end as expired at no cost."""
    import sqlite3

    gateway, thread = start_gateway(tmp_path, batch_poll_s=0.1)
    try:
        key, key_id = key_for(gateway, "100")
        client = openai.OpenAI(api_key=key, base_url=gateway.proxy + "/v1")
        bodies = [chat_body("claude-haiku-4-5", f"slow {i} [[first-delay:200]]") for i in range(30)]
        batch = start(client, bodies)
        db = sqlite3.connect(tmp_path / "gateway.db")
        query = "SELECT count(*) FROM batch_lines WHERE batch_id = ? AND status = 'at_vendor'"
        for _ in range(200):
            if db.execute(query, (batch.id,)).fetchone()[0] == 30:
                break
            time.sleep(0.05)
        time.sleep(1.5)  # the vendor answers some
        with db:
            db.execute(
                "UPDATE batches SET expires_at = '2000-01-01 00:00:00' WHERE id = ?", (batch.id,)
            )
        done = wait_openai(client, batch.id)
        assert done.status == "expired"
        ran = done.request_counts.completed
        assert 0 < ran < 30 and done.request_counts.failed == 30 - ran
        errors = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
        assert {e["error"]["code"] for e in errors} == {"batch_expired"}
        billed = [r for r in usage(gateway, key_id) if r.startswith(batch.id)]
        assert len(billed) == ran
    finally:
        gateway.server.should_exit = True
        thread.join(timeout=15)


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash"])
def test_a_line_the_vendor_refuses_errors_in_the_client_format_at_no_cost(
    gw: RunningGateway, model: str
) -> None:
    """A vendor batch's errored line comes back as the client format's error (the vendor's
    400 as an Anthropic invalid_request_error here), costs nothing; its neighbours answer."""
    key, key_id = key_for(gw)
    client = anthropic.Anthropic(api_key=key, base_url=gw.proxy)
    texts = ["fine", "refused [[error:400]]"]
    requests: list[Any] = [
        {
            "custom_id": f"r{i}",
            "params": {
                "model": model,
                "max_tokens": 30,
                "messages": [{"role": "user", "content": t}],
            },
        }
        for i, t in enumerate(texts)
    ]
    batch = client.messages.batches.create(requests=requests)
    done = wait_anthropic(client, batch.id)
    assert (done.request_counts.succeeded, done.request_counts.errored) == (1, 1)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["r0"].type == "succeeded"
    assert results["r1"].type == "errored"
    assert results["r1"].error.error.type == "invalid_request_error"
    records = usage(gw, key_id)
    assert cost_nano(records[f"{batch.id}-0"]) > 0
    assert f"{batch.id}-1" not in records or cost_nano(records[f"{batch.id}-1"]) == 0


def test_two_replicas_send_each_batch_as_one_vendor_batch(tmp_path: Path) -> None:
    """Two gateways on one PostgreSQL + Redis, each woken to send queued lines to the vendors:
    a batch's lines are taken whole by one of them (its row locked), never split into two
    vendor batches (each billed, polled and settled on its own)."""
    import asyncio

    import asyncpg

    with backend("postgres+redis", str(tmp_path)) as b, CountingEmulator() as emulator:
        settings = {
            "database_url": b.database_url,
            "redis_url": b.redis_url,
            "emulator_url": emulator.url,
            "batch_poll_s": 0.1,
        }
        one, t1 = start_gateway(tmp_path / "a", **settings)
        two, t2 = start_gateway(tmp_path / "b", **settings)
        try:
            key, _ = key_for(one, "100")
            clients = [openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1") for gw in (one, two)]
            made = [
                start(
                    clients[n % 2], [chat_body("gpt-4o-mini", f"#line-{n}-{i}") for i in range(300)]
                )
                for n in range(6)
            ]
            for batch in made:
                done = wait_openai(clients[0], batch.id)
                assert done.status == "completed" and done.request_counts.completed == 300

            async def vendor_batches_per_batch() -> dict[str, int]:
                conn = await asyncpg.connect(b.database_url)
                try:
                    rows = await conn.fetch(
                        "SELECT batch_id, count(DISTINCT vendor_job) AS n FROM batch_lines "
                        "GROUP BY batch_id"
                    )
                finally:
                    await conn.close()
                return {r["batch_id"]: r["n"] for r in rows}

            assert asyncio.run(vendor_batches_per_batch()) == {batch.id: 1 for batch in made}
        finally:
            for gw, thread in ((one, t1), (two, t2)):
                gw.server.should_exit = True
                thread.join(timeout=30)
