"""Slow or greedy clients can't hold the gateway's connections: header and body deadlines, a cap
per client IP. Normal keep-alive clients and long responses are never cut."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from gateway_support import RunningGateway, served

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 3.0
PER_IP = 4
SLACK = 5.0  # CI has two slow, shared cores


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    yield from served(
        tmp_path_factory.mktemp("limits"),
        header_timeout_s=HEADER_TIMEOUT,
        body_timeout_s=BODY_TIMEOUT,
        keepalive_timeout_s=60,
        max_connections_per_ip=PER_IP,
    )


def connect(gw: RunningGateway) -> socket.socket:
    url = httpx.URL(gw.url)
    sock = socket.create_connection((url.host, url.port), timeout=BODY_TIMEOUT + 2 * SLACK)
    return sock


def read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes; and how long that took."""
    start, data = time.monotonic(), b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - start


def read_head(sock: socket.socket) -> bytes:
    """What `sock` receives up to the end of a response head at least."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        data += chunk
    return data


def get_health(sock: socket.socket) -> bytes:
    """One keep-alive GET /healthz on `sock`; the response's body."""
    sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n")
    head, _, body = read_head(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return body


@pytest.mark.parametrize("partial", [b"", b"GET /healthz HT", b"GET /healthz HTTP/1.1\r\nhost: x"])
def test_stalled_headers_are_closed_after_header_timeout(
    gw: RunningGateway, partial: bytes
) -> None:
    with connect(gw) as sock:
        sock.sendall(partial)
        data, elapsed = read_until_closed(sock)
    assert elapsed < HEADER_TIMEOUT + SLACK
    assert data.startswith(b"HTTP/1.1 408"), data


def test_trickled_body_is_closed_after_body_timeout(gw: RunningGateway) -> None:
    key = gw.create_key("trickle")
    head = (
        "POST /api/proxy/v1/chat/completions HTTP/1.1\r\nhost: gw\r\n"
        f"authorization: Bearer {key}\r\ncontent-type: application/json\r\n"
        "content-length: 10000\r\n\r\n"
    )
    with connect(gw) as sock:
        sock.sendall(head.encode())
        start = time.monotonic()
        sock.settimeout(0.2)
        closed = False
        while time.monotonic() - start < BODY_TIMEOUT + SLACK and not closed:
            try:
                sock.sendall(b" ")
                closed = sock.recv(65536) == b""
            except TimeoutError:
                continue
            except OSError:  # reset: closed with our bytes unread
                closed = True
        elapsed = time.monotonic() - start
    assert closed
    # The header deadline stopped at the headers; the body's own one closed it.
    assert HEADER_TIMEOUT < elapsed < BODY_TIMEOUT + SLACK


def test_connections_over_the_per_ip_cap_are_refused(gw: RunningGateway) -> None:
    held = [connect(gw) for _ in range(PER_IP)]
    try:
        for sock in held:
            assert get_health(sock)  # served, then idle in keep-alive
        with connect(gw) as extra:
            data, _ = read_until_closed(extra)
        assert data.startswith(b"HTTP/1.1 429"), data
        assert b'"too many connections from this address"' in data
        held.pop().close()
        deadline = time.monotonic() + SLACK
        while True:  # the server sees the close a moment later
            with connect(gw) as again:
                try:
                    assert get_health(again)
                    break
                except (AssertionError, OSError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
    finally:
        for sock in held:
            sock.close()


def test_idle_keep_alive_connection_outlives_header_and_body_timeouts(gw: RunningGateway) -> None:
    with connect(gw) as sock:
        for _ in range(4):  # 4 requests spread over more than both timeouts
            assert get_health(sock)
            time.sleep(HEADER_TIMEOUT + 0.5)
        assert get_health(sock)


def test_a_stream_longer_than_every_timeout_is_not_cut(gw: RunningGateway) -> None:
    key = gw.create_key("stream")
    prompt = "[[words:40]] [[delay:125]]"  # ~5 s of stream
    start = time.monotonic()
    with httpx.Client(timeout=60) as client:
        r = client.post(
            gw.proxy + "/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={
                "model": "gpt-4o",
                "stream": True,
                "messages": [{"role": "user", "content": prompt}],
            },
        )
        assert r.status_code == 200, r.text
        assert time.monotonic() - start > BODY_TIMEOUT
        assert r.text.rstrip().endswith("data: [DONE]")
        # The same connection serves the next request after it.
        assert client.get(gw.url + "/healthz").status_code == 200


def test_sized_answers_arrive_whole_and_in_order(gw: RunningGateway) -> None:
    """A sized answer's head waits for its body to go out in one write: a HEAD answer (no body
    ever follows) still gets its head, and answers on one keep-alive connection, pipelined
    too, come whole and in order."""
    with connect(gw) as sock:
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nhost: gw\r\n\r\n")
        head = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"\r\ncontent-length: " in head.lower()
        first = get_health(sock)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n" * 2)
        data = b""
        while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(first):
            chunk = sock.recv(65536)
            assert chunk, "connection closed"
            data += chunk
    _, _, rest = data.partition(b"\r\n\r\n")
    assert rest.startswith(first) and rest[len(first) :].startswith(b"HTTP/1.1 200"), data


def test_pipelined_requests_are_answered_in_the_order_sent(gw: RunningGateway) -> None:
    """Three requests in one write: the second and third wait behind the first (uvicorn's
    pipeline) and come back in the order they were sent, then a POST's body sent in pieces
    still reaches the app whole."""
    paths = [b"/healthz", b"/no-such-page-1", b"/no-such-page-2"]
    with connect(gw) as sock:
        sock.sendall(b"".join(b"GET %s HTTP/1.1\r\nhost: gw\r\n\r\n" % p for p in paths))
        data = b""
        while data.count(b"HTTP/1.1 ") < 3 or b"no-such-page-2" not in data:
            chunk = sock.recv(65536)
            assert chunk, "connection closed"
            data += chunk
        assert re.findall(rb"HTTP/1\.1 (\d{3})", data) == [b"200", b"404", b"404"]
        assert data.index(b"no-such-page-1") < data.index(b"no-such-page-2")
        body = b'{"model": "no-such-model", "messages": []}'
        head = (
            b"POST /api/proxy/v1/chat/completions HTTP/1.1\r\nhost: gw\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
        )
        sock.sendall(head + body[:10])
        time.sleep(0.2)
        sock.sendall(body[10:])
        assert read_head(sock).startswith(b"HTTP/1.1 401")  # read whole, then the key checked


@pytest.fixture(scope="module")
def short(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """A gateway whose keep-alive timeout (1 s) is the shortest of its deadlines."""
    yield from served(
        tmp_path_factory.mktemp("keepalive"),
        keepalive_timeout_s=1,
        header_timeout_s=30,
        body_timeout_s=30,
    )


def test_idle_keep_alive_connection_is_closed_after_keep_alive_timeout(
    short: RunningGateway,
) -> None:
    """An idle connection after a response closes at the keep-alive timeout, silently (no 408:
    no request was under way), and not before it."""
    with connect(short) as sock:
        assert get_health(sock)
        rest, waited = read_until_closed(sock)
    assert rest == b""
    assert 0.9 <= waited < 1 + SLACK
    with connect(short) as sock:  # each request restarts the idle time
        for _ in range(3):
            assert get_health(sock)
            time.sleep(0.6)
        assert get_health(sock)


def test_a_connection_answered_before_its_body_arrived_still_times_out(
    short: RunningGateway,
) -> None:
    """A request answered before its body was all sent (here a 404 for an unknown path): once
    the body's last byte is in, the connection idles to the keep-alive timeout like any other."""
    with connect(short) as sock:
        sock.sendall(b"POST /no-such-route HTTP/1.1\r\nhost: gw\r\ncontent-length: 10\r\n\r\n")
        assert read_head(sock).startswith(b"HTTP/1.1 404")
        sock.sendall(b"0123456789")
        rest, waited = read_until_closed(sock)
    assert rest == b"" and waited < 1 + SLACK  # the body was no second request


def test_a_connection_idles_to_the_keep_alive_timeout_after_a_stream(
    short: RunningGateway,
) -> None:
    """A stream's connection times nothing while it streams (http_guard `streaming`): after
    its end, the keep-alive deadline is armed again, and the connection closes on it."""
    key = short.create_key("stream-then-idle")
    body = (
        b'{"model":"gpt-4o","stream":true,'
        b'"messages":[{"role":"user","content":"[[words:8]] [[delay:100]]"}]}'
    )
    with connect(short) as sock:
        sock.sendall(
            b"POST /api/proxy/v1/chat/completions HTTP/1.1\r\nhost: gw\r\n"
            b"content-type: application/json\r\nauthorization: Bearer %s\r\n"
            b"content-length: %d\r\n\r\n%s" % (key.encode(), len(body), body)
        )
        data = b""
        while not data.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 200") and b"data: [DONE]" in data
        rest, waited = read_until_closed(sock)
    assert rest == b""
    assert 0.9 <= waited < 1 + SLACK
