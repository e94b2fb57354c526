"""Tiny raw-ASGI helpers for the hot path (no framework between the socket and the relay)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
# A stream framed as one JSON array (sse.JsonArrayFrame): streamed all the same.
JSON_ARRAY_STREAM_HEADERS = [
    (b"content-type", b"application/json; charset=UTF-8"),
    *SSE_HEADERS[1:],
]


class BodyTooLarge(Exception):
    pass


class ClientDisconnected(Exception):
    pass


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; BodyTooLarge past `limit` bytes (after draining, see below)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                if message.get("more_body", False):
                    await _drain(receive, limit)
                raise BodyTooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _drain(receive: Receive, budget: int) -> None:
    """Read and drop up to `budget` more body bytes. A client still uploading when the
    server answers and closes may get a connection reset instead of the 413 (the unread
    bytes make the kernel send RST), so the rest of a moderately oversized body is
    swallowed first; past the budget the client is on its own."""
    while budget > 0:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def header_map(scope: Scope) -> dict[str, str]:
    """Request headers as a lower-case dict (last one wins; we need no repeated headers)."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]] = JSON_HEADERS,
) -> None:
    # The gateway's own server cycle writes a whole answer in one step (http_guard's
    # `write_whole`): 3.5 µs in process against 5.2-6.7 for two ASGI messages and a check
    # a header.
    write_whole = getattr(getattr(send, "__self__", None), "write_whole", None)
    if write_whole is not None and write_whole(status, list(headers), body):
        return
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send,
    status: int,
    payload: Any,
    extra_headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    await send_bytes(send, status, orjson.dumps(payload), [*JSON_HEADERS, *extra_headers])


class DisconnectWatch:
    """Notices the client going away while we stream (uvicorn drops sends silently after a
    disconnect, so only `receive` tells us) and cancels the streaming task right away, which
    closes the upstream connection too.

    Without `cancel` it only records the disconnect. Under uvicorn that needs no watcher: the
    request cycle behind `receive` flags its own disconnect (connection_lost), so the flag is
    read instead of a task awaiting `receive` — a task created and cancelled per request cost
    ~10 µs of CPU. With `cancel`, the gateway's cycle (server/http_guard.py) calls back from
    connection_lost instead (`when_disconnected`): no task either, nor its ~1 KB for a
    stream's life. Any other server gets the watcher task."""

    def __init__(self, receive: Receive, *, cancel: bool = True) -> None:
        self._receive = receive
        self._cancel = cancel
        self._disconnected = False
        self._cycle: Any = None
        self._task: asyncio.Task[None] | None = None
        self._owner: asyncio.Task[Any] | None = None

    @property
    def disconnected(self) -> bool:
        return self._disconnected or (self._cycle is not None and self._cycle.disconnected)

    async def gone(self) -> bool:
        """Whether the client has left. A watcher task is let run first, so a disconnect that
        arrived with the answer is seen; uvicorn's flag is set by connection_lost itself (one
        that arrives in the same instant as the answer is a race either way)."""
        if self._task is not None and not self._disconnected:
            await asyncio.sleep(0)
        return self.disconnected

    async def __aenter__(self) -> DisconnectWatch:
        cycle = getattr(self._receive, "__self__", None)
        if type(getattr(cycle, "disconnected", None)) is bool:
            if not self._cancel:
                self._cycle = cycle
                return self
            when_disconnected = getattr(cycle, "when_disconnected", None)
            if when_disconnected is not None:
                self._cycle = cycle
                self._owner = asyncio.current_task()
                when_disconnected(self._left)
                return self
        self._owner = asyncio.current_task()
        self._task = asyncio.create_task(self._watch())
        return self

    def _left(self) -> None:
        self._disconnected = True
        if self._owner is not None:
            self._owner.cancel()

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                if self._cancel:
                    self._left()
                else:
                    self._disconnected = True
                return

    def swallow_cancel(self) -> None:
        """We cancelled our own task to stop streaming; undo it so cleanup can await."""
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._owner is not None and self._cycle is not None:
            self._cycle.when_disconnected(None)  # a client gone after the block cancels nothing
        self._owner = None


def chunk_writer(send: Send) -> Any:
    """The server's synchronous writer of a stream's middle chunks behind `send`, when it has
    one (the gateway's uvicorn cycle: `can_write_chunk()`, `write_chunk(body)`), else None."""
    cycle = getattr(send, "__self__", None)
    return cycle if hasattr(cycle, "write_chunk") else None


def streaming(send: Send) -> None:
    """Tell the gateway's server cycle behind `send` (http_guard) that its response streams,
    once its head is sent: its connection then times nothing until the stream ends."""
    hook = getattr(getattr(send, "__self__", None), "streaming", None)
    if hook is not None:
        hook()


async def send_chunk(send: Send, body: bytes, *, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": more})
