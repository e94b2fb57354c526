"""Batches through the official SDKs, on SQLite + in-process holds and PostgreSQL + Redis:
OpenAI's files + batches and Anthropic's Message Batches, on a model of every vendor, each line
billed at the batch price (half the same request's price, rounded up once), the balance down by
exactly the sum, cancel mid-way billing only the lines that ran, 402 before anything is sent."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from gateway_support import ADMIN_TOKEN, RunningGateway, start_gateway

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
# One model of every vendor.
MODELS = ["gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash", "grok-3-mini", "deepseek-chat"]
NANO = Decimal("1e-9")
CHAT = "/v1/chat/completions"


def key_for(gw: RunningGateway, credits: str = "1000.00") -> tuple[str, str]:
    r = httpx.post(
        gw.url + "/admin/v1/keys", headers=ADMIN, json={"name": "batch", "credits_usd": credits}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["key"]), str(r.json()["id"])


def balance_nano(gw: RunningGateway, key: str) -> int:
    r = httpx.get(gw.proxy + "/v1/account", headers={"authorization": f"Bearer {key}"})
    return int(Decimal(r.json()["balance_usd"]) / NANO)


def usage(gw: RunningGateway, key_id: str) -> dict[str, dict[str, Any]]:
    r = httpx.get(
        gw.url + "/admin/v1/usage", headers=ADMIN, params={"key_id": key_id, "limit": 1000}
    )
    return {row["request_id"]: row for row in r.json()["data"]}


def cost_nano(row: dict[str, Any]) -> int:
    return int(Decimal(row["cost_usd"]) / NANO)


def half_up(nano: int) -> int:
    """The batch price of a request costing `nano` at list price: × 0.5, rounded up once."""
    return -((-nano * 500_000) // 1_000_000)


def chat_body(model: str, text: str, max_tokens: int = 40) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
    }


def wait_openai(client: openai.OpenAI, batch_id: str) -> Any:
    for _ in range(300):
        b = client.batches.retrieve(batch_id)
        if b.status in ("completed", "cancelled", "expired", "failed"):
            return b
        time.sleep(0.1)
    raise AssertionError(f"batch {batch_id} did not end: {b}")


def wait_anthropic(client: anthropic.Anthropic, batch_id: str) -> Any:
    for _ in range(300):
        b = client.messages.batches.retrieve(batch_id)
        if b.processing_status == "ended":
            return b
        time.sleep(0.1)
    raise AssertionError(f"message batch {batch_id} did not end: {b}")


def upload(client: openai.OpenAI, endpoint: str, bodies: list[dict[str, Any]]) -> str:
    lines = [
        json.dumps({"custom_id": f"line-{i}", "method": "POST", "url": endpoint, "body": b})
        for i, b in enumerate(bodies)
    ]
    f = client.files.create(file=("requests.jsonl", "\n".join(lines).encode()), purpose="batch")
    assert f.purpose == "batch" and f.bytes > 0
    return f.id


def start(client: openai.OpenAI, bodies: list[dict[str, Any]], endpoint: Any = CHAT) -> Any:
    """A batch of `bodies` (uploaded as its input file) at `endpoint`."""
    return client.batches.create(
        input_file_id=upload(client, endpoint, bodies), endpoint=endpoint, completion_window="24h"
    )


def test_openai_batch_on_every_vendor_costs_half(gw: RunningGateway) -> None:
    key, key_id = key_for(gw)
    client = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1")
    # What each request costs on its own, at list price.
    direct = {}
    for model in MODELS:
        resp = client.chat.completions.with_raw_response.create(**chat_body(model, "price me"))
        direct[model] = int(Decimal(resp.headers["x-tokenrelay-cost-usd"]) / NANO)
    before = balance_nano(gw, key)
    bodies = [chat_body(m, "price me") for m in MODELS] + [chat_body("no-such-model", "x")]
    file_id = upload(client, "/v1/chat/completions", bodies)
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "in_progress" and batch.request_counts.total == len(bodies)
    done = wait_openai(client, batch.id)
    assert done.status == "completed"
    assert (done.request_counts.completed, done.request_counts.failed) == (len(MODELS), 1)
    out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    errors = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert [o["custom_id"] for o in out] == [f"line-{i}" for i in range(len(MODELS))]
    assert all(o["response"]["status_code"] == 200 and o["error"] is None for o in out)
    assert errors[0]["custom_id"] == f"line-{len(MODELS)}"
    assert errors[0]["response"]["status_code"] == 404
    assert errors[0]["response"]["body"]["error"]["code"] == "model_not_found"
    # Each line at the batch price, billed once under a request id that carries the batch id.
    records = usage(gw, key_id)
    total = 0
    for i, model in enumerate(MODELS):
        row = records[f"{batch.id}-{i}"]
        assert row["status"] == "ok"
        assert cost_nano(row) == half_up(direct[model]) > 0, model
        total += cost_nano(row)
    assert before - balance_nano(gw, key) == total


def test_responses_and_embeddings_lines(gw: RunningGateway) -> None:
    key, key_id = key_for(gw)
    client = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1")
    responses = [{"model": m, "input": "summarise this", "max_output_tokens": 30} for m in MODELS]
    batch = start(client, responses, "/v1/responses")
    done = wait_openai(client, batch.id)
    out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    assert [o["response"]["body"]["object"] for o in out] == ["response"] * len(MODELS)
    assert all(o["response"]["body"]["output"] for o in out)
    embeds = [
        {"model": m, "input": ["a", "bb"]}
        for m in ("text-embedding-3-small", "gemini-embedding-001")
    ]
    batch = start(client, embeds, "/v1/embeddings")
    done = wait_openai(client, batch.id)
    assert done.request_counts.completed == 2
    out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    assert [len(o["response"]["body"]["data"]) for o in out] == [2, 2]
    records = usage(gw, key_id)
    assert all(cost_nano(records[f"{batch.id}-{i}"]) > 0 for i in range(2))


def test_anthropic_message_batch_on_every_vendor(gw: RunningGateway) -> None:
    key, key_id = key_for(gw)
    client = anthropic.Anthropic(api_key=key, base_url=gw.proxy)
    direct = {}
    for model in MODELS:
        raw = client.messages.with_raw_response.create(
            model=model, max_tokens=40, messages=[{"role": "user", "content": "price me"}]
        )
        direct[model] = int(Decimal(raw.headers["x-tokenrelay-cost-usd"]) / NANO)
    before = balance_nano(gw, key)
    requests: list[Any] = [
        {
            "custom_id": f"req-{i}",
            "params": {
                "model": m,
                "max_tokens": 40,
                "messages": [{"role": "user", "content": "price me"}],
            },
        }
        for i, m in enumerate(MODELS)
    ]
    requests.append({"custom_id": "bad", "params": {"model": MODELS[0], "messages": "nope"}})
    batch = client.messages.batches.create(requests=requests)
    assert batch.processing_status == "in_progress" and batch.results_url is None
    done = wait_anthropic(client, batch.id)
    assert done.request_counts.succeeded == len(MODELS) and done.request_counts.errored == 1
    assert done.results_url and done.results_url.startswith(gw.proxy)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["bad"].type == "errored"
    assert results["bad"].error.error.type == "invalid_request_error"
    records = usage(gw, key_id)
    total = 0
    for i, model in enumerate(MODELS):
        result = results[f"req-{i}"]
        assert result.type == "succeeded"
        assert any(block.type == "text" and block.text for block in result.message.content)
        row = records[f"{batch.id}-{i}"]
        assert cost_nano(row) == half_up(direct[model]) > 0, model
        total += cost_nano(row)
    assert before - balance_nano(gw, key) == total
    listed = client.messages.batches.list(limit=5)
    assert batch.id in [b.id for b in listed.data]
    assert client.messages.batches.delete(batch.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)


def test_cancel_mid_way_bills_only_finished_lines(gw: RunningGateway) -> None:
    key, key_id = key_for(gw, "5.00")
    client = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1")
    bodies = [
        chat_body(MODELS[i % len(MODELS)], f"slow {i} [[first-delay:400]]") for i in range(48)
    ]
    before = balance_nano(gw, key)
    batch = start(client, bodies)
    for _ in range(200):
        if client.batches.retrieve(batch.id).request_counts.completed:
            break
        time.sleep(0.05)
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    done = wait_openai(client, batch.id)
    assert done.status == "cancelled" and done.cancelled_at is not None
    finished = done.request_counts.completed
    assert 0 < finished < len(bodies)
    errors = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert len(errors) == len(bodies) - finished
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    records = {rid: r for rid, r in usage(gw, key_id).items() if rid.startswith(batch.id)}
    assert len(records) == finished  # cancelled lines never ran: no record, no cost
    spent = sum(cost_nano(r) for r in records.values())
    after = balance_nano(gw, key)
    assert before - after == spent > 0
    # The holds of the cancelled lines came back: a batch needing nearly all of what is left
    # is admitted (402 while any were still held).
    big = client.batches.create(
        input_file_id=upload(
            client, "/v1/chat/completions", [chat_body("claude-opus-4-7", "x", 4_000)] * 60
        ),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    wait_openai(client, big.id)


def test_402_before_anything_is_sent(gw: RunningGateway) -> None:
    key, key_id = key_for(gw, "0.01")
    seq_before = httpx.get(gw.emulator_url + "/_requests").json()
    o = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1")
    bodies = [chat_body("claude-opus-4-7", f"expensive {i}", 64_000) for i in range(3)]
    file_id = upload(o, "/v1/chat/completions", bodies)
    with pytest.raises(openai.APIStatusError) as info:
        o.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert info.value.status_code == 402
    a = anthropic.Anthropic(api_key=key, base_url=gw.proxy)
    with pytest.raises(anthropic.APIStatusError) as ainfo:
        a.messages.batches.create(
            requests=[
                {
                    "custom_id": "x",
                    "params": {
                        "model": "claude-opus-4-7",
                        "max_tokens": 64_000,
                        "messages": [{"role": "user", "content": "hi"}],
                    },
                }
            ]
        )
    assert ainfo.value.status_code == 402
    assert httpx.get(gw.emulator_url + "/_requests").json() == seq_before
    assert o.batches.list().data == []
    assert usage(gw, key_id) == {}


def test_customers_see_only_their_own(gw: RunningGateway) -> None:
    mine, _ = key_for(gw)
    theirs, _ = key_for(gw)
    me = openai.OpenAI(api_key=mine, base_url=gw.proxy + "/v1")
    other = openai.OpenAI(api_key=theirs, base_url=gw.proxy + "/v1")
    file_id = upload(me, "/v1/chat/completions", [chat_body(MODELS[0], "private")])
    batch = me.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    for call in (
        lambda: other.files.retrieve(file_id),
        lambda: other.files.content(file_id),
        lambda: other.batches.retrieve(batch.id),
        lambda: other.batches.cancel(batch.id),
        lambda: other.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        ),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert file_id not in [f.id for f in other.files.list().data]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="sk-aic-nope", base_url=gw.proxy + "/v1").batches.list()
    with pytest.raises(openai.BadRequestError):
        me.files.create(file=("bad.jsonl", b"not json\n"), purpose="batch")
    assert me.files.delete(file_id).deleted
    with pytest.raises(openai.NotFoundError):
        me.files.retrieve(file_id)


def test_file_upload_is_bounded(tmp_path: Path) -> None:
    gateway, thread = start_gateway(tmp_path, batch_max_bytes=1000)
    try:
        client = openai.OpenAI(
            api_key=gateway.create_key(), base_url=gateway.proxy + "/v1", max_retries=0
        )
        line = json.dumps(
            {
                "custom_id": "a",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": chat_body(MODELS[0], "x" * 2000),
            }
        )
        with pytest.raises(openai.APIStatusError) as info:
            client.files.create(file=("big.jsonl", line.encode()), purpose="batch")
        assert info.value.status_code == 413
    finally:
        gateway.server.should_exit = True
        thread.join(timeout=15)


def test_expiry_ends_lines_not_run_and_bills_only_those_that_ran(tmp_path: Path) -> None:
    """Past its completion window, a batch's lines not started end as expired (no cost, holds
    returned); what ran is billed. (DeepSeek: a vendor without a batch API, lines run by the
    gateway; test_vendor_batches covers a vendor batch's expiry.)"""
    import sqlite3

    gateway, thread = start_gateway(tmp_path, batch_concurrency=1)
    try:
        key = gateway.create_key()
        client = openai.OpenAI(api_key=key, base_url=gateway.proxy + "/v1")
        bodies = [chat_body("deepseek-chat", f"slow {i} [[first-delay:300]]") for i in range(40)]
        batch = start(client, bodies)
        while not client.batches.retrieve(batch.id).request_counts.completed:
            time.sleep(0.05)
        with sqlite3.connect(tmp_path / "gateway.db") as db:
            db.execute(
                "UPDATE batches SET expires_at = '2000-01-01 00:00:00' WHERE id = ?", (batch.id,)
            )
        done = wait_openai(client, batch.id)
        assert done.status == "expired" and done.expired_at is not None
        ran = done.request_counts.completed
        assert 0 < ran < len(bodies) and done.request_counts.failed == len(bodies) - ran
        errors = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
        assert {e["error"]["code"] for e in errors} == {"batch_expired"}
    finally:
        gateway.server.should_exit = True
        thread.join(timeout=15)


def test_spend_cap_counts_batch_lines(gw: RunningGateway) -> None:
    r = httpx.post(
        gw.url + "/admin/v1/keys",
        headers=ADMIN,
        json={"name": "capped", "credits_usd": "100", "daily_cap_usd": "0.0001"},
    )
    assert r.status_code == 201, r.text
    client = openai.OpenAI(api_key=r.json()["key"], base_url=gw.proxy + "/v1")
    bodies = [chat_body("claude-opus-4-7", f"capped {i}", 2_000) for i in range(3)]
    batch = start(client, bodies)
    done = wait_openai(client, batch.id)
    assert done.request_counts.completed == 0 and done.request_counts.failed == 3
    errors = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert {e["response"]["status_code"] for e in errors} == {402}
    assert usage(gw, r.json()["id"]) == {}
