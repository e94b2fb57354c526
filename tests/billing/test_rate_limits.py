"""Per-key rate limits (requests/min and tokens/min).

End to end on a real gateway with the official SDKs, on SQLite + in-process limits and on
PostgreSQL + Redis: the request over the limit is refused with 429, a `retry-after` header and
the client's own error shape, before anything is billed. Then the two limiter implementations
behind the one `RateLimiter` interface: token buckets that refill over time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import anthropic
import openai
import pytest
from billing_support import create_key, key_summary, module_gateway

from backends import redis_namespace
from gateway_support import RunningGateway
from tokenrelay.billing.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter

HI = [{"role": "user", "content": "hi"}]


gw = module_gateway()


def _call(gw: RunningGateway, key: str, sdk: str, prompt: str = "hi", stream: bool = False) -> Any:
    """One request with the official SDK (no SDK retries); returns the raw response."""
    messages = [{"role": "user", "content": prompt}]
    if sdk == "openai":
        gpt = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
        if stream:
            with gpt.chat.completions.create(
                model="gpt-4o", messages=messages, stream=True
            ) as chunks:
                return list(chunks)
        return gpt.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)
    claude = anthropic.Anthropic(api_key=key, base_url=gw.proxy, max_retries=0)
    if stream:
        with claude.messages.stream(
            model="claude-haiku-4-5", max_tokens=400, messages=messages
        ) as events:
            return events.get_final_message()
    return claude.messages.with_raw_response.create(
        model="claude-haiku-4-5", max_tokens=400, messages=messages
    )


def _assert_rate_limited(sdk: str, exc: pytest.ExceptionInfo[Any], limit: str) -> int:
    """The refusal is in the client's own format (OpenAI's says which limit: `limit`, requests
    or tokens); returns the retry-after seconds."""
    err = exc.value
    assert err.status_code == 429
    if sdk == "openai":
        assert isinstance(err, openai.RateLimitError)
        assert err.code == "rate_limit_exceeded"
        assert err.type == limit
    else:
        assert isinstance(err, anthropic.RateLimitError)
        assert err.body["error"]["type"] == "rate_limit_error"
        assert err.body["type"] == "error"
    retry_after = int(err.response.headers["retry-after"])
    assert retry_after >= 1
    return retry_after


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_third_request_in_a_minute_on_an_rpm_2_key_is_refused_with_retry_after(
    gw: RunningGateway, sdk: str
) -> None:
    key_id, key = create_key(gw.url, "10.00", rpm=2)
    for _ in range(2):
        assert _call(gw, key, sdk).status_code == 200
    exc_type = openai.RateLimitError if sdk == "openai" else anthropic.RateLimitError
    with pytest.raises(exc_type) as refused:
        _call(gw, key, sdk)
    # The bucket refills 2/min: the next whole request is about 30 s away.
    assert 1 <= _assert_rate_limited(sdk, refused, "requests") <= 30
    # A streaming request is refused up front too, as an exception, not a broken stream.
    with pytest.raises(exc_type) as refused_stream:
        _call(gw, key, sdk, stream=True)
    _assert_rate_limited(sdk, refused_stream, "requests")
    # Refused requests cost nothing and leave no usage record.
    summary = key_summary(gw.url, key_id)
    assert summary["requests"] == 2
    assert Decimal(summary["balance_usd"]) + Decimal(summary["spent_usd"]) == Decimal("10.00")


def test_rpm_limits_are_per_key(gw: RunningGateway) -> None:
    _, limited = create_key(gw.url, "10.00", rpm=1)
    _, other = create_key(gw.url, "10.00", rpm=1)
    _, unlimited = create_key(gw.url, "10.00")
    assert _call(gw, limited, "openai").status_code == 200
    with pytest.raises(openai.RateLimitError):
        _call(gw, limited, "openai")
    assert _call(gw, other, "openai").status_code == 200
    for _ in range(4):
        assert _call(gw, unlimited, "openai").status_code == 200


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_tpm_key_is_refused_after_a_request_that_used_its_minute_of_tokens(
    gw: RunningGateway, sdk: str
) -> None:
    key_id, key = create_key(gw.url, "10.00", tpm=100)
    # Admitted (the bucket is full), but uses ~200 output tokens: twice the minute's budget.
    first = _call(gw, key, sdk, "[[words:200]] go")
    assert first.status_code == 200
    exc_type = openai.RateLimitError if sdk == "openai" else anthropic.RateLimitError
    with pytest.raises(exc_type) as refused:
        _call(gw, key, sdk, "hi")
    # ~100 tokens over the budget at 100 tokens/min: more than a minute to wait.
    assert _assert_rate_limited(sdk, refused, "tokens") > 60
    assert "tokens/min" in str(refused.value)
    assert key_summary(gw.url, key_id)["requests"] == 1


def test_a_key_with_both_limits_is_told_which_one_refused(gw: RunningGateway) -> None:
    _, key = create_key(gw.url, "10.00", rpm=1, tpm=100_000)
    assert _call(gw, key, "openai").status_code == 200
    with pytest.raises(openai.RateLimitError) as refused:
        _call(gw, key, "openai")
    _assert_rate_limited("openai", refused, "requests")
    _, key = create_key(gw.url, "10.00", rpm=100, tpm=100)
    assert _call(gw, key, "openai", "[[words:200]] go").status_code == 200
    with pytest.raises(openai.RateLimitError) as refused:
        _call(gw, key, "openai")
    _assert_rate_limited("openai", refused, "tokens")


# --------------------------------------------------------------------------------------------
# the limiters behind one interface


@dataclass
class Limiter:
    impl: RateLimiter
    advance: Callable[[float], Awaitable[None]]  # let `seconds` pass for the buckets


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[Limiter]:
    if request.param == "memory":
        clock = FakeClock()

        async def tick(seconds: float) -> None:
            clock.now += seconds

        yield Limiter(MemoryRateLimiter(clock=clock), tick)
        return

    async def sleep(seconds: float) -> None:  # Redis buckets run on the server's clock
        await asyncio.sleep(seconds)

    async with redis_namespace("rl") as (client, prefix):
        yield Limiter(RedisRateLimiter(client, prefix=prefix), sleep)


def _key() -> str:
    return "key_" + uuid.uuid4().hex[:8]


async def test_rpm_bucket_admits_its_burst_then_says_how_long_to_wait(limiter: Limiter) -> None:
    rl, key = limiter.impl, _key()
    assert await rl.check(key, 2, None, 10) is None
    assert await rl.check(key, 2, None, 10) is None
    wait = await rl.check(key, 2, None, 10)
    assert wait is not None and 29 <= wait <= 30  # one request per 30 s at 2/min
    # A refusal consumes nothing: asking again does not push the wait further out.
    again = await rl.check(key, 2, None, 10)
    assert again is not None and again <= wait
    assert await rl.check(_key(), 2, None, 10) is None  # buckets are per key


async def test_rpm_bucket_refills_continuously(limiter: Limiter) -> None:
    rl, key = limiter.impl, _key()
    # 600/min = 10 per second: empty the bucket, then 0.25 s buys two more requests.
    admitted = 0
    while await rl.check(key, 600, None, 0) is None:
        admitted += 1
        assert admitted < 700, "the bucket never ran dry"  # Redis refills while we drain it
    assert admitted >= 599
    wait = await rl.check(key, 600, None, 0)
    assert wait is not None and wait <= 0.1 + 0.01
    await limiter.advance(0.25)
    assert await rl.check(key, 600, None, 0) is None
    assert await rl.check(key, 600, None, 0) is None


async def test_tpm_bucket_goes_negative_on_real_usage_and_refills(limiter: Limiter) -> None:
    rl, key = limiter.impl, _key()
    tpm = 6000  # 100 tokens per second
    assert await rl.check(key, None, tpm, 50) is None
    # The real usage (settle) is taken whole, even past the bucket: 6050 of 6000.
    started = time.monotonic()
    await rl.consume_tokens(key, tpm, 6050)
    wait = await rl.check(key, None, tpm, 50)
    # (50 over + 50 needed) tokens at 100/s, less what refilled since (Redis: real time, so
    # the bound moves with how long those two calls took on a loaded machine).
    assert wait is not None and 1.0 - (time.monotonic() - started) - 0.01 <= wait <= 1.001
    await limiter.advance(0.6)
    wait = await rl.check(key, None, tpm, 50)
    assert wait is not None and wait <= 0.45
    await limiter.advance(0.5)
    assert await rl.check(key, None, tpm, 50) is None


async def test_a_prompt_larger_than_the_tpm_is_not_refused_forever(limiter: Limiter) -> None:
    rl, key = limiter.impl, _key()
    # The need is capped at the bucket size: a full bucket admits even a huge prompt.
    assert await rl.check(key, None, 1000, 50_000) is None


async def test_no_limits_always_admit(limiter: Limiter) -> None:
    rl, key = limiter.impl, _key()
    for _ in range(20):
        assert await rl.check(key, None, None, 10**6) is None
    await rl.consume_tokens(key, None, 10**9)
    assert await rl.check(key, None, None, 10**6) is None
