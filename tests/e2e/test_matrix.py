"""Every catalog model × both client APIs × stream / non-stream, driven by the official SDKs.

Stream and non-stream must give the same text and the same usage (the emulator is
deterministic), and the response must say which model answered.
"""

from __future__ import annotations

import anthropic
import openai
import pytest

from tokenrelay.catalog import Catalog

MODELS = [e.id for e in Catalog.load().entries() if e.kind == "chat"]
PROMPT = [{"role": "user", "content": "Explain recursion in 3 sentences."}]


@pytest.fixture(scope="module")
def claude(gateway, api_key) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=api_key, base_url=gateway.proxy, max_retries=0)


@pytest.fixture(scope="module")
def gpt(gateway, api_key) -> openai.OpenAI:
    return openai.OpenAI(api_key=api_key, base_url=gateway.proxy + "/v1", max_retries=0)


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_api_stream_equals_non_stream(claude: anthropic.Anthropic, model: str) -> None:
    entry = Catalog.load().resolve(model)
    assert entry is not None
    msg = claude.messages.create(model=model, max_tokens=512, messages=PROMPT)
    text = "".join(b.text for b in msg.content if b.type == "text")
    assert text.strip()
    assert msg.id.startswith("msg_")
    assert msg.model == entry.entry.upstream
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0

    with claude.messages.stream(model=model, max_tokens=512, messages=PROMPT) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == text
    assert final.usage.output_tokens == msg.usage.output_tokens
    assert final.usage.input_tokens == msg.usage.input_tokens
    assert final.stop_reason == "end_turn"


@pytest.mark.parametrize("model", MODELS)
def test_openai_api_stream_equals_non_stream(gpt: openai.OpenAI, model: str) -> None:
    entry = Catalog.load().resolve(model)
    assert entry is not None
    completion = gpt.chat.completions.create(model=model, messages=PROMPT)
    text = completion.choices[0].message.content or ""
    assert text.strip()
    assert completion.model == entry.entry.upstream
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0

    chunks = list(
        gpt.chat.completions.create(
            model=model, messages=PROMPT, stream=True, stream_options={"include_usage": True}
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    usage_chunks = [c for c in chunks if c.usage is not None]
    # One usage report, last; DeepSeek (passed through as-is) puts it on its finish chunk.
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1]
    assert usage_chunks[0].usage.completion_tokens == completion.usage.completion_tokens
    assert usage_chunks[0].usage.prompt_tokens == completion.usage.prompt_tokens
    assert len({c.id for c in chunks}) == 1


def test_openai_stream_without_include_usage_has_no_usage_chunk(gpt: openai.OpenAI) -> None:
    for model in ("gpt-4o", "claude-sonnet-4-6", "deepseek-chat", "grok-2", "gemini-2.5-flash"):
        chunks = list(gpt.chat.completions.create(model=model, messages=PROMPT, stream=True))
        assert chunks and all(c.choices for c in chunks), model
        assert chunks[-1].choices[0].finish_reason == "stop"
