"""A lean HTTP/1.1 client for the upstream hop: keep-alive pools, streamed bodies, TLS.

aiohttp 3.14 cost 380 µs of CPU and 600 µs of wall time per sequential request to bench/mock
on the CI machine; this client, an asyncio Protocol around httptools' C parser, costs 80 µs
and 230 µs, and the gateway's CPU per request fell by ~45%. It does only what the upstream
hop needs: one request per connection at a
time, `content-length` request bodies, responses framed by length, chunking or close,
gzip/deflate decoding should a vendor ignore `accept-encoding: identity`, four timeouts per
call (settings.Timeouts: connect, first byte, idle, total), and one silent retry when a pooled
connection turns out to have been closed by the server before it answered (the usual
keep-alive race).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httptools

from tokenrelay.settings import Timeouts

# Pause reading from the vendor when this much is unread: the rest waits in the kernel's socket
# buffer, not in our heap: a consumer slower than its vendor holds 64 KiB at most (was 1 MiB).
_MAX_BUFFER = 1 << 16
# Idle connections kept per host: as many as a burst of streams used (nginx keepalive 1024 in
# bench/), so the next burst reuses them instead of opening (and, to a vendor, TLS-handshaking)
# hundreds again; each costs a few KB here and a socket.
_IDLE_POOL = 1024


class UpstreamConnectionError(ConnectionError):
    """The vendor could not be reached, or the connection broke before the answer ended."""


class UpstreamTimeout(TimeoutError):
    """A timeout of the vendor call ran out; `which`: connect, first_byte, idle or total."""

    _SAYS: ClassVar[dict[str, str]] = {
        "connect": "no connection",
        "first_byte": "no first byte",
        "idle": "nothing more",
        "total": "no end of the answer",
    }

    def __init__(self, which: str, seconds: float | None = None) -> None:
        self.which = which
        within = f" within {seconds:g} s" if seconds else ""
        super().__init__(f"{which} timeout: {self._SAYS.get(which, which)}{within}")


class Headers(Mapping[str, str]):
    """Response headers, case-insensitive (stored lower-case; repeated names joined by ', ')."""

    __slots__ = ("_items",)

    def __init__(self, items: dict[str, str]) -> None:
        self._items = items

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        return self._items.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:  # Mapping's goes through __getitem__ and a try
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


# A response's headers once read (see Response.headers): shared, never written.
NO_HEADERS = Headers({})


class _Connection(asyncio.Protocol):
    """One keep-alive connection; httptools calls back into it as bytes arrive."""

    # No instance dict (~100-200 B a connection, one a live stream; asyncio.Protocol has none)
    __slots__ = (
        "_header_name",
        "_headers",
        "closed",
        "loop",
        "parser",
        "pool",
        "response",
        "reused",
        "transport",
    )

    def __init__(self, pool: _Pool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop  # its requests' loop, kept: asyncio.get_running_loop() is a syscall
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.closed = False
        self.reused = False
        self._header_name = b""
        self._headers: dict[str, str] = {}

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamConnectionError("unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            self._fail(UpstreamConnectionError(f"malformed HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        resp = self.response
        if resp is not None and not resp.complete:
            if resp.status and resp.close_delimited:
                resp.finish()  # a body framed by the end of the connection
            else:
                resp.fail(UpstreamConnectionError("connection closed before the response ended"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        resp = self.response
        if resp is None:
            return
        resp.start(self.parser.get_status_code(), Headers(self._headers))
        self._headers = {}

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response.feed(body)

    def on_message_complete(self) -> None:
        resp = self.response
        if resp is not None:
            resp.keep_alive = self.parser.should_keep_alive()
            resp.finish()

    # ours
    def send(self, head: bytes, body: bytes, response: Response) -> None:
        assert self.transport is not None
        self.response = response
        self.parser = httptools.HttpResponseParser(self)
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)

    def _fail(self, exc: Exception) -> None:
        if self.response is not None:
            self.response.fail(exc)
        self.close()

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()
        self.pool.forget(self)


class Response:
    """The vendor's answer: status and headers once `request` returns; the body streams."""

    # No instance dict (~100-200 B a live stream)
    __slots__ = (
        "_buffered",
        "_chunks",
        "_conn",
        "_decoder",
        "_error",
        "_head_waiter",
        "_interrupted",
        "_loop",
        "_paused",
        "_read_timeout",
        "_released",
        "_sink",
        "_timer",
        "_total_at",
        "_total_s",
        "_wait_started",
        "_waiter",
        "close_delimited",
        "complete",
        "headers",
        "keep_alive",
        "status",
    )

    def __init__(
        self, conn: _Connection, idle_timeout: float | None, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._conn = conn
        self._loop = loop  # the caller's: asyncio.get_running_loop() is a getpid syscall on 3.11
        self._read_timeout = idle_timeout
        self.status = 0
        self.headers: Headers = NO_HEADERS
        self.keep_alive = False
        self.complete = False
        self.close_delimited = False
        # A list, not a deque: it holds a piece or two between reads, and an empty deque is
        # ~760 B (a 64-slot block) for every open call.
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        # The idle and total timeouts: one timer per response for both (`_on_timer`), re-armed
        # only when it fires early, instead of a timer set and cancelled around every chunk
        # (~2 µs a chunk, at 50k chunks/s), or one each (a uvloop timer is ~580 B: a live
        # stream kept two).
        self._timer: asyncio.TimerHandle | None = None
        self._total_at: float | None = None  # loop time by which the whole call must end
        self._total_s = 0.0
        self._wait_started: float | None = None  # a read's wait for data (None: none yet)
        self._head_waiter: asyncio.Future[None] = self._loop.create_future()
        self._decoder: Any = None
        self._released = False
        self._sink: Callable[[bytes], bool] | None = None
        self._interrupted = False

    # protocol side
    def start(self, status: int, headers: Headers) -> None:
        self.status, self.headers = status, headers
        framed = "content-length" in headers or "chunked" in headers.get("transfer-encoding", "")
        self.close_delimited = not framed
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj()
        if not self._head_waiter.done():
            self._head_waiter.set_result(None)

    def forward(self, sink: Callable[[bytes], bool] | None) -> None:
        """Hand body bytes to `sink` as they arrive, while the reader waits with nothing
        queued: no task switch per chunk. `sink` returns False to leave a piece to the reader
        (queued as usual; nothing is forwarded past a queued piece, so order holds)."""
        self._sink = sink

    def interrupt(self) -> None:
        """Wake the reader: its next read returns b"" (the sink needs it to act)."""
        self._interrupted = True
        self._wake()

    def feed(self, data: bytes) -> None:
        if self._decoder is not None:
            data = self._decoder.decompress(data)
            if not data:
                return
        sink = self._sink
        if sink is not None and self._waiter is not None and not self._chunks and sink(data):
            self._wait_started = self._loop.time()  # the idle clock restarts, as on a read
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > _MAX_BUFFER and not self._paused and self._conn.transport:
            self._paused = True
            self._conn.transport.pause_reading()
        self._wake()

    def finish(self) -> None:
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                self._chunks.append(tail)
        self.complete = True
        self._stop_timers()
        if not self._head_waiter.done():  # a response without a body callback order quirk
            self._head_waiter.set_result(None)
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if self.complete:
            return
        self._error = exc
        self._stop_timers()
        if not self._head_waiter.done():
            self._head_waiter.set_exception(exc)
            self._head_waiter.exception()  # retrieved: the caller re-raises from wait_head
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # caller side
    def limit_total(self, deadline: float, seconds: float) -> None:
        """Fail the call at `deadline` (loop time) unless its body has ended by then."""
        self._total_at, self._total_s = deadline, seconds
        due = deadline
        if self._read_timeout:  # no read can be idle before this: its wait re-arms nothing
            due = min(deadline, self._loop.time() + self._read_timeout)
        self._arm(due)

    async def wait_first_byte(self, timeout: float | None) -> None:
        """Until the status, the headers and the first body bytes (or the body's end) arrived:
        a vendor that answers 200 and then stays silent fails here, where a retry is possible."""
        # A timer, not asyncio.wait_for: that would cost a task per request.
        timer = None
        if timeout and not (self._chunks or self.complete):
            timer = self._loop.call_later(timeout, self._timed_out, "first_byte", timeout)
        try:
            await self._head_waiter
            while not (self._chunks or self.complete or self._error is not None):
                self._waiter = self._loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            if self._error is not None and not self._chunks:
                raise self._error
        finally:
            if timer is not None:
                timer.cancel()

    async def _next(self) -> bytes | None:
        while True:
            chunks = self._chunks
            if chunks:
                # Everything that arrived since the last read, as one piece: one parse and one
                # write to the client instead of one per HTTP chunk or network read. Idle, a
                # read holds one event; behind (1,000 streams on one core) it holds several,
                # and the syscalls per event fall exactly when the core is short.
                if len(chunks) == 1:
                    data = chunks.pop()
                else:
                    data = b"".join(chunks)
                    chunks.clear()
                self._buffered -= len(data)
                if self._paused and self._buffered < _MAX_BUFFER // 2:
                    self._paused = False
                    if self._conn.transport is not None:
                        self._conn.transport.resume_reading()
                return data
            if self._interrupted:
                self._interrupted = False
                return b""
            if self.complete:
                return None
            if self._error is not None:
                raise self._error
            self._waiter = self._loop.create_future()
            if self._read_timeout:
                self._wait_started = now = self._loop.time()
                self._arm(now + self._read_timeout)
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _arm(self, due: float) -> None:
        """The timer to fire by `due`: one due later is moved; one due sooner re-checks then."""
        timer = self._timer
        if timer is not None:
            if timer.when() <= due:
                return
            timer.cancel()
        self._timer = self._loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        """Fails the response if the total timeout ran out, or if the current wait for data
        started a whole idle timeout ago; otherwise waits again, for the nearer of the two (a
        read not waiting arms it again when it waits)."""
        self._timer = None
        if self.complete:
            return
        now = self._loop.time()
        due = self._total_at
        if due is not None and now >= due - 0.001:  # timers may fire a hair early
            self._timed_out("total", self._total_s)
            return
        idle, started = self._read_timeout, self._wait_started
        if idle and started is not None and self._waiter is not None:
            if now >= started + idle - 0.001:
                self._timed_out("idle", idle)
                return
            due = started + idle if due is None else min(due, started + idle)
        if due is not None:
            self._timer = self._loop.call_at(due, self._on_timer)

    def _stop_timers(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self, which: str, seconds: float | None) -> None:
        self.fail(UpstreamTimeout(which, seconds))
        self._conn.close()

    async def iter_any(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive (aiohttp's `content.iter_any()` contract)."""
        while True:
            data = await self._next()
            if data is None:
                return
            yield data
            # Not kept while the next read waits: with the body forwarded (`forward`), that
            # wait is the stream's whole life (~0.4 KB a live stream, traced).
            del data

    @property
    def content(self) -> Response:  # `resp.content.iter_any()`, as with aiohttp
        return self

    async def read(self) -> bytes:
        parts = []
        while (data := await self._next()) is not None:
            parts.append(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        """Hang up: the rest of the body is not wanted."""
        self._sink = None  # it refers back to this response: no cycle left for the GC
        self._released = True
        self._stop_timers()
        self._conn.close()

    def release(self) -> None:
        self._sink = None  # it refers back to this response: no cycle left for the GC
        if self._released:
            return
        self._released = True
        self._stop_timers()
        conn = self._conn
        if self.complete and self.keep_alive and self._error is None and not conn.closed:
            conn.response = None
            conn.reused = True
            conn.pool.put(conn)
        else:
            conn.close()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class _Pool:
    def __init__(self, client: HttpClient, scheme: str, host: str, port: int) -> None:
        self.client = client
        self.host, self.port = host, port
        self.ssl = client.ssl_context if scheme == "https" else None
        default = 443 if scheme == "https" else 80
        self.host_header = host if port == default else f"{host}:{port}"
        self.idle: deque[_Connection] = deque()

    def put(self, conn: _Connection) -> None:
        if len(self.idle) < _IDLE_POOL:
            self.idle.append(conn)
        else:
            conn.close()

    def forget(self, conn: _Connection) -> None:
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)

    def take_idle(self) -> _Connection | None:
        while self.idle:
            conn = self.idle.pop()  # most recently used: the least likely to be stale
            if not conn.closed:
                return conn
        return None

    async def connect(self, timeout: float) -> _Connection:
        idle = self.take_idle()
        if idle is not None:
            return idle
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(self, loop),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                ),
                timeout,
            )
        except TimeoutError:
            raise UpstreamTimeout("connect", timeout) from None
        except (OSError, ssl.SSLError) as exc:
            raise UpstreamConnectionError(f"{type(exc).__name__}: {exc}") from exc
        return conn


@lru_cache(maxsize=1024)
def _route(url: str) -> tuple[tuple[str, str, int], str]:
    """A URL's pool key (scheme, host, port) and request target, parsed once per URL: a
    vendor's few URLs come back on every call."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise UpstreamConnectionError(f"unsupported URL {url!r}")
    port = parts.port or (443 if scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return (scheme, parts.hostname, port), target


class HttpClient:
    def __init__(
        self,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float | None = 600.0,
        timeouts: Timeouts | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`timeouts`: the default of every request; without it, `connect_timeout`, and
        `read_timeout` for the first byte and every silence after it, with no total."""
        self.timeouts = timeouts or Timeouts(connect_timeout, read_timeout, read_timeout, None)
        self._ssl_context = ssl_context
        self._pools: dict[tuple[str, str, int], _Pool] = {}

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The system's CA store, verified hostnames; loaded on the first HTTPS vendor."""
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        timeouts: Timeouts | None = None,
    ) -> Response:
        """Send the request; return once the status, the headers and the first body bytes
        arrived. Raises UpstreamTimeout (a TimeoutError) when a timeout runs out before that,
        and the body's reads raise it after (idle, total)."""
        t = timeouts or self.timeouts
        key, target = _route(url)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(self, *key)
        reused = pool.take_idle()  # the common case: its loop is known without a syscall
        loop = reused.loop if reused is not None else asyncio.get_running_loop()
        deadline = loop.time() + t.total_s if t.total_s else None
        lines = [f"{method} {target} HTTP/1.1", f"host: {pool.host_header}"]
        lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "host"]
        lines.append(f"content-length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        for attempt in (0, 1):
            if reused is not None and attempt == 0:
                conn = reused
            else:
                connect_s = t.connect_s
                if deadline is not None and deadline - loop.time() < connect_s:
                    connect_s = max(deadline - loop.time(), 0.001)
                conn = await pool.connect(connect_s)
            resp = Response(conn, t.idle_s, loop)
            if deadline is not None:
                resp.limit_total(deadline, t.total_s or 0)
            conn.send(head, body, resp)
            try:
                await resp.wait_first_byte(t.first_byte_s)
            except UpstreamConnectionError:
                resp.close()
                if conn.reused and attempt == 0:
                    continue  # the server closed an idle connection as we reused it
                raise
            except BaseException:
                resp.close()
                raise
            return resp
        raise AssertionError("unreachable")

    async def close(self) -> None:
        for pool in self._pools.values():
            while pool.idle:
                pool.idle.pop().close()
        self._pools.clear()
