"""count_tokens reads bpe_openai's Rust tokenizer directly (its `Encoding` wrapper builds ~12 MB
of Python tables only decoding needs): every count, and every refusal that makes count_tokens
fall back to the byte count, must stay what the wrapper's `encode` gave."""

from __future__ import annotations

from collections.abc import Callable

import bpe_openai
import pytest

from tokenrelay.billing import metering

TEXTS = {
    "empty": "",
    "ascii": "Say hello. The quick brown fox jumps over the lazy dog 1234567890 times.",
    "code": 'def f(x):\n    return {"a": [1, 2, 3], "b": x ** 2}  # comment\n\t\r\n',
    "unicode": "Grüße, 世界! Привет мир. 🎉🚀 naïve café — “quotes” … ١٢٣",
    "lone surrogate": "before \ud800 after",
    "special token": "text with <|endoftext|> inside",
    "other special": "<|endofprompt|>",
    "almost special": "<|endoftext| and |endofprompt|>",
    "a slice": "lorem ipsum dolor sit amet " * 7_000,
    "no spaces": "x" * 200_000,
    "too long": "y" * 1_000_000,
}


def _outcome(count: Callable[[str], int], text: str) -> int | type[Exception]:
    try:
        return count(text)
    except ValueError:  # the wrapper's refusals are ValueErrors (TokenLimitError too)
        return ValueError


@pytest.mark.parametrize("name", list(TEXTS))
def test_counts_and_refusals_equal_the_wrappers(name: str) -> None:
    text = TEXTS[name]
    encoding = bpe_openai.get_encoding("o200k_base")
    expected = _outcome(lambda t: len(encoding.encode(t)), text)
    assert _outcome(metering._encoded_len, text) == expected


def test_count_tokens_falls_back_to_bytes_where_the_tokenizer_refuses() -> None:
    text = "the end: <|endoftext|>"
    assert metering.count_tokens(text) == len(text.encode())
    assert metering.count_tokens("Say hello.") == 3


def test_the_special_tokens_checked_are_the_encodings() -> None:
    encoding = bpe_openai.get_encoding("o200k_base")
    assert set(metering._SPECIAL) == encoding.special_tokens_set
