"""The pipelined Redis connection the request path's hold and settle scripts use
(store/redis_pipelined.py), against a real Redis: each caller gets its own reply however many
share the connection, a lost script is loaded again, a dropped connection fails what was in
flight and the next call connects again, a silent Redis fails callers within the io timeout,
and the URL's database is the one written."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
import redis as sync_redis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from backends import REDIS_URL
from tokenrelay.billing.holds import RedisHolds
from tokenrelay.store.redis_pipelined import PipelinedRedis
from tokenrelay.store.redis_pool import Scripts

ECHO = "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}"


def _available() -> None:
    try:
        sync_redis.Redis.from_url(REDIS_URL).ping()
    except sync_redis.exceptions.ConnectionError:
        pytest.skip("no Redis at " + REDIS_URL)


@pytest.fixture(autouse=True)
def _redis_up() -> None:
    _available()


@contextlib.asynccontextmanager
async def connected(
    script: str, url: str = REDIS_URL, io_timeout_s: float = 5
) -> AsyncIterator[tuple[Redis, str, PipelinedRedis]]:
    """redis-py's client, `script` loaded (its sha), and a pipelined connection to `url`.
    Connecting may take 10 s: a loaded 2-core CI machine once took more than the 2 s default,
    and how long a connect takes is not what these tests are about."""
    client = Redis.from_url(url)
    sha = await client.script_load(script)
    fast = PipelinedRedis.from_url(url, io_timeout_s=io_timeout_s, connect_timeout_s=10)
    assert fast is not None
    try:
        yield client, sha, fast
    finally:
        await client.execute_command("CLIENT", "UNPAUSE")
        await fast.aclose()
        await client.aclose()


def test_concurrent_callers_each_get_their_own_reply() -> None:
    async def run() -> None:
        async with connected(ECHO) as (client, sha, fast):
            prefix = f"t:{uuid.uuid4().hex}:"
            calls = [fast.evalsha(sha, [f"{prefix}{i % 7}"], [f"arg{i}"]) for i in range(500)]
            replies = await asyncio.gather(*calls)
            for i, (key, arg, _) in enumerate(replies):
                assert (key, arg) == (f"{prefix}{i % 7}".encode(), f"arg{i}".encode())
            counts = [int(await client.get(f"{prefix}{k}") or 0) for k in range(7)]
            assert sum(counts) == 500

    asyncio.run(run())


def test_a_lost_script_raises_no_script_and_holds_load_it_again() -> None:
    async def balance(_: str) -> tuple[int, int]:
        return 1_000, 0

    async def run() -> None:
        async with connected("return 1") as (client, _, fast):
            account = f"acct-{uuid.uuid4().hex}"
            holds = RedisHolds(
                client, balance, prefix=f"t{uuid.uuid4().hex}:", scripts=Scripts(fast)
            )
            assert await holds.reserve(account, "r1", 400)
            await client.script_flush()
            with pytest.raises(NoScriptError):
                await fast.evalsha(holds._reserve.sha, ["a", "b", "c", "d"], ["x", "1", 1])
            assert await holds.reserve(account, "r2", 500)  # loaded again through redis-py
            assert not await holds.reserve(account, "r3", 200)  # 900 of 1,000 held
            assert await holds.settle(account, "r1", 300)
            assert await holds.available(account) == 1_000 - 300 - 500

    asyncio.run(run())


def test_a_dropped_connection_fails_callers_in_flight_and_the_next_call_reconnects() -> None:
    async def run() -> None:
        setter = "redis.call('SET', KEYS[1], ARGV[1]) return 1"
        async with connected(setter) as (client, sha, fast):
            key = f"t:{uuid.uuid4().hex}"
            assert await fast.evalsha(sha, [key], ["one"]) == 1
            # Dropped while idle (Redis restarted, a proxy timed it out): nobody notices.
            await client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            await asyncio.sleep(0.1)
            assert await fast.evalsha(sha, [key], ["two"]) == 1
            # Dropped with a command in flight (held by a pause): its caller is told.
            await client.execute_command("CLIENT", "PAUSE", "2000", "ALL")
            in_flight = asyncio.ensure_future(fast.evalsha(sha, [key], ["lost"]))
            await asyncio.sleep(0.1)
            link = fast._link
            assert link is not None and link.transport is not None
            link.transport.abort()
            with pytest.raises(RedisConnectionError):
                await in_flight
            await client.execute_command("CLIENT", "UNPAUSE")
            assert await fast.evalsha(sha, [key], ["three"]) == 1
            assert await client.get(key) == b"three"

    asyncio.run(run())


def test_a_silent_redis_fails_callers_within_the_io_timeout() -> None:
    async def run() -> None:
        async with connected("return 1", io_timeout_s=0.4) as (client, sha, fast):
            assert await fast.evalsha(sha, [], []) == 1
            await client.execute_command("CLIENT", "PAUSE", "3000", "ALL")
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(RedisTimeoutError):
                await fast.evalsha(sha, [], [])
            assert loop.time() - started < 2.5  # well before the pause ends

    asyncio.run(run())


def test_the_urls_database_is_the_one_written() -> None:
    async def run() -> None:
        base, _, db = REDIS_URL.rpartition("/")
        url = f"{base}/{(int(db) + 1) % 16}"
        async with connected("redis.call('SET', KEYS[1], '1') return 1", url) as (c, sha, fast):
            key = f"t:{uuid.uuid4().hex}"
            await fast.evalsha(sha, [key], [])
            assert await c.get(key) == b"1"
            assert await Redis.from_url(REDIS_URL).get(key) is None
            await c.delete(key)

    asyncio.run(run())


def test_only_plain_tcp_urls_take_the_pipelined_way() -> None:
    assert PipelinedRedis.from_url("rediss://h:6380/0", io_timeout_s=1) is None
    assert PipelinedRedis.from_url("unix:///tmp/redis.sock", io_timeout_s=1) is None
    assert PipelinedRedis.from_url("redis://u:p@h:6390/3", io_timeout_s=1) is not None
