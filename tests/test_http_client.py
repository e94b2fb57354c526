"""The upstream HTTP client against real sockets: keep-alive reuse, the stale-connection race,
streamed chunked bodies, bodies framed by close, gzip, timeouts, refused connections, TLS."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tokenrelay.settings import Timeouts
from tokenrelay.upstreams.http_client import HttpClient, UpstreamConnectionError, UpstreamTimeout

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def server(
    handler: Handler, ssl_ctx: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, list[int]]]:
    """A raw HTTP server on a free port; yields its base URL and a list of connection ids."""
    connections: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(id(writer))
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    srv = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=ssl_ctx)
    port = srv.sockets[0].getsockname()[1]
    scheme = "https" if ssl_ctx else "http"
    try:
        yield f"{scheme}://localhost:{port}", connections
    finally:
        srv.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes] | None:
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    if not head:
        return None
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if line)
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return lines[0], headers, body


def json_response(body: bytes, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"{extra}\r\n"
    ).encode() + body


async def keep_alive_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        try:
            req = await read_request(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        if req is None:
            return
        line, _, body = req
        writer.write(json_response(b'{"line":"%s","len":%d}' % (line.encode(), len(body))))
        await writer.drain()


async def test_requests_reuse_one_keep_alive_connection() -> None:
    client = HttpClient()
    async with server(keep_alive_echo) as (url, conns):
        for i in range(5):
            async with await client.request(
                "POST", f"{url}/v1/x?q={i}", {"a": "b"}, b"hello"
            ) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "application/json"
                assert await resp.read() == b'{"line":"POST /v1/x?q=%d HTTP/1.1","len":5}' % i
    assert len(conns) == 1
    await client.close()


async def test_a_pooled_connection_the_server_closed_is_retried_on_a_new_one() -> None:
    async def one_request_then_close(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(json_response(b"{}"))  # says keep-alive, then hangs up anyway
        await w.drain()

    client = HttpClient()
    async with server(one_request_then_close) as (url, conns):
        for _ in range(3):
            async with await client.request("GET", url + "/", {}) as resp:
                assert await resp.read() == b"{}"
            await asyncio.sleep(0.05)
    assert len(conns) == 3
    await client.close()


async def test_chunked_stream_arrives_chunk_by_chunk() -> None:
    release = asyncio.Event()

    async def sse(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n")
        w.write(b"transfer-encoding: chunked\r\n\r\n")
        for i in range(3):
            data = b"data: %d\n\n" % i
            w.write(b"%x\r\n%s\r\n" % (len(data), data))
            await w.drain()
            if i == 0:
                await release.wait()  # the client must have the first event before the rest
        w.write(b"0\r\n\r\n")
        await w.drain()

    client = HttpClient()
    async with server(sse) as (url, _):
        resp = await client.request("POST", url + "/stream", {}, b"{}")
        got = []
        async with resp:
            async for chunk in resp.content.iter_any():
                got.append(chunk)
                release.set()
        assert b"".join(got) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
        assert got[0] == b"data: 0\n\n"
    await client.close()


async def test_body_framed_by_close_and_gzip_are_read_whole() -> None:
    payload = b'{"ok":true}' * 100

    async def close_framed(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\nconnection: close\r\n\r\n")
        w.write(gzip.compress(payload))
        await w.drain()

    client = HttpClient()
    async with server(close_framed) as (url, _):
        resp = await client.request("GET", url + "/", {})
        async with resp:
            assert await resp.read() == payload
    await client.close()


async def test_error_status_bodies_are_readable() -> None:
    async def too_many(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        body = b'{"error":{"type":"rate_limit_error"}}'
        w.write(
            b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        await w.drain()

    client = HttpClient()
    async with server(too_many) as (url, _):
        resp = await client.request("POST", url + "/", {}, b"{}")
        async with resp:
            assert resp.status == 429 and resp.headers.get("Retry-After") == "7"
            assert b"rate_limit_error" in await resp.read()
    await client.close()


async def test_silence_past_the_read_timeout_is_a_timeout() -> None:
    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await w.drain()
        await asyncio.sleep(5)

    client = HttpClient(read_timeout=0.2)
    async with server(silent) as (url, _):
        resp = await client.request("POST", url + "/", {}, b"{}")
        with pytest.raises(TimeoutError):
            await resp.read()
    await client.close()


async def test_a_stream_slower_overall_than_the_read_timeout_but_never_silent_that_long() -> None:
    """The read timeout bounds each silence, not the whole body: chunks 0.1 s apart over
    ~1 s pass a 0.25 s timeout; then 0.6 s of silence fails it."""

    async def trickle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(10):
            w.write(b"1\r\nx\r\n")
            await w.drain()
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.6)
        w.write(b"0\r\n\r\n")
        await w.drain()

    client = HttpClient(read_timeout=0.25)
    async with server(trickle) as (url, _):
        resp = await client.request("POST", url + "/", {}, b"{}")
        got = b""
        with pytest.raises(TimeoutError):
            async for chunk in resp.content.iter_any():
                got += chunk
        assert got == b"x" * 10
    await client.close()


async def test_first_byte_timeout_covers_the_first_body_bytes_not_only_the_headers() -> None:
    """A vendor that sends 200 and its headers, then nothing: `request` itself fails (where the
    relay may still retry), not the first read after it."""

    async def headers_only(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        await w.drain()
        await asyncio.sleep(5)

    client = HttpClient(timeouts=Timeouts(connect_s=2, first_byte_s=0.3, idle_s=5, total_s=None))
    async with server(headers_only) as (url, _):
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(UpstreamTimeout) as caught:
            await client.request("POST", url + "/", {}, b"{}")
        assert caught.value.which == "first_byte" and loop.time() - start < 2
        # Per request, the call's own timeouts win over the client's.
        quick = Timeouts(connect_s=2, first_byte_s=0.1, idle_s=None, total_s=None)
        start = loop.time()
        with pytest.raises(UpstreamTimeout):
            await client.request("POST", url + "/", {}, b"{}", quick)
        assert loop.time() - start < 0.25
    await client.close()


async def test_total_timeout_ends_a_body_that_never_goes_silent() -> None:
    async def endless(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(100):
            w.write(b"1\r\nx\r\n")
            await w.drain()
            await asyncio.sleep(0.05)

    client = HttpClient(timeouts=Timeouts(connect_s=2, first_byte_s=1, idle_s=0.5, total_s=0.6))
    async with server(endless) as (url, _):
        resp = await client.request("POST", url + "/", {}, b"{}")
        got = b""
        with pytest.raises(UpstreamTimeout) as caught:
            async for chunk in resp.content.iter_any():
                got += chunk
        assert caught.value.which == "total" and 3 <= len(got) < 100
    await client.close()


async def test_one_timer_keeps_the_idle_and_the_total_timeout_apart() -> None:
    """Both timeouts share one timer (http_client.Response._on_timer): a silence within the
    total fails as idle, a total within the idle fails as total, and a first byte slower than
    the idle timeout is the first-byte timeout's to judge, not the idle one's."""

    async def slow_then_silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        await asyncio.sleep(0.4)
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nx\r\n")
        await w.drain()
        await asyncio.sleep(5)

    loop = asyncio.get_running_loop()
    cases = [(0.2, 3.0, "idle", 0.55, 1.5), (3.0, 1.0, "total", 0.9, 2.0)]
    for idle_s, total_s, which, least, most in cases:
        timeouts = Timeouts(connect_s=2, first_byte_s=2, idle_s=idle_s, total_s=total_s)
        client = HttpClient(timeouts=timeouts)
        async with server(slow_then_silent) as (url, _):
            start = loop.time()
            resp = await client.request("POST", url + "/", {}, b"{}")
            with pytest.raises(UpstreamTimeout) as caught:
                await resp.read()
            assert caught.value.which == which and least <= loop.time() - start < most
        await client.close()


async def test_refused_connection_is_an_upstream_connection_error() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    client = HttpClient(connect_timeout=2)
    with pytest.raises(UpstreamConnectionError):
        await client.request("GET", f"http://127.0.0.1:{port}/", {})


async def test_tls_with_hostname_verification(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))
    async with server(keep_alive_echo, server_ctx) as (url, _):
        client = HttpClient(ssl_context=trusting)
        async with await client.request("POST", url + "/tls", {}, b"abc") as resp:
            assert await resp.read() == b'{"line":"POST /tls HTTP/1.1","len":3}'
        await client.close()
        stranger = HttpClient()  # the system CA store does not know our certificate
        with pytest.raises(UpstreamConnectionError):
            await stranger.request("POST", url + "/tls", {}, b"abc")


def test_forwarded_body_keeps_its_order_and_the_reader_gets_what_the_sink_declines() -> None:
    """Response.forward: body bytes go to the sink only while the reader waits with nothing
    queued; what the sink declines, and all that arrives after it until the reader has read
    it, goes to the reader in order; `interrupt` wakes the reader with b""."""
    from types import SimpleNamespace

    from tokenrelay.upstreams.http_client import Headers, Response

    async def run() -> tuple[list[bytes], list[bytes]]:
        resp = Response(SimpleNamespace(transport=None), None, asyncio.get_running_loop())  # type: ignore[arg-type]
        resp.start(200, Headers({"content-length": "9"}))
        sunk: list[bytes] = []
        read: list[bytes] = []
        accept = True

        def sink(chunk: bytes) -> bool:
            if not accept:
                return False
            sunk.append(chunk)
            if chunk == b"stop":
                resp.interrupt()
            return True

        resp.forward(sink)

        async def reader() -> None:
            async for chunk in resp.iter_any():
                read.append(chunk)

        task = asyncio.create_task(reader())
        await asyncio.sleep(0)  # the reader waits
        resp.feed(b"a")  # forwarded
        accept = False
        resp.feed(b"b")  # declined: queued, the reader woken
        accept = True
        resp.feed(b"c")  # behind a queued piece: queued too
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        resp.feed(b"stop")  # the reader waits again: forwarded, and it interrupts
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        resp.finish()
        await task
        return sunk, read

    sunk, read = asyncio.run(run())
    assert sunk == [b"a", b"stop"]
    assert read == [b"bc", b""]
