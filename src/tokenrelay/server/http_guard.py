"""Bounds on client connections that uvicorn lacks: header and body deadlines, a cap per IP.

uvicorn only closes idle keep-alive connections, so a client that sends half a request line and
stalls (slowloris) holds its connection forever. `guarded_protocol` subclasses uvicorn's
httptools protocol:

- headers must be complete within `header_timeout_s` of the connection (first request) or of the
  request's first byte (later ones; the idle time between requests is uvicorn's keep-alive);
- the body must be complete within `body_timeout_s` of the headers;
- the response is never timed: a stream may run for as long as the vendor takes;
- at most `max_per_ip` connections per client IP; the next one gets a 429 and is closed.

It also sends a sized response's head and body in one write (`CoalescingTransport`), lets
the relay write a whole answer, or a stream's middle chunks, synchronously (`ChunkWritingCycle`:
`write_whole`, `write_chunk`), and keeps what a
connection holds small (`LightEvent`, `Pipeline`: uvicorn gives each connection three deques,
~760 B each, that nearly always stay empty).

Cost on the hot path: a few attribute writes and two clock reads per request (~1 µs). There is
at most one timer per connection, not one per request: each request only moves the deadline,
and the timer re-checks it when it fires (re-armed then if a request is still being read).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string


@dataclass(frozen=True, slots=True)
class Limits:
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_per_ip: int = 2048


def _canned(status: bytes, error_type: str, message: str) -> bytes:
    body = orjson.dumps({"error": {"type": error_type, "message": message}})
    return (
        b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (status, len(body), body)
    )


TOO_MANY_CONNECTIONS = _canned(
    b"429 Too Many Requests", "rate_limit_error", "too many connections from this address"
)
HEADER_TIMEOUT = _canned(
    b"408 Request Timeout", "timeout_error", "request headers not received in time"
)

_IDLE, _HEADERS, _BODY = 0, 1, 2


class CoalescingTransport:
    """The connection's transport, writing a sized response's head and body in one send.

    uvicorn writes the status line and headers on `http.response.start` and the body on the
    next message: two sends for every unary answer, each a syscall and (on loopback, where the
    sender runs the receiver's TCP path) a segment the client wakes up for. A head that
    declares a content-length is held until the next write, or until the loop's next turn if
    none comes (a HEAD answer, an app that awaits between the two). Only the timing of bytes
    changes, never their order. A stream's head (chunked, no content-length) goes at once:
    the client parses it while the first chunk is rendered (held for that chunk, the first
    token came 30-60 µs later at c=1, measured 2026-12-07).
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self._loop = loop

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.writelines((held, data))  # one writev on uvloop: no copy of data
        elif data.startswith(b"HTTP/1.1 ") and b"\r\ncontent-length: " in data:
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():  # a client gone meanwhile: nobody to tell
                self._transport.write(held)

    def write_now(self, data: bytes) -> None:
        """`data` at once, after whatever is held (a response already whole)."""
        self.flush()
        self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> object:  # the rest of the Transport API, unchanged
        return getattr(self._transport, name)


class LightEvent:
    """asyncio.Event as uvicorn uses it (is_set, set, clear, wait), whose list of waiters is
    made by the first wait: asyncio.Event makes a deque up front, and uvicorn makes two a
    connection (its request cycle's message event, its write flow's), most never waited on.
    It takes the connection's loop: asyncio.get_running_loop() is a getpid syscall on 3.11."""

    __slots__ = ("_loop", "_value", "_waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop, value: bool = False) -> None:
        self._loop = loop
        self._value = value
        self._waiters: list[asyncio.Future[bool]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if not self._value:
            self._value = True
            for waiter in self._waiters or ():
                if not waiter.done():
                    waiter.set_result(True)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        waiter: asyncio.Future[bool] = self._loop.create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            return await waiter
        finally:
            self._waiters.remove(waiter)


class LightFlowControl(FlowControl):
    """uvicorn's write flow control, its writable event a LightEvent."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(transport)
        self._is_writable_event = LightEvent(loop, True)  # type: ignore[assignment]


class Pipeline(list[tuple[RequestResponseCycle, Any]]):
    """The requests a client pipelined behind the one being answered (uvicorn: a deque, of
    which it uses `appendleft`, `pop` and truth): rare, and an empty list is ~60 B."""

    __slots__ = ()

    def appendleft(self, item: tuple[RequestResponseCycle, Any]) -> None:
        self.insert(0, item)


# Response headers uvicorn's `send` reads as well as writes (write_whole leaves them to it).
_INTERPRETED = frozenset((b"content-length", b"transfer-encoding", b"connection"))


class ChunkWritingCycle(RequestResponseCycle):
    """uvicorn's request cycle, plus a synchronous writer of a stream's middle chunks for the
    relay to call from the vendor connection's callback (asgi.chunk_writer): framed as
    uvicorn's `send` frames them; anything uvicorn would do more for (a paused or gone client,
    a sized or finished body, HEAD) says no, and the chunk goes through `send`. And a callback
    for the client's leaving."""

    on_disconnect: Callable[[], None] | None = None

    def can_write_chunk(self) -> bool:
        return bool(
            self.chunked_encoding
            and self.response_started
            and not self.response_complete
            and not self.disconnected
            and not self.flow.write_paused
            and self.scope["method"] != "HEAD"
        )

    def write_chunk(self, body: bytes) -> None:
        if body:
            self.transport.write(b"%x\r\n%b\r\n" % (len(body), body))

    def write_whole(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
        """A sized response, head and body, in one write and no await: what `send` writes for
        `http.response.start` (with a content-length) then the whole body, with the same
        checks, the two header checks made once over all names and all values (each a set
        of characters) instead of once a header. False, nothing written, where `send` does
        more: a response under way, a gone or paused client, HEAD, a 1xx/204/304 status, or a
        header among `headers` that `send` interprets (content-length, transfer-encoding,
        connection)."""
        if (
            self.response_started
            or self.disconnected
            or self.flow.write_paused
            or status < 200
            or status in (204, 304)
            or self.scope["method"] == "HEAD"
        ):
            return False
        every = [*self.default_headers, *headers]
        names = [name.lower() for name, _ in every]
        if _INTERPRETED.intersection(names):
            return False
        if HEADER_RE.search(b"".join(names)):
            self.response_started = True  # as in `send`: the server closes, sends no 500
            raise RuntimeError("Invalid HTTP header name.")
        if HEADER_VALUE_RE.search(b"".join([value for _, value in every])):
            self.response_started = True
            raise RuntimeError("Invalid HTTP header value.")
        if self.access_log:  # off in the gateway (serve.py), as `send` logs it
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(self.scope),
                self.scope["method"],
                get_path_with_query_string(self.scope),
                self.scope["http_version"],
                status,
            )
        content = [STATUS_LINE[status]]
        for name, (_, value) in zip(names, every, strict=True):
            content += (name, b": ", value, b"\r\n")
        content.append(b"content-length: %d\r\n" % len(body))
        if not self.keep_alive:
            content.append(b"connection: close\r\n")
        content += (b"\r\n", body)
        self.response_started = self.response_complete = True
        self.waiting_for_100_continue = False
        self.chunked_encoding, self.expected_content_length = False, 0
        transport = self.transport
        if isinstance(transport, CoalescingTransport):
            transport.write_now(b"".join(content))
        else:
            transport.write(b"".join(content))
        self.message_event.set()
        if not self.keep_alive:
            self.transport.close()
        self.on_response()
        return True

    def when_disconnected(self, callback: Callable[[], None] | None) -> None:
        """Call `callback` once the client goes while this cycle's response is unfinished
        (from the protocol's connection_lost; None: no more): what a task awaiting `receive`
        would learn, without the task (asgi.DisconnectWatch)."""
        self.on_disconnect = callback


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """Configured per server by `guarded_protocol` (the per-IP counts belong to one server)."""

    limits: ClassVar[Limits] = Limits()
    open_per_ip: ClassVar[dict[str, int]] = {}

    # In slots: in the instance dict they took uvicorn's 28 attributes past the 30 keys CPython
    # shares between instances, and every connection got a dict of its own (~1.6 KB).
    __slots__ = ("_counted_ip", "_deadline", "_phase", "_timer")
    _phase: int
    _deadline: float
    _timer: asyncio.TimerHandle | None
    _counted_ip: str | None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._phase, self._timer, self._counted_ip = _IDLE, None, None
        super().connection_made(transport)
        self.flow = LightFlowControl(transport, self.loop)
        self.pipeline = Pipeline()  # type: ignore[assignment]
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
        ip = self.client[0] if self.client else None
        if ip is not None:
            count = self.open_per_ip.get(ip, 0)
            if 0 < self.limits.max_per_ip <= count:  # 0: no cap (behind a proxy)
                transport.write(TOO_MANY_CONNECTIONS)
                transport.close()
                return
            self.open_per_ip[ip] = count + 1
            self._counted_ip = ip
        self._enter(_HEADERS, self.limits.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        ip = self._counted_ip
        if ip is not None:
            self._counted_ip = None
            left = self.open_per_ip[ip] - 1
            if left:
                self.open_per_ip[ip] = left
            else:
                del self.open_per_ip[ip]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._phase = _IDLE
        super().connection_lost(exc)
        cycle = self.cycle
        if isinstance(cycle, ChunkWritingCycle) and cycle.disconnected and cycle.on_disconnect:
            callback, cycle.on_disconnect = cycle.on_disconnect, None
            callback()

    def on_message_begin(self) -> None:
        # The first request's header deadline runs from the connection; don't extend it.
        if self._phase != _HEADERS:
            self._enter(_HEADERS, self.limits.header_timeout_s)
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._enter(_BODY, self.limits.body_timeout_s)
        existing = self.cycle
        super().on_headers_complete()
        if self.cycle is not existing:  # a new request's cycle: nothing waits on it or set it yet
            self.cycle.message_event = LightEvent(self.loop)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self._phase = _IDLE
        super().on_message_complete()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        cycle.__class__ = ChunkWritingCycle  # adds methods and a callback (None by default)
        super()._start_asgi_task(cycle, app)

    def _enter(self, phase: int, timeout: float) -> None:
        self._phase = phase
        self._deadline = self.loop.time() + timeout
        timer = self._timer
        # An armed timer due before the deadline re-checks it when it fires; only one due
        # after it (left from a longer phase) must be moved earlier.
        if timer is None or timer.when() > self._deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(self._deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._phase == _IDLE or self.transport.is_closing():
            return
        if self.loop.time() < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._on_timer)
            return
        # A 408 only where no response is being written (a pipelined request may be waiting
        # behind one); mid-body the app sees the disconnect instead.
        if self._phase == _HEADERS and (self.cycle is None or self.cycle.response_complete):
            self.transport.write(HEADER_TIMEOUT)
        self.transport.close()


def guarded_protocol(limits: Limits) -> type[GuardedHttpToolsProtocol]:
    """A protocol class for one uvicorn server (`uvicorn.Config(http=...)`)."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"limits": limits, "open_per_ip": {}},
    )
