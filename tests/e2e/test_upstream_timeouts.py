"""Vendor call timeouts (connect, first byte, idle, total), from the settings and per vendor from
the catalog, against the emulator's delay triggers, driven with the official SDKs.

Before the first byte reaches the client a timeout is retried, then answered 504 (`timeout`);
after it, the stream ends with the client format's error event and the request is billed for
what was delivered (usage estimated).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from gateway_support import ADMIN_TOKEN, RunningGateway, served, start_gateway
from tokenrelay.billing.metering import count_tokens
from tokenrelay.vendors import BUILTIN

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
# Margins for 2 slow shared cores: each timeout is 1.5 s, each stall it must catch 5 s or more,
# each gap it must let through 0.3 s.
SHORT = 1.5
CATALOG = """
[timeouts.gemini]
first_byte_s = 10
idle_s = 10
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("timeouts")
    (tmp / "catalog.toml").write_text(CATALOG)
    yield from served(
        tmp,
        catalog_path=str(tmp / "catalog.toml"),
        first_byte_timeout_s=SHORT,
        idle_timeout_s=SHORT,
        total_timeout_s=5.0,
        upstream_retries=1,
    )


@pytest.fixture(scope="module")
def key(gw: RunningGateway) -> str:
    return gw.create_key("timeouts")


def usage_row(gw: RunningGateway, request_id: str) -> dict[str, Any]:
    """The request's usage record (settled just after the response ended: polled)."""
    deadline = time.monotonic() + 10
    while True:
        r = httpx.get(gw.url + "/admin/v1/usage", headers=ADMIN, params={"limit": 1000})
        assert r.status_code == 200, r.text
        rows = {row["request_id"]: row for row in r.json()["data"]}
        if request_id in rows:
            return rows[request_id]
        assert time.monotonic() < deadline, f"no usage record for {request_id}"
        time.sleep(0.05)


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("stream", [False, True])
def test_first_byte_timeout_is_retried_then_504(gw: RunningGateway, key: str, stream: bool) -> None:
    gpt = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
    start = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        gpt.chat.completions.create(
            model="gpt-4o", messages=ask("[[first-delay:6000]] hi"), stream=stream
        )
    elapsed = time.monotonic() - start
    err = caught.value
    assert err.status_code == 504, err.response.text
    assert err.response.json()["error"]["code"] == "timeout"
    assert "first_byte timeout" in err.response.json()["error"]["message"]
    assert 2 * SHORT <= elapsed < 2 * 6, elapsed  # two attempts, each cut at the timeout
    row = usage_row(gw, err.response.headers["x-request-id"])
    assert row["attempts"] == 2 and row["status"] == "error"
    assert row["output_tokens"] == 0 and row["cost_usd"] in ("0", "0.00", "0.000000000")


def test_per_vendor_override_takes_effect(gw: RunningGateway, key: str) -> None:
    """[timeouts.gemini] gives Gemini 10 s where every other vendor has 1.5: a 3 s wait for
    the first byte passes there and fails elsewhere, on both client APIs."""
    slow = ask("[[first-delay:3000]] [[words:3]]")
    gpt = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
    done = gpt.chat.completions.create(model="gemini-2.5-flash", messages=slow)
    assert done.choices[0].message.content
    claude = anthropic.Anthropic(api_key=key, base_url=gw.proxy, max_retries=0)
    with claude.messages.stream(model="gemini-2.5-flash", max_tokens=50, messages=slow) as s:
        assert s.get_final_message().stop_reason == "end_turn"
    with pytest.raises(anthropic.APIStatusError) as caught:
        claude.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=slow)
    assert caught.value.status_code == 504
    assert caught.value.body["error"]["type"] == "timeout_error"  # type: ignore[index]


def openai_stream(gw: RunningGateway, key: str, model: str, text: str) -> tuple[str, str, str]:
    """(delivered text, request id, error message) of an OpenAI-API stream that fails."""
    gpt = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
    raw = gpt.chat.completions.with_raw_response.create(
        model=model, messages=ask(text), stream=True
    )
    got = ""
    with pytest.raises(openai.APIError) as caught:
        for chunk in raw.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                got += chunk.choices[0].delta.content
    return got, raw.headers["x-request-id"], caught.value.message


