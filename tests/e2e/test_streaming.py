"""Streams are real streams: each upstream event reaches the client as it arrives."""

from __future__ import annotations

import socket
import time

import anthropic
import httpx
import openai
import orjson
import pytest

SLOW = [{"role": "user", "content": "[[words:4]] [[delay:300]]"}]
MODELS = ["claude-sonnet-4-6", "gpt-4o", "gemini-2.5-flash", "grok-4.3", "deepseek-chat"]


@pytest.mark.parametrize("model", MODELS)
def test_openai_stream_is_not_buffered(gateway, api_key, model) -> None:
    gpt = openai.OpenAI(api_key=api_key, base_url=gateway.proxy + "/v1", max_retries=0)
    arrivals: list[float] = []
    start = time.perf_counter()
    for chunk in gpt.chat.completions.create(model=model, messages=SLOW, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter() - start)
    assert len(arrivals) == 4
    # Words are 300 ms apart upstream; a buffering proxy would deliver them together at the end.
    assert arrivals[-1] - arrivals[0] > 0.6, arrivals


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_stream_is_not_buffered(gateway, api_key, model) -> None:
    claude = anthropic.Anthropic(api_key=api_key, base_url=gateway.proxy, max_retries=0)
    arrivals: list[float] = []
    start = time.perf_counter()
    with claude.messages.stream(model=model, max_tokens=100, messages=SLOW) as s:
        for _ in s.text_stream:
            arrivals.append(time.perf_counter() - start)
    assert len(arrivals) == 4
    assert arrivals[-1] - arrivals[0] > 0.6, arrivals


def test_stream_headers_disable_proxy_buffering(gateway, api_key) -> None:
    with httpx.stream(
        "POST",
        gateway.proxy + "/v1/chat/completions",
        headers={"authorization": f"Bearer {api_key}"},
        json={
            "model": "claude-sonnet-4-6",
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-accel-buffering"] == "no"
        assert r.headers["x-request-id"].startswith("req_")
        body = r.read().decode()
    assert body.rstrip().endswith("data: [DONE]")


def _raw_stream(url: str, api_key: str, model: str, slow: bool) -> bytes:
    """The whole body of a streamed chat completion whose words come 1 ms apart (so the
    gateway writes most of them from the vendor connection's callback), read by a client
    with a 4 KB receive buffer that, when `slow`, takes 512 bytes every 2 ms."""
    u = httpx.URL(url)
    body = orjson.dumps(
        {
            "model": model,
            "stream": True,
            "messages": [{"role": "user", "content": "[[words:1000]] [[delay:1]] a long answer"}],
        }
    )
    head = (
        f"POST /api/proxy/v1/chat/completions HTTP/1.1\r\nhost: {u.host}\r\n"
        f"authorization: Bearer {api_key}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(60)
        sock.connect((u.host, u.port))
        sock.sendall(head + body)
        data = b""
        while chunk := sock.recv(512 if slow else 65536):
            data += chunk
            if slow:
                time.sleep(0.002)
    return data.partition(b"\r\n\r\n")[2]


def _text_of(raw: bytes) -> str:
    """The content deltas of a chunked SSE body, in order; asserts it ended with [DONE]."""
    body, rest = b"", raw
    while True:  # de-chunk
        size, _, rest = rest.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        body, rest = body + rest[:n], rest[n + 2 :]
    events = [e[6:] for e in body.split(b"\n\n") if e.startswith(b"data: ")]
    assert events[-1] == b"[DONE]", events[-3:]
    text = []
    for e in events[:-1]:
        chunk = orjson.loads(e)
        for choice in chunk.get("choices") or ():
            text.append(choice["delta"].get("content") or "")
    return "".join(text)


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet-4-6"])
def test_a_slow_reader_gets_every_chunk_in_order(gateway, api_key, model) -> None:
    """The same text, in order and ended with [DONE], however the client reads."""
    fast = _text_of(_raw_stream(gateway.url, api_key, model, slow=False))
    slow = _text_of(_raw_stream(gateway.url, api_key, model, slow=True))
    assert len(fast.split()) == 1000
    assert slow == fast
