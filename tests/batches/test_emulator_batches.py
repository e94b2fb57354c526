"""The emulator's batch APIs drive the official SDKs' batch helpers unchanged: openai
`client.files` + `client.batches`, anthropic `client.messages.batches`, google-genai
`client.batches` — the same answers as direct calls, cancel mid-way keeping what finished."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from counting_emulator import CountingEmulator


@pytest.fixture(scope="module")
def emu() -> Iterator[CountingEmulator]:
    with CountingEmulator() as e:
        yield e


def _wait(get: Any, done: Any) -> Any:
    for _ in range(300):
        b = get()
        if done(b):
            return b
        time.sleep(0.05)
    raise AssertionError(f"did not end: {b}")


@pytest.mark.parametrize("vendor,model", [("openai", "gpt-4o-mini"), ("xai", "grok-3-mini")])
def test_openai_sdk_files_and_batches(emu: CountingEmulator, vendor: str, model: str) -> None:
    client = openai.OpenAI(api_key="k", base_url=f"{emu.url}/{vendor}/v1")
    bodies = [
        {"model": model, "messages": [{"role": "user", "content": f"q{i}"}]} for i in range(3)
    ]
    rows = [
        {"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions", "body": b}
        for i, b in enumerate(bodies)
    ]
    f = client.files.create(
        file=("in.jsonl", "\n".join(json.dumps(r) for r in rows).encode()), purpose="batch"
    )
    assert client.files.retrieve(f.id).bytes == f.bytes > 0
    batch = client.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "in_progress"
    assert batch.request_counts is not None and batch.request_counts.total == 3
    done = _wait(lambda: client.batches.retrieve(batch.id), lambda b: b.status == "completed")
    assert done.request_counts.completed == 3
    out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    direct = client.chat.completions.create(**bodies[0])  # type: ignore[call-overload]
    first = out[0]["response"]["body"]
    assert out[0]["custom_id"] == "c0"
    assert first["choices"][0]["message"]["content"] == direct.choices[0].message.content
    assert first["usage"]["total_tokens"] == direct.usage.total_tokens  # type: ignore[union-attr]
    assert batch.id in [b.id for b in client.batches.list()]


def _params(text: str) -> Any:
    return {
        "model": "claude-haiku-4-5",
        "max_tokens": 30,
        "messages": [{"role": "user", "content": text}],
    }


def test_anthropic_sdk_message_batches_and_cancel(emu: CountingEmulator) -> None:
    client = anthropic.Anthropic(api_key="k", base_url=f"{emu.url}/anthropic")
    batch = client.messages.batches.create(
        requests=[{"custom_id": f"r{i}", "params": _params(f"q{i}")} for i in range(3)]
    )
    assert batch.processing_status == "in_progress"
    done = _wait(
        lambda: client.messages.batches.retrieve(batch.id),
        lambda b: b.processing_status == "ended",
    )
    assert done.request_counts.succeeded == 3
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    direct = client.messages.create(**_params("q1"))
    r1 = results["r1"]
    assert r1.type == "succeeded"
    assert r1.message.usage.output_tokens == direct.usage.output_tokens
    # Slow lines, cancelled once some ended: those keep their answer, the rest are canceled.
    slow = client.messages.batches.create(
        requests=[
            {"custom_id": f"s{i}", "params": _params(f"s{i} [[first-delay:100]]")}
            for i in range(30)
        ]
    )
    time.sleep(0.5)
    client.messages.batches.cancel(slow.id)
    ended = client.messages.batches.retrieve(slow.id)
    assert ended.processing_status == "ended"
    assert 0 < ended.request_counts.succeeded < 30
    assert ended.request_counts.succeeded + ended.request_counts.canceled == 30
    kinds = [r.result.type for r in client.messages.batches.results(slow.id)]
    assert kinds.count("canceled") == ended.request_counts.canceled
    assert client.messages.batches.delete(slow.id).type == "message_batch_deleted"


def test_genai_sdk_inline_batch(emu: CountingEmulator) -> None:
    genai = pytest.importorskip("google.genai")
    client = genai.Client(api_key="k", http_options={"base_url": f"{emu.url}/gemini"})
    job = client.batches.create(
        model="gemini-2.5-flash",
        src=[{"contents": [{"parts": [{"text": f"q{i}"}], "role": "user"}]} for i in range(2)],
    )
    done = _wait(lambda: client.batches.get(name=job.name), lambda b: b.done)
    assert str(done.state).endswith("SUCCEEDED")
    answers = done.dest.inlined_responses
    assert len(answers) == 2 and all(a.response.text for a in answers)
