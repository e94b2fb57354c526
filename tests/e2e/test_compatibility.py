"""Issue 25, item 5: every cell the compatibility contract (catalog/compatibility.py) marks
"yes" is driven here through the official SDK; `/compatibility` and its JSON are that table."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import openai
import pytest

from e2e.test_tool_loops import ANTHROPIC_TOOLS, OPENAI_TOOLS
from tokenrelay.catalog import compatibility as contract

ASK = [{"role": "user", "content": "What's the weather in Paris?"}]
WORDS = [{"role": "user", "content": "[[words:60]] count"}]  # the emulator: " w1 w2 ... w60"
STOP = "w17"


def _claude(gateway: Any, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=key, base_url=gateway.proxy, max_retries=0)


def _gpt(gateway: Any, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=gateway.proxy + "/v1", max_retries=0)


A_TOOLS: Any = ANTHROPIC_TOOLS
O_TOOLS: Any = OPENAI_TOOLS


def messages_text(c: anthropic.Anthropic, model: str) -> None:
    msg = c.messages.create(model=model, max_tokens=200, messages=ASK[:0] + WORDS)  # type: ignore[arg-type]
    with c.messages.stream(model=model, max_tokens=200, messages=WORDS) as s:  # type: ignore[arg-type]
        streamed = "".join(s.text_stream)
        final = s.get_final_message()
    text = "".join(b.text for b in msg.content if b.type == "text")
    assert text.strip() and streamed == text and msg.stop_reason == final.stop_reason
    assert final.usage.output_tokens == msg.usage.output_tokens > 0


def chat_text(c: openai.OpenAI, model: str) -> None:
    done = c.chat.completions.create(model=model, messages=WORDS)  # type: ignore[arg-type]
    chunks = list(c.chat.completions.create(model=model, messages=WORDS, stream=True))  # type: ignore[arg-type]
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert streamed == done.choices[0].message.content and streamed.strip()


def messages_tools(c: anthropic.Anthropic, model: str) -> None:
    first = c.messages.create(model=model, max_tokens=500, messages=ASK, tools=A_TOOLS)  # type: ignore[arg-type]
    call = next(b for b in first.content if b.type == "tool_use")
    assert first.stop_reason == "tool_use" and call.input["city"]  # type: ignore[index]
    turns: Any = [
        *ASK,
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": '{"temp_c": 18}'}
            ],
        },
    ]
    answer = c.messages.create(model=model, max_tokens=500, messages=turns, tools=A_TOOLS)
    assert "18" in "".join(b.text for b in answer.content if b.type == "text")


def chat_tools(c: openai.OpenAI, model: str) -> None:
    first = c.chat.completions.create(model=model, messages=ASK, tools=O_TOOLS)  # type: ignore[arg-type]
    msg = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls" and msg.tool_calls
    call = msg.tool_calls[0]
    assert json.loads(call.function.arguments)["city"]  # type: ignore[union-attr]
    turns: Any = [
        *ASK,
        {"role": "assistant", "content": msg.content, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18}'},
    ]
    answer = c.chat.completions.create(model=model, messages=turns, tools=O_TOOLS)
    assert "18" in (answer.choices[0].message.content or "")


def messages_streamed_tool_arguments(c: anthropic.Anthropic, model: str) -> None:
    with c.messages.stream(model=model, max_tokens=500, messages=ASK, tools=A_TOOLS) as s:  # type: ignore[arg-type]
        parts = [
            e.delta.partial_json
            for e in s
            if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
        ]  # type: ignore[union-attr]
    assert parts and json.loads("".join(parts))["city"]


def chat_streamed_tool_arguments(c: openai.OpenAI, model: str) -> None:
    chunks = list(c.chat.completions.create(model=model, messages=ASK, tools=O_TOOLS, stream=True))  # type: ignore[arg-type]
    parts = [
        t.function.arguments
        for ch in chunks
        if ch.choices
        for t in ch.choices[0].delta.tool_calls or []
        if t.function and t.function.arguments
    ]
    assert parts and json.loads("".join(parts))["city"]


def messages_stop_sequences(c: anthropic.Anthropic, model: str) -> None:
    msg = c.messages.create(model=model, max_tokens=300, messages=WORDS, stop_sequences=[STOP])  # type: ignore[arg-type]
    text = "".join(b.text for b in msg.content if b.type == "text")
    assert msg.stop_reason == "stop_sequence" and STOP not in text and text.rstrip().endswith("w16")


def messages_stop_sequences_text_only(c: anthropic.Anthropic, model: str) -> None:
    msg = c.messages.create(model=model, max_tokens=300, messages=WORDS, stop_sequences=[STOP])  # type: ignore[arg-type]
    text = "".join(b.text for b in msg.content if b.type == "text")
    assert STOP not in text and text.rstrip().endswith("w16")
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None  # as the table says


def chat_stop_sequences(c: openai.OpenAI, model: str) -> None:
    done = c.chat.completions.create(model=model, messages=WORDS, stop=[STOP])  # type: ignore[arg-type]
    text = done.choices[0].message.content or ""
    assert (
        done.choices[0].finish_reason == "stop"
        and STOP not in text
        and text.rstrip().endswith("w16")
    )


def messages_count_tokens(c: anthropic.Anthropic, model: str) -> None:
    short = c.messages.count_tokens(model=model, messages=ASK)  # type: ignore[arg-type]
    longer = c.messages.count_tokens(
        model=model, messages=WORDS + ASK[:0] + [{"role": "user", "content": "x " * 200}]
    )  # type: ignore[arg-type]
    assert 0 < short.input_tokens < longer.input_tokens


# (api, feature, status) -> what the SDK must see for a cell of that status
CHECKS: dict[tuple[str, str, str], Callable[[Any, str], None]] = {
    ("messages", "text", "yes"): messages_text,
    ("chat", "text", "yes"): chat_text,
    ("messages", "tools", "yes"): messages_tools,
    ("chat", "tools", "yes"): chat_tools,
    ("messages", "streamed_tool_arguments", "yes"): messages_streamed_tool_arguments,
    ("chat", "streamed_tool_arguments", "yes"): chat_streamed_tool_arguments,
    ("messages", "stop_sequences", "yes"): messages_stop_sequences,
    ("messages", "stop_sequences", "partial"): messages_stop_sequences_text_only,
    ("chat", "stop_sequences", "yes"): chat_stop_sequences,
    ("messages", "count_tokens", "yes"): messages_count_tokens,
}
CLAIMED = [c for c in contract.matrix() if c["status"] != "n/a"]


@pytest.mark.parametrize(
    "cell", CLAIMED, ids=[f"{c['api']}-{c['vendor']}-{c['feature']}" for c in CLAIMED]
)
def test_every_claimed_cell_holds(gateway, api_key, cell: dict[str, str]) -> None:
    client = (_claude if cell["api"] == "messages" else _gpt)(gateway, api_key)
    CHECKS[cell["api"], cell["feature"], cell["status"]](client, cell["model"])


def test_every_cell_is_checked_or_explained() -> None:
    for c in contract.matrix():
        assert (c["api"], c["feature"], c["status"]) in CHECKS or c["status"] == "n/a", c
        assert c["note"] or c["status"] == "yes", c


def test_the_page_and_json_are_the_table(gateway) -> None:
    doc = httpx.get(gateway.url + "/compatibility.json").json()
    assert doc == json.loads(json.dumps(contract.document()))
    page = httpx.get(gateway.url + "/compatibility")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    yes = sum(c["status"] == "yes" for c in CLAIMED)
    assert page.text.count('class="yes"') == yes and 'class="partial"' in page.text
