"""The o200k_base the gateway builds from its own copy of the vocabulary is tiktoken's
definition of it, and a vocabulary that is not OpenAI's file is refused."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tiktoken
from tiktoken_ext import openai_public

from tokenrelay.billing import tokenizer


def test_the_definition_is_tiktokens(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: dict[str, Any] = {}

    def load_tiktoken_bpe(url: str, expected_hash: str) -> dict[bytes, int]:
        asked.update(url=url, expected_hash=expected_hash)
        return {}  # the vocabulary itself is checked by its hash

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", load_tiktoken_bpe)
    definition = openai_public.o200k_base()
    assert asked["url"].endswith("/o200k_base.tiktoken")
    assert asked["expected_hash"] == tokenizer.VOCABULARY_SHA256
    assert definition["pat_str"] == tokenizer.PAT_STR
    assert definition["special_tokens"] == tokenizer.SPECIAL_TOKENS
    assert definition["name"] == "o200k_base"


TEXTS = [
    "",
    "Say hello. The quick brown fox jumps over the lazy dog 1234567890 times.",
    'def f(x):\n    return {"a": [1, 2, 3], "b": x ** 2}  # comment\n\t\r\n',
    "Grüße, 世界! Привет мир. 🎉🚀 naïve café — “quotes” … ١٢٣ I'm we'LL",
    "before \ud800 after \udfff",
    "text with <|endoftext|> inside",
    "<|endofprompt|>",
    "<|endoftext| and |endofprompt|>",
    "lorem ipsum dolor sit amet " * 7_000,
    "x" * 200_000,
]


def _outcome(encode: Callable[[str], list[int]], text: str) -> list[int] | type[Exception]:
    try:
        return encode(text)
    except ValueError:
        return ValueError


@pytest.fixture(scope="module")
def public_encoding() -> tiktoken.Encoding:
    """tiktoken's public Encoding of the same vocabulary, pattern and special tokens."""
    return tiktoken.Encoding(
        "o200k_base",
        pat_str=tokenizer.PAT_STR,
        mergeable_ranks=tokenizer.mergeable_ranks(tokenizer.vocabulary()),
        special_tokens=tokenizer.SPECIAL_TOKENS,
    )


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_encode_is_the_public_encodings(text: str, public_encoding: tiktoken.Encoding) -> None:
    """The same tokens and the same refusals as `tiktoken.Encoding.encode`."""
    assert _outcome(tokenizer.encode, text) == _outcome(public_encoding.encode, text)


def test_a_vocabulary_that_is_not_openais_is_refused() -> None:
    original = tokenizer.vocabulary()
    assert len(tokenizer.mergeable_ranks(original)) == 199_998
    swapped = original.replace(b"IQ== 0\nIg== 1\n", b"Ig== 0\nIQ== 1\n", 1)  # two ranks swapped
    assert swapped != original
    with pytest.raises(ValueError, match="sha256"):
        tokenizer.mergeable_ranks(swapped)


def test_a_gateway_with_a_vocabulary_that_is_not_openais_does_not_start(tmp_path: Path) -> None:
    """Refused at startup, not found out at a count (which would then bill bytes)."""
    code = f"""
import asyncio, os
from tokenrelay.billing import tokenizer
from tokenrelay.server.app import create_app
from tokenrelay.settings import Settings

packaged = tokenizer.vocabulary
tokenizer.vocabulary = lambda: packaged().replace(b"IQ== 0\\n", b"Ig== 0\\n", 1)

async def main():
    gw = create_app(Settings(database_url="sqlite:///{tmp_path}/t.db", emulate="all"))
    try:
        await gw.startup()
    except ValueError as exc:
        print("refused:", exc)
    else:
        print("started")
    os._exit(0)  # what started before the refusal is not shut down here

asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("refused:") and "sha256" in out.stdout, out.stdout + out.stderr
