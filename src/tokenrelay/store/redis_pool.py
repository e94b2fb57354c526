"""The one way the gateway opens Redis: a blocking pool, bounded waits on every socket.

Blocking: a burst beyond the pool waits for a connection (redis-py's default pool raises
"Too many connections" at its limit, which turned a burst into 500s). Socket timeouts: a Redis
that hangs (paused, partitioned) fails in seconds instead of holding callers for the OS's
minutes. Each user picks its own bounds: billing fails a request closed (503) after a few
seconds; the reasoning cache gives up sooner and goes on without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from tokenrelay.store.redis_pipelined import PipelinedRedis


def redis_client(url: str, *, connections: int, wait_s: float, io_timeout_s: float) -> Redis:
    """A client that owns its pool (`aclose()` closes both). redis is imported here, when a
    Redis is configured: the embedded default never loads it."""
    from redis.asyncio import BlockingConnectionPool, Redis

    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=connections,
        timeout=wait_s,
        socket_timeout=io_timeout_s,
        socket_connect_timeout=2,
    )
    return Redis.from_pool(pool)


class Scripts:
    """Runs redis-py's registered scripts through a pipelined connection when there is one
    (store/redis_pipelined.py; a script Redis lost goes through redis-py, which loads it
    again), else through redis-py. The request path's scripts (holds, rate limits) take this
    one way."""

    __slots__ = ("_fast", "_no_script")

    def __init__(self, fast: PipelinedRedis | None = None) -> None:
        from redis.exceptions import NoScriptError  # built only when Redis is configured

        self._fast = fast
        self._no_script = NoScriptError

    async def run(self, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if self._fast is not None:
            try:
                return await self._fast.evalsha(script.sha, keys, args)
            except self._no_script:
                pass
        return await script(keys=keys, args=args)
