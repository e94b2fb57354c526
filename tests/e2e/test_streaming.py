"""Streams are real streams: each upstream event reaches the client as it arrives."""

from __future__ import annotations

import time

import anthropic
import httpx
import openai
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
