"""What an operator's monitoring reads: /metrics (Prometheus) and /readyz."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import httpx
import openai

from backends import PrivateRedis, _pg, _run
from gateway_support import RunningGateway, metric_samples, start_gateway


def test_metrics_count_requests_tokens_and_cost(gateway: RunningGateway, api_key: str) -> None:
    client = openai.OpenAI(api_key=api_key, base_url=gateway.proxy + "/v1", max_retries=0)
    before = metric_samples(gateway.url)
    done = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "[[words:7]]"}]
    )
    after = metric_samples(gateway.url)
    labels = (("api", "openai"), ("model", "gpt-4o-mini"), ("status", "ok"), ("vendor", "openai"))
    key = ("tokenrelay_requests_total", labels)
    assert after[key] - before.get(key, 0) == 1
    out = ("tokenrelay_tokens_total", (("kind", "output"), ("model", "gpt-4o-mini")))
    assert done.usage is not None
    assert after[out] - before.get(out, 0) == done.usage.completion_tokens
    cost = ("tokenrelay_cost_usd_total", (("model", "gpt-4o-mini"),))
    assert after[cost] > before.get(cost, 0)
    assert ("tokenrelay_requests_in_flight", ()) in after


def test_ready_when_everything_answers(gateway: RunningGateway) -> None:
    r = httpx.get(gateway.url + "/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["database"] == "ok"
    assert httpx.get(gateway.url + "/healthz").status_code == 200


def test_not_ready_without_redis(tmp_path: Path) -> None:
    db = "tokenrelay_ready_" + uuid.uuid4().hex[:10]
    _run(_pg(f'CREATE DATABASE "{db}"'))
    redis = PrivateRedis(tmp_path)
    redis.start()
    gw, thread = start_gateway(
        tmp_path, database_url=f"postgresql://postgres@127.0.0.1:5432/{db}", redis_url=redis.url
    )
    try:
        assert httpx.get(gw.url + "/readyz").status_code == 200
        redis.kill()
        r = httpx.get(gw.url + "/readyz", timeout=30)
        assert r.status_code == 503
        assert r.json()["checks"]["redis"].startswith("failing")
        assert httpx.get(gw.url + "/healthz").status_code == 200  # alive, not ready
    finally:
        gw.server.should_exit = True
        thread.join(timeout=15)
        if redis.proc is not None and redis.proc.poll() is None:
            redis.proc.send_signal(signal.SIGKILL)
        _run(_pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
