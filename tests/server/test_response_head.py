"""The gateway's server (http_guard's protocol and request cycle) writes the same response heads
as uvicorn's own, byte for byte, lets no forbidden byte through a header, and does not name
itself."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from tokenrelay.asgi import send_bytes
from tokenrelay.server.serve import uvicorn_config
from tokenrelay.settings import Settings

CASES: dict[str, tuple[int, list[tuple[bytes, bytes]], bytes]] = {
    "sized": (200, [(b"content-type", b"application/json"), (b"X-Cost", b"0.1")], b"{}"),
    "streamed": (200, [(b"content-type", b"text/event-stream")], b"data: 1\n\n"),
    "close": (200, [(b"Connection", b"keep-alive, Close"), (b"content-length", b"2")], b"ok"),
    "no content": (204, [(b"x-a", b"b")], b""),
    "bad value": (200, [(b"x-a", b"b\r\nset-cookie: stolen=1"), (b"content-length", b"0")], b""),
    "bad name": (200, [(b"x a", b"b"), (b"content-length", b"0")], b""),
}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"].strip("/")
    status, headers, body = CASES[path.removeprefix("whole/").replace("-", " ")]
    if path.startswith("whole/"):  # how the relay answers: the gateway's cycle writes it whole
        await send_bytes(send, status, body, [h for h in headers if h[0] != b"content-length"])
        return
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _serve(config: uvicorn.Config) -> Iterator[int]:
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def gateway_port() -> Iterator[int]:
    yield from _serve(uvicorn_config(app, Settings(), host="127.0.0.1", port=0, lifespan="off"))


@pytest.fixture(scope="module")
def uvicorn_port() -> Iterator[int]:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", http="httptools", server_header=False
    )
    yield from _serve(config)


def _exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    # The Date header is the only part allowed to differ between two servers.
    return b"\r\n".join(line for line in data.split(b"\r\n") if not line.startswith(b"date: "))


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("how", ["asgi", "whole"])
def test_heads_match_uvicorn_byte_for_byte(
    case: str, method: str, how: str, gateway_port: int, uvicorn_port: int
) -> None:
    """`whole`: the relay's `send_bytes`, which the gateway's cycle writes in one step
    (http_guard's write_whole) and uvicorn's as two ASGI messages."""
    path = ("/whole/" if how == "whole" else "/") + case.replace(" ", "-")
    request = f"{method} {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n".encode()
    ours, theirs = _exchange(gateway_port, request), _exchange(uvicorn_port, request)
    assert ours == theirs
    assert b"uvicorn" not in ours  # the server does not name itself
    if case.startswith("bad"):  # the app's error: the connection closes, nothing is sent
        assert ours == b""
    else:
        assert ours.startswith(f"HTTP/1.1 {CASES[case][0]}".encode()), ours


def test_whole_answers_keep_the_connection_for_the_next_request(
    gateway_port: int, uvicorn_port: int
) -> None:
    """Three requests pipelined on one connection, each answered whole: every answer comes,
    in order, and the connection stays open until the last asks to close it."""
    one = b"GET /whole/sized HTTP/1.1\r\nhost: t\r\n\r\n"
    last = b"GET /whole/sized HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
    ours = _exchange(gateway_port, one * 2 + last)
    assert ours == _exchange(uvicorn_port, one * 2 + last)
    assert ours.count(b"HTTP/1.1 200 OK") == 3 and ours.endswith(b"{}")
