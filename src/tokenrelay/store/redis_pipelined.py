"""A lean second way to Redis for the few scripts every request runs (hold, settle).

redis-py's asyncio client spends ~35 µs of CPU a command: a connection checked out of the
pool and back, an asyncio stream, a timeout context, its own packing. With PostgreSQL + Redis
that was a quarter of the gateway's CPU per request (bench: py-spy under wrk c=64). Here one
connection carries every caller's commands: packed by hiredis, written once per loop turn for
all that came in it, and matched to their replies in order (Redis answers a connection's
commands in the order sent), parsed by hiredis.

Failures look like redis-py's (`redis.exceptions`), so callers keep one error path: a reply
error is a ResponseError (NoScriptError when the script cache lost the script: the caller runs
it through redis-py, which loads it); a dropped or silent connection fails every command in
flight with ConnectionError / TimeoutError, and the next command connects again. Only plain
TCP URLs (redis://); TLS or a Unix socket keeps redis-py (`from_url` returns None).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class _Link(asyncio.Protocol):
    __slots__ = ("_reader", "closed", "pending", "replied_at", "transport")

    def __init__(self) -> None:
        self._reader = hiredis.Reader()
        self.pending: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.replied_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        self.replied_at = asyncio.get_running_loop().time()
        while (reply := reader.gets()) is not False:
            if not self.pending:  # a reply nobody asked for: the stream is out of step
                self.fail(RedisConnectionError("unexpected reply from Redis"))
                return
            fut = self.pending.popleft()
            if fut.done():  # its caller was cancelled: the reply is dropped, order kept
                continue
            if isinstance(reply, hiredis.ReplyError):
                message = str(reply)
                error = NoScriptError if message.startswith("NOSCRIPT") else ResponseError
                fut.set_exception(error(message))
            else:
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"Redis connection lost: {exc or 'closed'}"))

    def fail(self, exc: Exception) -> None:
        self.closed = True
        pending, self.pending = self.pending, deque()
        for fut in pending:
            if not fut.done():
                fut.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


class PipelinedRedis:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        io_timeout_s: float = 5.0,
        connect_timeout_s: float = 2.0,
    ) -> None:
        self._host, self._port = host, port
        self._hello: list[bytes] = []  # what a new connection sends before any command
        if password is not None:
            auth = ("AUTH", username, password) if username else ("AUTH", password)
            self._hello.append(_pack(auth))
        if db:
            self._hello.append(_pack(("SELECT", db)))
        self._io_timeout_s = io_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._link: _Link | None = None
        self._connecting: asyncio.Future[_Link] | None = None
        self._out: list[bytes] = []
        self._flush_at: asyncio.Handle | None = None
        self._watch: asyncio.TimerHandle | None = None

    @classmethod
    def from_url(
        cls, url: str, *, io_timeout_s: float, connect_timeout_s: float = 2.0
    ) -> PipelinedRedis | None:
        if not url.startswith("redis://"):
            return None
        kw = parse_url(url)
        if "path" in kw or "connection_class" in kw:
            return None
        return cls(
            kw.get("host", "localhost"),
            int(kw.get("port", 6379)),
            db=int(kw.get("db", 0)),
            username=kw.get("username"),
            password=kw.get("password"),
            io_timeout_s=io_timeout_s,
            connect_timeout_s=connect_timeout_s,
        )

    async def evalsha(self, sha: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        link = self._link
        if link is None or link.closed:
            link = await self._connect()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not link.pending:
            link.replied_at = asyncio.get_running_loop().time()  # the silence starts now
        link.pending.append(fut)
        self._send(_pack(("EVALSHA", sha, len(keys), *keys, *args)))
        return await fut

    async def aclose(self) -> None:
        if self._link is not None:
            self._link.fail(RedisConnectionError("closed"))
            self._link = None
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    # ------------------------------------------------------------------ internals

    def _send(self, packed: bytes) -> None:
        self._out.append(packed)
        if self._flush_at is None:  # one write for every command of this loop turn
            self._flush_at = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_at = None
        out, self._out = self._out, []
        link = self._link
        if link is None or link.closed or link.transport is None:
            return  # its commands were failed with the connection
        link.transport.write(b"".join(out))

    async def _connect(self) -> _Link:
        if self._connecting is None:
            loop = asyncio.get_running_loop()
            self._connecting = loop.create_future()
            try:
                _, link = await asyncio.wait_for(
                    loop.create_connection(_Link, self._host, self._port),
                    self._connect_timeout_s,
                )
            except (OSError, TimeoutError) as exc:
                error = RedisConnectionError(f"Redis unreachable: {type(exc).__name__}: {exc}")
                self._connecting.set_exception(error)
                self._connecting.exception()  # retrieved: raised below, to every waiter
                self._connecting = None
                raise error from None
            self._out = []  # commands of a connection that failed: their callers were told
            for packed in self._hello:  # answered in order before any command's reply
                hello: asyncio.Future[Any] = loop.create_future()
                link.pending.append(hello)
                hello.add_done_callback(_check_hello)
                self._out.append(packed)
            self._link = link
            self._connecting.set_result(link)
            self._connecting = None
            if self._watch is None:
                self._watch = loop.call_later(self._io_timeout_s, self._check_silence)
            return link
        return await asyncio.shield(self._connecting)

    def _check_silence(self) -> None:
        """A connection with commands in flight and no reply for the io timeout is dropped:
        its callers fail in seconds, as with redis-py's socket timeout."""
        loop = asyncio.get_running_loop()
        link = self._link
        silent = link is not None and loop.time() - link.replied_at >= self._io_timeout_s
        if silent and link is not None and link.pending and not link.closed:
            link.fail(RedisTimeoutError("Redis did not answer in time"))
        self._watch = loop.call_later(self._io_timeout_s / 4, self._check_silence)


def _pack(parts: tuple[Any, ...]) -> bytes:
    # hiredis's stub types the command as a 1-tuple; any length packs.
    return hiredis.pack_command(cast(Any, parts))


def _check_hello(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # a refused AUTH fails the commands after it anyway: retrieved here
