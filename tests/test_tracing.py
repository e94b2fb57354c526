"""OpenTelemetry traces (TOKENRELAY_OTEL=on): a span per proxied request carrying what an
operator looks for (request id, key id — never the key —, model, vendor, deployment, status,
tokens, cost, ttft) and a child span per vendor attempt; off, OpenTelemetry is not even
imported. Spans are read with the SDK's in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from gateway_support import ADMIN_TOKEN, RunningGateway, served


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    """The process's tracer provider (set once per process), exporting into memory."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return memory


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, exporter: InMemorySpanExporter
) -> Iterator[RunningGateway]:
    yield from served(tmp_path_factory.mktemp("otel"), otel="on", upstream_retries=1)


def _key(gw: RunningGateway) -> tuple[str, str]:
    r = httpx.post(
        gw.url + "/admin/v1/keys",
        json={"name": "otel", "credits_usd": "10.00"},
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    return r.json()["key"], r.json()["id"]


def _trace_of(exporter: InMemorySpanExporter, request_id: str) -> tuple[Any, list[Any]]:
    """The request's span and its children. The span ends once the request is settled, just
    after the client read the end of the answer: polled."""
    deadline = time.monotonic() + 5
    while True:
        spans: tuple[ReadableSpan, ...] = exporter.get_finished_spans()
        roots = [
            s
            for s in spans
            if s.name == "tokenrelay.request"
            and (s.attributes or {}).get("tokenrelay.request_id") == request_id
        ]
        if roots or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    [root] = roots
    assert root.context is not None
    children = [
        s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id
    ]
    return root, sorted(children, key=lambda s: s.start_time or 0)


def test_a_request_span_with_its_attempt(
    gw: RunningGateway, exporter: InMemorySpanExporter
) -> None:
    key, key_id = _key(gw)
    gpt = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
    raw = gpt.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "[[words:5]] hi"}]
    )
    done = raw.parse()
    root, attempts = _trace_of(exporter, raw.headers["x-request-id"])
    a = dict(root.attributes or {})
    assert a["tokenrelay.key_id"] == key_id
    assert key not in repr(a) and key not in repr([dict(s.attributes or {}) for s in attempts])
    assert a["tokenrelay.model"] == "gpt-4o" and a["tokenrelay.vendor"] == "openai"
    assert a["tokenrelay.deployment"] == "openai/default"
    assert a["tokenrelay.status"] == "ok" and a["http.response.status_code"] == 200
    assert done.usage is not None
    assert a["tokenrelay.output_tokens"] == done.usage.completion_tokens > 0
    assert a["tokenrelay.input_tokens"] == done.usage.prompt_tokens
    assert int(a["tokenrelay.cost_nano"]) > 0  # type: ignore[call-overload]
    assert float(a["tokenrelay.ttft_ms"]) > 0  # type: ignore[arg-type]
    assert root.status.status_code != StatusCode.ERROR
    [attempt] = attempts
    assert attempt.name == "tokenrelay.upstream_attempt"
    assert dict(attempt.attributes or {}) == {
        "tokenrelay.deployment": "openai/default",
        "http.response.status_code": 200,
    }
    assert root.start_time <= attempt.start_time <= attempt.end_time <= root.end_time  # type: ignore[operator]


def test_a_retried_request_has_a_span_per_attempt(
    gw: RunningGateway, exporter: InMemorySpanExporter
) -> None:
    key, _ = _key(gw)
    claude = anthropic.Anthropic(api_key=key, base_url=gw.proxy, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as caught:
        claude.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=32,
            messages=[{"role": "user", "content": "[[error:503]] hi"}],
        )
    request_id = caught.value.response.headers["x-request-id"]
    root, attempts = _trace_of(exporter, request_id)
    assert root.status.status_code == StatusCode.ERROR
    assert dict(root.attributes or {})["tokenrelay.attempts"] == 2
    assert [dict(s.attributes or {})["http.response.status_code"] for s in attempts] == [503, 503]
    assert all(s.status.status_code == StatusCode.ERROR for s in attempts)


def test_a_stream_span_has_its_ttft(gw: RunningGateway, exporter: InMemorySpanExporter) -> None:
    key, _ = _key(gw)
    claude = anthropic.Anthropic(api_key=key, base_url=gw.proxy, max_retries=0)
    with claude.messages.with_streaming_response.create(
        model="gpt-4o",
        max_tokens=64,
        messages=[{"role": "user", "content": "[[words:6]] hi"}],
        stream=True,
    ) as resp:
        request_id = resp.headers["x-request-id"]
        for _ in resp.iter_lines():
            pass
    root, attempts = _trace_of(exporter, request_id)
    a = dict(root.attributes or {})
    assert a["tokenrelay.stream"] is True and a["tokenrelay.output_tokens"] == 6
    assert float(a["tokenrelay.ttft_ms"]) > 0  # type: ignore[arg-type]
    assert len(attempts) == 1


def test_off_by_default_and_never_imported(tmp_path: Path) -> None:
    code = f"""
import asyncio, sys
from tokenrelay.server.app import create_app
from tokenrelay.settings import Settings

async def main():
    gw = create_app(Settings(database_url="sqlite:///{tmp_path}/t.db", emulate="all"))
    await gw.startup()
    print(gw.relay.tracing, any(m.startswith("opentelemetry") for m in sys.modules))
    await gw.shutdown()

asyncio.run(main())
"""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.stdout.split() == ["None", "False"], out.stdout + out.stderr
