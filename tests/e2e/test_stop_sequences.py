"""Stop sequences a model refuses (xAI reasoning models answer `stop` with a 400) are enforced by
the gateway: the call goes without them and the answer is cut at the first occurrence, streamed
or not, through both client APIs, with the official SDKs against the emulator."""

from __future__ import annotations

import time
from typing import Any

import anthropic
import httpx
import openai
import pytest

from gateway_support import RunningGateway

N = 200  # [[words:N]] answers " w1 w2 ... wN"
PROMPT = [{"role": "user", "content": f"[[words:{N}]] count"}]
STOP = "6 w17"  # spans two of the emulator's deltas (" w16", " w17")
FULL = "".join(f" w{i}" for i in range(1, N + 1))
EXPECTED = FULL[: FULL.index(STOP)]
MODELS = ["grok-4.3", "grok-3-mini"]  # xAI reasoning models: they refuse `stop`


def _record(gateway: RunningGateway, key: str) -> dict[str, Any]:
    """The key's one usage record (records land just after the response)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        account = httpx.get(
            f"{gateway.proxy}/v1/account", headers={"authorization": f"Bearer {key}"}
        ).json()
        if account["recent_usage"]:
            return dict(account["recent_usage"][0])
        time.sleep(0.05)
    raise AssertionError("no usage record")


def _assert_billed(gateway: RunningGateway, key: str, stream: bool) -> dict[str, Any]:
    record = _record(gateway, key)
    assert record["status"] == "ok"
    if stream:  # cut at the stop: the vendor's usage never comes, what was delivered is billed
        assert record["usage_source"] == "estimated"
        assert 0 < record["output_tokens"] < N // 2
    else:  # the vendor generated (and charged) the whole answer before the gateway cut it
        assert record["usage_source"] == "vendor"
        assert record["output_tokens"] >= N
    return record


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", MODELS)
def test_openai_client(gateway: RunningGateway, model: str, stream: bool) -> None:
    key = gateway.create_key("stop-openai")
    gpt = openai.OpenAI(api_key=key, base_url=gateway.proxy + "/v1", max_retries=0)
    if stream:
        chunks = list(
            gpt.chat.completions.create(
                model=model,
                messages=PROMPT,  # type: ignore[arg-type]
                stop=[STOP, "never"],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
        assert reasons[-1] == "stop" and reasons.count("stop") == 1
        usage = chunks[-1].usage
    else:
        resp = gpt.chat.completions.create(
            model=model,
            messages=PROMPT,  # type: ignore[arg-type]
            stop=[STOP, "never"],
        )
        text = resp.choices[0].message.content or ""
        assert resp.choices[0].finish_reason == "stop"
        usage = resp.usage
    assert text == EXPECTED
    record = _assert_billed(gateway, key, stream)
    assert usage is not None and usage.completion_tokens == record["output_tokens"]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", MODELS)
def test_anthropic_client(gateway: RunningGateway, model: str, stream: bool) -> None:
    key = gateway.create_key("stop-anthropic")
    claude = anthropic.Anthropic(api_key=key, base_url=gateway.proxy, max_retries=0)
    if stream:
        with claude.messages.stream(
            model=model, max_tokens=1000, messages=PROMPT, stop_sequences=["never", STOP]
        ) as events:
            message = events.get_final_message()
    else:
        message = claude.messages.create(
            model=model, max_tokens=1000, messages=PROMPT, stop_sequences=["never", STOP]
        )
    text = "".join(b.text for b in message.content if b.type == "text")
    assert text == EXPECTED
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == STOP
    record = _assert_billed(gateway, key, stream)
    assert message.usage.output_tokens == record["output_tokens"]


def test_a_stop_that_never_occurs_changes_nothing(gateway: RunningGateway) -> None:
    key = gateway.create_key("stop-none")
    gpt = openai.OpenAI(api_key=key, base_url=gateway.proxy + "/v1", max_retries=0)
    chunks = list(
        gpt.chat.completions.create(
            model="grok-4.3",
            messages=PROMPT,  # type: ignore[arg-type]
            stop="never",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == FULL
    assert _record(gateway, key)["usage_source"] == "vendor"