def anthropic_stream(gw: RunningGateway, key: str, model: str, text: str) -> tuple[str, str, str]:
    """(delivered text, request id, error message) of an Anthropic-API stream that fails."""
    claude = anthropic.Anthropic(api_key=key, base_url=gw.proxy, max_retries=0)
    raw = claude.messages.with_raw_response.create(
        model=model, max_tokens=500, messages=ask(text), stream=True
    )
    got = ""
    with pytest.raises(anthropic.APIStatusError) as caught:
        for event in raw.parse():
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                got += event.delta.text
    assert caught.value.body["error"]["type"] == "timeout_error"  # type: ignore[index]
    return got, raw.headers["x-request-id"], str(caught.value.message)


# (client API, model): the fast path and the translated path on each API.
STREAMS = [
    (openai_stream, "gpt-4o"),
    (openai_stream, "claude-sonnet-4-6"),
    (anthropic_stream, "claude-sonnet-4-6"),
    (anthropic_stream, "gpt-4o"),
]


def stalled(
    gw: RunningGateway, key: str, run: Any, model: str, text: str, which: str
) -> tuple[list[str], float]:
    """Run a stream that a timeout ends; checks the error and the usage record against the
    declared policy (billing/policy.py, default `delivered`): an estimate of the prompt and
    of the words delivered is recorded; the key pays for them when words reached the client,
    and nothing when none did. Returns (words, seconds)."""
    start = time.monotonic()
    got, request_id, message = run(gw, key, model, text)
    elapsed = time.monotonic() - start
    assert f"{which} timeout" in message
    row = usage_row(gw, request_id)
    assert row["status"] == "error" and row["usage_source"] == "estimated"
    assert row["output_tokens"] >= len(got.split()) and row["input_tokens"] > 0
    summary = (row["reason"], row["input_tokens"], row["output_tokens"], row["cost_usd"])
    if got:
        assert row["reason"] == "vendor_error_after_output", summary
        assert Decimal(row["cost_usd"]) > 0, summary
    else:
        assert row["reason"] == "vendor_error_before_output", summary
        assert Decimal(row["cost_usd"]) == 0, summary
    return got.split(), elapsed


@pytest.mark.parametrize(("run", "model"), STREAMS)
def test_idle_timeout_mid_stream_is_an_error_event_billed_for_what_was_delivered(
    gw: RunningGateway, key: str, run: Any, model: str
) -> None:
    # The stream opens at once, then each event comes 6 s after the last: past the 1.5 s bound,
    # so no word reaches the client and, by the default policy, the key pays nothing.
    words, elapsed = stalled(gw, key, run, model, "[[words:8]] [[delay:6000]]", "idle")
    assert words == [] and elapsed < 6, (words, elapsed)


