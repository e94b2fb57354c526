"""On shutdown the gateway waits TOKENRELAY_SHUTDOWN_GRACE_S for requests in flight, no longer."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from gateway_support import start_gateway

GRACE = 1
SLACK = 8.0  # CI has two slow, shared cores


def test_shutdown_waits_at_most_the_grace_for_a_stream(tmp_path: Path) -> None:
    gw, thread = start_gateway(tmp_path, shutdown_grace_s=GRACE)
    key = gw.create_key("grace")
    started = threading.Event()
    lines: list[str] = []

    def stream() -> None:  # ~30 s of stream, far longer than the grace
        body = {
            "model": "gpt-4o",
            "stream": True,
            "messages": [{"role": "user", "content": "[[words:300]] [[delay:100]]"}],
        }
        headers = {"authorization": f"Bearer {key}"}
        url = gw.proxy + "/v1/chat/completions"
        try:
            with httpx.stream("POST", url, headers=headers, json=body, timeout=60) as r:
                for line in r.iter_lines():
                    lines.append(line)
                    started.set()
        except httpx.HTTPError:
            pass  # cut at the end of the grace: what this test expects
        started.set()

    client = threading.Thread(target=stream, daemon=True)
    client.start()
    assert started.wait(30)
    start = time.monotonic()
    gw.server.should_exit = True
    thread.join(timeout=GRACE + SLACK)
    assert not thread.is_alive(), "the server outlived its shutdown grace"
    assert time.monotonic() - start >= GRACE  # the stream had its grace
    client.join(timeout=SLACK)
    assert "data: [DONE]" not in lines
