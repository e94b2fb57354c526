"""The gateway's HTTP/1.1 protocol for uvicorn's Server, with bounds uvicorn lacks: header and
body deadlines, a cap per IP.

uvicorn only closes idle keep-alive connections, so a client that sends half a request line and
stalls (slowloris) holds its connection forever. `guarded_protocol` builds the protocol class
(`GuardedHttpToolsProtocol`: httptools parsing, uvicorn's request cycle for the ASGI app):

- headers must be complete within `header_timeout_s` of the connection (first request) or of the
  request's first byte (later ones; the idle time between requests is the keep-alive timeout);
- the body must be complete within `body_timeout_s` of the headers;
- the response is never timed: a stream may run for as long as the vendor takes;
- at most `max_per_ip` connections per client IP; the next one gets a 429 and is closed.

It also sends a sized response's head and body in one write (`CoalescingTransport`), lets
the relay write a whole answer, or a stream's middle chunks, synchronously (`ChunkWritingCycle`:
`write_whole`, `write_chunk`), and keeps what a
connection holds small (`LightEvent`, `Pipeline`: uvicorn gives each connection three deques,
~760 B each, that nearly always stay empty).

There is at most one timer per connection, not one per request: each request (and each
keep-alive wait) only moves the deadline, and the timer re-checks it when it fires (re-armed
then if the deadline moved).
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import _TrustedHosts
from uvicorn.protocols.http.flow_control import (
    HIGH_WATER_LIMIT,
    FlowControl,
    service_unavailable,
)
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import (
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)
from uvicorn.server import ServerState


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

_IDLE, _HEADERS, _BODY, _KEEP_ALIVE = 0, 1, 2, 3


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
    conn: GuardedHttpToolsProtocol | None = None  # the connection it answers on (`streaming`)

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

    def streaming(self) -> None:
        """The response streams (asgi.streaming, once its head is sent)."""
        if self.conn is not None:
            self.conn.streaming()

    def when_disconnected(self, callback: Callable[[], None] | None) -> None:
        """Call `callback` once the client goes while this cycle's response is unfinished
        (from the protocol's connection_lost; None: no more): what a task awaiting `receive`
        would learn, without the task (asgi.DisconnectWatch)."""
        self.on_disconnect = callback


class GuardedHttpToolsProtocol(asyncio.Protocol):
    """HTTP/1.1 on httptools for uvicorn's Server, in place of uvicorn's HttpToolsProtocol: the
    same parsing and request cycle (ChunkWritingCycle, uvicorn's `send` and `receive`), with
    the deadlines and per-IP cap above, and less work a request. uvicorn's protocol armed a
    keep-alive timer for every response and cancelled it on the next request's bytes, made
    an asyncio.Event a request, and handed each request through ProxyHeadersMiddleware, a
    coroutine of its own: here the connection's one timer also keeps the keep-alive deadline,
    and the trusted-proxy check is made once a connection, the forwarded headers read only
    behind a trusted peer. A trivial ASGI app cost 88-123 µs of CPU a request under uvicorn's
    protocol on the 2026-12-07 VM, against 39-44 for a bare httptools protocol. No WebSocket:
    an upgrade request is answered as plain HTTP (uvicorn's with `ws="none"`).

    Configured per server by `guarded_protocol` (limits, trusted proxies, the per-IP counts)."""

    limits: ClassVar[Limits] = Limits()
    open_per_ip: ClassVar[dict[str, int]] = {}
    trusted: ClassVar[Any] = None  # uvicorn's _TrustedHosts of the forwarded headers' senders

    __slots__ = (
        "_counted_ip",
        "_deadline",
        "_forwarded",
        "_phase",
        "_timer",
        "access_log",
        "access_logger",
        "app",
        "app_state",
        "client",
        "config",
        "connections",
        "cycle",
        "expect_100_continue",
        "flow",
        "headers",
        "logger",
        "loop",
        "parser",
        "pipeline",
        "scheme",
        "scope",
        "server",
        "server_state",
        "tasks",
        "transport",
        "url",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.logger = logging.getLogger("uvicorn.error")
        self.access_logger = logging.getLogger("uvicorn.access")
        self.access_log = self.access_logger.hasHandlers()
        self.parser = httptools.HttpRequestParser(self)
        # Answer the first of pipelined requests even when the client closed after sending.
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.app_state = app_state
        self.server_state = server_state
        # uvicorn's Server closes them at shutdown (its annotation lists its own protocols)
        self.connections: set[Any] = server_state.connections
        self.tasks = server_state.tasks
        self.transport: Any = None
        self.flow: Any = None
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.pipeline = Pipeline()
        self.scope: dict[str, Any] = {}
        self.headers: list[tuple[bytes, bytes]] = []
        self.url = b""
        self.expect_100_continue = False
        self.cycle: ChunkWritingCycle | None = None
        self._phase, self._deadline = _IDLE, 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._counted_ip: str | None = None
        self._forwarded = False

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: Any) -> None:  # uvloop's is no asyncio.Transport
        self.connections.add(self)
        self.flow = LightFlowControl(transport, self.loop)
        self.transport = CoalescingTransport(transport, self.loop)
        self.server = get_local_addr(transport)
        self.client = get_remote_addr(transport)
        self.scheme = "https" if is_ssl(transport) else "http"
        ip = self.client[0] if self.client else None
        # Forwarded headers count only from a trusted proxy: decided once, for the peer.
        self._forwarded = ip is not None and self.trusted is not None and ip in self.trusted
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
        self.connections.discard(self)
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
        cycle = self.cycle
        if cycle is not None:
            if not cycle.response_complete:
                cycle.disconnected = True
            cycle.message_event.set()
        if self.flow is not None:
            self.flow.resume_writing()
        if exc is None and self.transport is not None:
            self.transport.close()
        self.parser = None  # type: ignore[assignment]
        if cycle is not None and cycle.disconnected and cycle.on_disconnect:
            callback, cycle.on_disconnect = cycle.on_disconnect, None
            callback()

    def eof_received(self) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._bad_request("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade:
            # No WebSocket here: the request was already answered as plain HTTP.
            self.logger.warning("Unsupported upgrade request.")

    def _bad_request(self, msg: str) -> None:
        self.logger.warning(msg)
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content += (name, b": ", value, b"\r\n")
        content += (
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(msg),
            b"connection: close\r\n\r\n",
            msg.encode("ascii"),
        )
        self.transport.write(b"".join(content))
        self.transport.close()

    def shutdown(self) -> None:
        """The server's graceful shutdown: close an idle connection now, a busy one after
        its response."""
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()
        else:
            self.cycle.keep_alive = False

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()

    # ------------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        # The first request's header deadline runs from the connection; don't extend it.
        if self._phase != _HEADERS:
            self._enter(_HEADERS, self.limits.header_timeout_s)
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "root_path": self.config.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._enter(_BODY, self.limits.body_timeout_s)
        parser, scope = self.parser, self.scope
        scope["method"] = parser.get_method().decode("ascii")
        http_version = parser.get_http_version()
        if http_version != "1.1":
            scope["http_version"] = http_version
        url = httptools.parse_url(self.url)
        path = url.path.decode("ascii")
        path = urllib.parse.unquote(path) if "%" in path else path
        root = self.config.root_path
        scope["path"] = root + path if root else path
        scope["raw_path"] = root.encode("ascii") + url.path if root else url.path
        scope["query_string"] = url.query or b""
        if self._forwarded:
            _apply_forwarded(scope, self.trusted)
        existing = self.cycle
        cycle = ChunkWritingCycle(
            scope=scope,  # type: ignore[arg-type]
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=LightEvent(self.loop),  # type: ignore[arg-type]
            expect_100_continue=self.expect_100_continue,
            keep_alive=http_version != "1.0" and parser.should_keep_alive(),
            on_response=self.on_response_complete,
        )
        cycle.conn = self
        self.cycle = cycle
        app = self.app
        limit = self.config.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            self.logger.warning("Exceeded concurrency limit.")
            app = service_unavailable
        if existing is None or existing.response_complete:
            self._start(cycle, app)
        else:  # pipelined behind a response still being written
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, app))

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return
        cycle.body += body
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            # Answered before its body was all in (a 404, a 413): from its last byte the
            # connection idles, as after any response (uvicorn's keep-alive timer, armed at
            # the response, was reset by every byte of that body).
            self._enter(_KEEP_ALIVE, self.config.timeout_keep_alive)
            return
        self._phase = _IDLE
        cycle.more_body = False
        cycle.message_event.set()

    # ------------------------------------------------------------------ requests

    def _start(self, cycle: RequestResponseCycle, app: Any) -> None:
        task = self.loop.create_task(cycle.run_asgi(app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start(cycle, app)
        elif self._phase == _IDLE:  # not already reading the next request
            self._enter(_KEEP_ALIVE, self.config.timeout_keep_alive)

    def streaming(self) -> None:
        """A response streams with its request read whole: nothing to time until it ends
        (on_response_complete then arms the keep-alive deadline). The timer of the headers'
        deadline would otherwise stay for up to its 10 s, only to find nothing to do: ~800 B
        traced (uvloop) a live stream."""
        if self._phase == _IDLE and self._timer is not None:
            self._timer.cancel()
            self._timer = None

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
        # behind one); mid-body the app sees the disconnect instead. An idle keep-alive
        # connection just closes.
        if self._phase == _HEADERS and (self.cycle is None or self.cycle.response_complete):
            self.transport.write(HEADER_TIMEOUT)
        self.transport.close()


def _apply_forwarded(scope: dict[str, Any], trusted: Any) -> None:
    """What uvicorn's ProxyHeadersMiddleware does for a request from a trusted proxy: the
    scheme from X-Forwarded-Proto, the client from X-Forwarded-For (its right-most
    untrusted address)."""
    proto: bytes | None = None
    forwarded_for: list[bytes] = []
    for name, value in scope["headers"]:
        if name == b"x-forwarded-proto":
            proto = value
        elif name == b"x-forwarded-for":
            forwarded_for.append(value)
    if proto is not None:
        scheme = proto.decode("latin1").strip()
        if scheme in ("http", "https", "ws", "wss"):
            scope["scheme"] = scheme
    if forwarded_for:
        host, port = trusted.get_trusted_client_address(b", ".join(forwarded_for).decode("latin1"))
        if host:
            scope["client"] = (host, port)


def guarded_protocol(limits: Limits, trusted_proxies: str = "") -> type[GuardedHttpToolsProtocol]:
    """A protocol class for one uvicorn server (`uvicorn.Config(http=...)`, `proxy_headers`
    off: `trusted_proxies`, uvicorn's `forwarded_allow_ips` syntax, are applied here)."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "__slots__": (),
            "limits": limits,
            "open_per_ip": {},
            "trusted": _TrustedHosts(trusted_proxies) if trusted_proxies else None,
        },
    )