def _balance(gw: RunningGateway, key_id: str) -> Decimal:
    r = httpx.get(f"{gw.url}/admin/v1/keys/{key_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return Decimal(r.json()["balance_usd"])


# Every vendor wire of the emulator: OpenAI's, Anthropic's and Gemini's. Gemini's idle bound,
# the catalog's 10 s, is longer than the 5 s total: that one ends it; and Gemini counts in
# each chunk the tokens so far (usageMetadata, its thinking included): its own count is billed.
STALLS = [
    *((run, model, "idle", SHORT, "estimated") for run, model in STREAMS),
    (openai_stream, "gemini-2.5-flash", "total", 5.0, "vendor"),
]


@pytest.mark.parametrize(("run", "model", "which", "bound", "source"), STALLS)
def test_a_stream_that_stalls_after_some_text_is_billed_for_that_text(
    gw: RunningGateway, run: Any, model: str, which: str, bound: float, source: str
) -> None:
    """The vendor streams 3 words, then hangs with the connection open ([[stall]]): after the
    idle timeout the client gets its format's error event after those words, and the key pays
    for exactly them (the estimate of the delivered text), not the credit hold."""
    r = httpx.post(
        gw.url + "/admin/v1/keys", headers=ADMIN, json={"name": "stall", "credits_usd": "10.00"}
    )
    key, key_id = r.json()["key"], r.json()["id"]
    start = time.monotonic()
    got, request_id, message = run(gw, key, model, "[[words:40]] [[stall:30000]]")
    elapsed = time.monotonic() - start
    assert f"{which} timeout" in message
    assert len(got.split()) == 3, got  # the emulator's words before the stall
    assert bound <= elapsed < bound + 8, elapsed
    row = usage_row(gw, request_id)
    assert row["status"] == "error" and row["usage_source"] == source
    assert row["output_tokens"] >= count_tokens(got) > 0 and row["input_tokens"] > 0
    if source == "estimated":  # no count from the vendor: exactly the delivered text
        assert row["output_tokens"] == count_tokens(got)
    cost = Decimal(row["cost_usd"])
    assert cost > 0
    deadline = time.monotonic() + 10
    while _balance(gw, key_id) != Decimal("10") - cost:  # the hold released, the cost debited
        assert time.monotonic() < deadline, (_balance(gw, key_id), cost)
        time.sleep(0.05)


@pytest.mark.parametrize(("run", "model"), STREAMS[::3])
def test_total_timeout_ends_a_stream_that_never_stalls(
    gw: RunningGateway, key: str, run: Any, model: str
) -> None:
    """A word every 0.3 s never trips the 1.5 s idle bound; the 5 s total ends it anyway."""
    words, elapsed = stalled(gw, key, run, model, "[[words:60]] [[delay:300]]", "total")
    assert 5 <= elapsed < 15, elapsed
    assert 3 <= len(words) < 60, words


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port whose connections never complete: a listening socket with a backlog of one,
    filled by a connection nobody accepts; further SYNs are dropped."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    filler = socket.create_connection(("127.0.0.1", port))
    probe = socket.socket()
    probe.settimeout(0.5)
    with pytest.raises(TimeoutError):  # the premise: a connect here hangs
        probe.connect(("127.0.0.1", port))
    probe.close()
    yield port
    filler.close()
    listener.close()


def test_connect_timeout_per_vendor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, black_hole: int
) -> None:
    """A configured upstream whose host never answers the connection: its own
    `[timeouts.<name>] connect_s` bounds each attempt; the client gets a 504."""
    for spec in BUILTIN:  # the built-in vendors stay emulated
        monkeypatch.delenv(spec.key_env, raising=False)
    monkeypatch.setenv("HOLE_API_KEY", "hole-operator-key-1234")
    (tmp_path / "catalog.toml").write_text(
        f"""
[upstreams.hole]
base_url = "http://127.0.0.1:{black_hole}/v1"
api_key_env = "HOLE_API_KEY"

[timeouts.hole]
connect_s = 1

[models."hole-1"]
vendor = "hole"
upstream = "hole-1"
input = 1
output = 1
context_window = 8192
max_output = 1024
"""
    )
    gw, thread = start_gateway(
        tmp_path, catalog_path=str(tmp_path / "catalog.toml"), emulate="auto", upstream_retries=1
    )
    try:
        key = gw.create_key("hole")
        gpt = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
        start = time.monotonic()
        with pytest.raises(openai.APIStatusError) as caught:
            gpt.chat.completions.create(model="hole-1", messages=ask("hi"))
        elapsed = time.monotonic() - start
        assert caught.value.status_code == 504
        assert "connect timeout" in caught.value.response.json()["error"]["message"]
        assert 2 <= elapsed < 8, elapsed  # two attempts of 1 s (the default would be 2 × 10 s)
        # The other vendors are untouched: the default 10 s, and they answer.
        ok = gpt.chat.completions.create(model="gpt-4o", messages=ask("hi [[words:2]]"))
        assert ok.choices[0].message.content
    finally:
        gw.server.should_exit = True
        thread.join(timeout=10)
