"""Issue 25, item 6: every answer carries the key's rate limits in its client API's own
convention (Anthropic's `anthropic-ratelimit-*`, OpenAI's `x-ratelimit-*`; Gemini's API has
none), and every 429 and 503 says when to retry."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from gateway_support import RunningGateway, free_port, served

RPM, TPM = 4, 50_000
OPENAI_RESET = re.compile(r"^\d+s$|^\d+m\d+s$")


def _anthropic_limits(headers: Any) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith("anthropic-ratelimit-")}


def _openai_limits(headers: Any) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith("x-ratelimit-")}


def test_anthropic_clients_see_their_buckets_count_down(gateway: RunningGateway) -> None:
    key = gateway.create_key("rl-anthropic", rpm=RPM, tpm=TPM)
    client = anthropic.Anthropic(api_key=key, base_url=gateway.proxy, max_retries=0)
    seen = []
    for _ in range(RPM):
        raw = client.messages.with_raw_response.create(
            model="gpt-4o", max_tokens=20, messages=[{"role": "user", "content": "Hi"}]
        )
        h = _anthropic_limits(raw.headers)
        assert h["anthropic-ratelimit-requests-limit"] == str(RPM)
        assert h["anthropic-ratelimit-tokens-limit"] == str(TPM)
        assert 0 <= int(h["anthropic-ratelimit-tokens-remaining"]) <= TPM
        reset = dt.datetime.fromisoformat(h["anthropic-ratelimit-requests-reset"])
        assert reset >= dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)
        seen.append(int(h["anthropic-ratelimit-requests-remaining"]))
    assert seen == list(range(RPM - 1, -1, -1))
    with pytest.raises(anthropic.RateLimitError) as refused:
        client.messages.create(
            model="gpt-4o", max_tokens=20, messages=[{"role": "user", "content": "Hi"}]
        )
    h = refused.value.response.headers
    assert int(h["retry-after"]) >= 1
    assert h["anthropic-ratelimit-requests-remaining"] == "0"


@pytest.mark.parametrize("api", ["chat", "responses", "chat-stream"])
def test_openai_clients_see_openai_headers(gateway: RunningGateway, api: str) -> None:
    key = gateway.create_key("rl-openai", rpm=RPM, tpm=TPM)
    client = openai.OpenAI(api_key=key, base_url=gateway.proxy + "/v1", max_retries=0)
    remaining = []
    for _ in range(2):
        if api == "responses":
            raw: Any = client.responses.with_raw_response.create(
                model="claude-haiku-4-5", input="Hi", max_output_tokens=20
            )
        else:
            raw = client.chat.completions.with_raw_response.create(
                model="gemini-2.5-flash",
                max_tokens=20,
                messages=[{"role": "user", "content": "Hi"}],
                stream=api == "chat-stream",
            )
        h = _openai_limits(raw.headers)
        assert h["x-ratelimit-limit-requests"] == str(RPM)
        assert h["x-ratelimit-limit-tokens"] == str(TPM)
        assert OPENAI_RESET.match(h["x-ratelimit-reset-requests"]), h
        assert OPENAI_RESET.match(h["x-ratelimit-reset-tokens"]), h
        assert not _anthropic_limits(raw.headers)
        remaining.append(int(h["x-ratelimit-remaining-requests"]))
        raw.parse()
    assert remaining == [RPM - 1, RPM - 2]


def test_gemini_has_no_rate_limit_headers(gateway: RunningGateway) -> None:
    key = gateway.create_key("rl-gemini", rpm=RPM, tpm=TPM)
    r = httpx.post(
        gateway.proxy + "/v1beta/models/gpt-4o:generateContent",
        headers={"x-goog-api-key": key},
        json={"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]},
    )
    assert r.status_code == 200, r.text
    assert not _openai_limits(r.headers) and not _anthropic_limits(r.headers)


def test_keys_without_limits_get_no_limit_headers(gateway: RunningGateway, api_key: str) -> None:
    client = openai.OpenAI(api_key=api_key, base_url=gateway.proxy + "/v1", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", max_tokens=20, messages=[{"role": "user", "content": "Hi"}]
    )
    assert not _openai_limits(raw.headers)


@pytest.fixture
def failing_vendor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningGateway]:
    """Anthropic's only deployment answers 503 without a retry-after of its own."""
    port = free_port()
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        f'[[deployments.anthropic]]\nname = "down"\n'
        f'base_url = "http://127.0.0.1:{port}/_d/down~503/anthropic"\n'
        'api_key_env = "RL_DOWN_KEY"\n'
    )
    monkeypatch.setenv("RL_DOWN_KEY", "sk-rl-down")
    yield from served(
        tmp_path,
        emulate="auto",
        emulator_port=port,
        catalog_path=str(catalog),
        upstream_retries=0,
    )


def test_a_503_says_when_to_retry(failing_vendor: RunningGateway) -> None:
    key = failing_vendor.create_key("rl-503")
    r = httpx.post(
        failing_vendor.proxy + "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert r.status_code == 503, r.text
    assert int(r.headers["retry-after"]) >= 1


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_both_limiters_report_the_levels_their_checks_leave(kind: str) -> None:
    import asyncio
    import uuid

    import redis.asyncio as aioredis

    from backends import REDIS_URL
    from tokenrelay.billing.ratelimit import MemoryRateLimiter, RedisRateLimiter

    async def run() -> list[tuple[float | None, float | None]]:
        client = aioredis.Redis.from_url(REDIS_URL) if kind == "redis" else None
        limiter: Any = (
            RedisRateLimiter(client, prefix=f"rltest-{uuid.uuid4().hex}:")
            if client is not None
            else MemoryRateLimiter()
        )
        out = [limiter.levels("k", 10, 1000)]
        for _ in range(3):
            assert await limiter.check("k", 10, 1000, 100) is None
            out.append(limiter.levels("k", 10, 1000))
        await limiter.consume_tokens("k", 1000, 400)
        out.append(limiter.levels("k", 10, 1000))
        if client is not None:
            await client.aclose()
        return out

    levels = asyncio.run(run())
    requests = [round(r or 0) for r, _ in levels]
    assert requests[:4] == [10, 9, 8, 7]
    assert 590 <= (levels[-1][1] or 0) <= 610  # 1000 less the 400 taken (plus a refill)
