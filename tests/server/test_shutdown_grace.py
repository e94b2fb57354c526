"""On shutdown the gateway waits TOKENRELAY_SHUTDOWN_GRACE_S for requests in flight, no longer."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

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


@pytest.mark.parametrize(
    ("api", "model"),
    [("openai", "gpt-4o"), ("anthropic", "gpt-4o"), ("anthropic", "claude-haiku-4-5")],
)
def test_a_stream_cut_by_shutdown_ends_with_an_error_event_and_bills_what_was_sent(
    tmp_path: Path, api: str, model: str
) -> None:
    gw, thread = start_gateway(tmp_path, shutdown_grace_s=GRACE)
    key = gw.create_key("grace")
    prompt = [{"role": "user", "content": "[[words:300]] [[delay:100]]"}]
    if api == "openai":
        url, headers = gw.proxy + "/v1/chat/completions", {"authorization": f"Bearer {key}"}
        body: dict[str, object] = {"model": model, "stream": True, "messages": prompt}
    else:
        url = gw.proxy + "/v1/messages"
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
        body = {"model": model, "stream": True, "max_tokens": 2000, "messages": prompt}
    lines: list[str] = []
    with httpx.stream("POST", url, headers=headers, json=body, timeout=60) as r:
        request_id = r.headers["x-request-id"]
        for line in r.iter_lines():
            lines.append(line)
            if len(lines) == 20:
                gw.server.should_exit = True
    thread.join(timeout=GRACE + SLACK)
    data = [line for line in lines if line.startswith("data: ")]
    assert '"error"' in data[-1], data[-3:]  # the format's error event closes the stream
    assert "[DONE]" not in data[-1] and "message_stop" not in data[-1]
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        status, output, cost = db.execute(
            "SELECT status, output_tokens, cost_nano FROM usage_records WHERE request_id = ?",
            (request_id,),
        ).fetchone()
    assert status == "cancelled"
    assert 0 < output < 300 and cost > 0  # what was delivered, no more
