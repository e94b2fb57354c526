"""count_tokens is o200k_base's count, as OpenAI's tokenizers give it; where the tokenizer
refuses a text, the byte count stands in (never less than the tokens, never zero)."""

from __future__ import annotations

import pytest

from tokenrelay.billing import metering

# Counts given by GitHub's bpe crate (bpe-openai 0.1.4), an implementation of o200k_base
# independent of tiktoken's.
COUNTS = {
    "ascii": ("Say hello. The quick brown fox jumps over the lazy dog 1234567890 times.", 19),
    "code": ('def f(x):\n    return {"a": [1, 2, 3], "b": x ** 2}  # comment\n\t\r\n', 31),
    "unicode": ("Grüße, 世界! Привет мир. 🎉🚀 naïve café — “quotes” … ١٢٣", 26),
    "lone surrogate": ("before \ud800 after", 3),
    "almost special": ("<|endoftext| and |endofprompt|>", 13),
    "a slice": ("lorem ipsum dolor sit amet " * 7_000, 35_002),
    "no spaces": ("x" * 200_000, 25_000),
    "sliced at spaces": ("lorem ipsum dolor " * 55_000, 165_002),
    "sliced anywhere": ("y" * 1_000_000, 250_000),
}


@pytest.mark.parametrize("name", list(COUNTS))
def test_counts_are_o200k_base(name: str) -> None:
    text, expected = COUNTS[name]
    assert metering.count_tokens(text) == expected


@pytest.mark.parametrize("special", ["<|endoftext|>", "<|endofprompt|>"])
def test_a_special_tokens_text_is_counted_as_bytes(special: str) -> None:
    text = f"the end: {special}"
    assert metering.count_tokens(text) == len(text.encode())
    assert metering.count_tokens("Say hello.") == 3


def test_nothing_is_no_tokens() -> None:
    assert metering.count_tokens("") == 0


async def test_a_long_prompt_is_counted_while_the_event_loop_serves_others() -> None:
    """A long prompt (here a megabyte of letters without a space) is counted in a
    worker thread, other requests go on meanwhile (inline, the count would finish before any
    other task had a turn). The count is the same either way."""
    import asyncio

    from tokenrelay import ir
    from tokenrelay.gateway.opening_usage import count_opening, opening_input_tokens

    text = "x" * 1_000_000 + "y"  # unremembered: the piece cache keys on length and hash
    req = ir.Request(model="m", messages=[ir.Message("user", [ir.Text(text)])])
    count_done_when_others_ran: list[bool] = []

    async def another_request() -> None:
        count_done_when_others_ran.append(counting.done())

    counting = asyncio.ensure_future(count_opening(req))
    other = asyncio.ensure_future(another_request())  # its turn comes after the count's first
    counted = await counting
    await other
    assert count_done_when_others_ran == [False]
    assert counted == opening_input_tokens(req) == 125_000 + 1 + 4
