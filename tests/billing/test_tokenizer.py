"""The o200k_base the gateway counts with, built from its own copy of the vocabulary, is
tiktoken's: the same definition, the same tokens and counts for any text (a run of over 1,024
letters or blanks without a break, which real text has not, estimated within a few %), and a
vocabulary that is not OpenAI's file is refused."""

from __future__ import annotations

import hashlib
import itertools
import mmap
import random
import string
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st
from tiktoken_ext import openai_public

from tokenrelay.billing import metering, tokenizer


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
        mergeable_ranks=dict(
            zip(tokenizer.tokens_by_rank(tokenizer.vocabulary()), itertools.count())
        ),
        special_tokens=tokenizer.SPECIAL_TOKENS,
    )


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_encode_is_the_public_encodings(text: str, public_encoding: tiktoken.Encoding) -> None:
    """The same tokens and the same refusals as `tiktoken.Encoding.encode`."""
    assert _outcome(tokenizer.encode, text) == _outcome(public_encoding.encode, text)
    counted = _outcome(tokenizer.count, text)
    assert counted == _outcome(lambda t: len(public_encoding.encode(t)), text)


# Letters of several scripts and cases, marks, digits, blanks, line ends, punctuation, emoji,
# apostrophes (the pattern's contractions), lone surrogates.
_ALPHABET = st.sampled_from(
    [
        *"aAzZéÉßñ世界Привет١٢٣0123456789 \t\n\r.,;:!?'\"-_/\\()[]{}<>=+*#@$%^&|~`",
        "'s",
        "'LL",
        "'ve",
        "🎉",
        "\u0301",
        "\u00a0",
        "\u2028",
        "\ud800",
        "    ",
        "\n\n",
    ]
)


@settings(max_examples=300, deadline=None)
@given(text=st.lists(_ALPHABET, max_size=200).map("".join))
def test_any_text_counts_as_tiktoken_counts_it(
    text: str, public_encoding: tiktoken.Encoding
) -> None:
    assert tokenizer.encode(text) == public_encoding.encode_ordinary(_fixed(text))
    assert tokenizer.count(text) == len(public_encoding.encode_ordinary(_fixed(text)))


def _fixed(text: str) -> str:
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


@pytest.mark.parametrize(
    "run",
    ["x" * 1_000_000, "ab" * 300_000, " " * 100_000, "é" * 100_000, "=" * 5_000,
     "".join(random.Random(7).choices(string.ascii_letters, k=100_000))],
    ids=["x", "ab", "blanks", "accents", "equals", "random letters"],
)  # fmt: skip
def test_a_run_without_a_break_is_estimated_within_a_few_percent(
    run: str, public_encoding: tiktoken.Encoding
) -> None:
    """Counted from its first 1,024 bytes (a million letters merged whole would take seconds)."""
    exact = len(public_encoding.encode_ordinary(run))
    assert abs(tokenizer.count(f"say {run} now") - 2 - exact) <= 0.05 * exact


def test_a_vocabulary_that_is_not_openais_is_refused() -> None:
    original = tokenizer.vocabulary()
    assert len(list(tokenizer.tokens_by_rank(original))) == 199_998
    swapped = original.replace(b"IQ== 0\nIg== 1\n", b"Ig== 0\nIQ== 1\n", 1)  # two ranks swapped
    assert swapped != original
    with pytest.raises(ValueError, match="sha256"):
        tokenizer.tokens_by_rank(swapped)


def test_a_gateway_with_a_vocabulary_that_is_not_openais_does_not_start(tmp_path: Path) -> None:
    """Refused at startup, not found out at a count (which would then bill bytes)."""
    code = f"""
import asyncio, os
from tokenrelay.billing import metering, tokenizer
from tokenrelay.server.app import create_app
from tokenrelay.settings import Settings

packaged = tokenizer.vocabulary
tokenizer.vocabulary = lambda: packaged().replace(b"IQ== 0\\n", b"Ig== 0\\n", 1)
tokenizer.table_paths = lambda: []  # no compiled table: the vocabulary is read

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


def _prose(chars: int) -> str:
    """Varied text: sentences of words, code, numbers and CJK, not one phrase repeated."""
    rng = random.Random(3)
    words = ["the", "gateway", "counts", "tokens", "für", "naïve", "世界", "def", "x=1;", "42"]
    out: list[str] = []
    made = 0  # a running length: summing `out` each round made 2M characters take ~20 s
    while made < chars:
        out.append(" ".join(rng.choices(words, k=rng.randint(3, 30))) + rng.choice(".\n;,"))
        made += len(out[-1])
    return "".join(out)[:chars]


def test_a_text_over_a_million_characters_is_counted_on_a_sample(
    public_encoding: tiktoken.Encoding, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever its length, a count reads at most SAMPLE_CHARS characters (a hostile 32 MB
    prompt would otherwise cost minutes of CPU), and still lands within 1% of tiktoken."""
    text = _prose(2 * metering.SAMPLE_ABOVE)
    read: list[int] = []
    exact = tokenizer.count
    monkeypatch.setattr(tokenizer, "count", lambda t: read.append(len(t)) or exact(t))
    estimate = metering.count_tokens(text)
    assert sum(read) <= metering.SAMPLE_CHARS
    assert abs(estimate - len(public_encoding.encode_ordinary(text))) <= 0.01 * estimate
    read.clear()
    assert metering.count_tokens(text[: metering.SAMPLE_ABOVE]) == len(
        public_encoding.encode_ordinary(text[: metering.SAMPLE_ABOVE])
    )
    assert sum(read) == metering.SAMPLE_ABOVE  # up to there, all of it, exactly


# Runs long enough to merge through the heap (over 32 bytes), short enough to be merged whole
# (up to 1,024): lower-case letters of few kinds (a capital or a blank would start a new
# piece), so that merges tie on rank and the leftmost must win.
_RUN = st.text(alphabet="abé世", min_size=33, max_size=400)


@settings(max_examples=150, deadline=None)
@given(run=_RUN)
def test_long_pieces_merge_in_tiktokens_order(run: str, public_encoding: tiktoken.Encoding) -> None:
    assert tokenizer.encode(run) == public_encoding.encode_ordinary(run)
    assert tokenizer.count(run) == len(public_encoding.encode_ordinary(run))


def test_counting_long_distinct_pieces_remembers_none_of_them() -> None:
    """The piece cache holds short pieces only: a text of long distinct runs (each would be
    a key) must not make it hold the text."""
    encoding = tokenizer.load()
    encoding._counts.clear()
    rng = random.Random(11)
    runs = ["".join(rng.choices(string.ascii_lowercase, k=500)) for _ in range(200)]
    tokenizer.count(" and ".join(runs))
    assert set(encoding._counts) == {" and"}


# --- the compiled table, kept as a file every process maps


@pytest.fixture
def table_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[list[Path]], None]]:
    """Load the tokenizer afresh with its table kept at the given paths."""

    def at(paths: list[Path]) -> None:
        monkeypatch.setattr(tokenizer, "table_paths", lambda: paths)
        tokenizer._build.cache_clear()

    yield at
    tokenizer._build.cache_clear()


@pytest.fixture(scope="module")
def tokens() -> list[bytes]:
    return list(tokenizer.tokens_by_rank(tokenizer.vocabulary()))


@pytest.fixture(scope="module")
def image(tokens: list[bytes]) -> bytes:
    """The packaged vocabulary compiled (once for the module: ~0.3 s of CPU each time)."""
    return tokenizer.compile_table(tokens)


def test_the_table_is_the_vocabulary_compiled(tokens: list[bytes], image: bytes) -> None:
    """TABLE_SHA256 is what the packaged vocabulary compiles to, and the compiled table gives
    every token its own rank and no other bytes a rank."""
    assert hashlib.sha256(image).hexdigest() == tokenizer.TABLE_SHA256
    vocabulary = tokenizer.Vocabulary(image)
    assert [vocabulary.rank(t) for t in tokens] == list(range(len(tokens)))
    assert vocabulary.pairs == {t: r for r, t in enumerate(tokens) if len(t) == 2}
    assert vocabulary.rank(b"\xff\xfe\xfd not a token") == tokenizer._NO_PAIR


def test_the_table_is_written_once_then_mapped(
    tmp_path: Path,
    table_at: Callable[[list[Path]], None],
    public_encoding: tiktoken.Encoding,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Where nothing can be written the table is held in the process, and the log says where it
    could not be kept; otherwise it is written to the first place that takes it and mapped from
    there, by this process and the next."""
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    kept = tmp_path / "cache" / "tokenrelay" / "o200k_base.table"
    text = TEXTS[2] + TEXTS[3]
    expected = len(public_encoding.encode_ordinary(text))

    table_at([blocked / "o200k_base.table"])
    assert isinstance(tokenizer.load().vocabulary._blob, bytes)
    assert tokenizer.count(text) == expected
    assert f"could not be written to {blocked / 'o200k_base.table'}" in caplog.text

    table_at([blocked / "o200k_base.table", kept])
    assert isinstance(tokenizer.load().vocabulary._blob, mmap.mmap)
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == tokenizer.TABLE_SHA256
    assert tokenizer.count(text) == expected
    written = kept.stat().st_mtime_ns

    table_at([kept])  # the next process: maps what is there, compiles nothing
    assert isinstance(tokenizer.load().vocabulary._blob, mmap.mmap)
    assert kept.stat().st_mtime_ns == written
    assert tokenizer.count(text) == expected


@pytest.mark.parametrize("damage", ["two ranks swapped", "truncated", "another version"])
def test_a_table_file_that_is_not_this_vocabularys_is_compiled_again(
    damage: str,
    tmp_path: Path,
    table_at: Callable[[list[Path]], None],
    public_encoding: tiktoken.Encoding,
    image: bytes,
) -> None:
    """An altered file would count (and bill) wrong: it is never used, but replaced."""
    vocabulary = tokenizer.Vocabulary(image)
    table = bytearray(image)
    if damage == "two ranks swapped":  # " the" and " and" trade places
        ends = vocabulary._ends
        spans = [(ends[r], ends[r + 1]) for r in map(vocabulary.rank, (b" the", b" and"))]
        (a, b), (c, d) = spans
        table[a:b], table[c:d] = image[c:d], image[a:b]
    elif damage == "truncated":
        del table[len(table) // 2 :]
    else:
        table[:32] = b"tokenrelay o200k_base table v0\n\0"
    path = tmp_path / "o200k_base.table"
    path.write_bytes(table)

    table_at([path])
    text = "the cat and the dog, and the end"
    assert tokenizer.encode(text) == public_encoding.encode_ordinary(text)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == tokenizer.TABLE_SHA256


def test_loading_a_mapped_table_leaves_the_process_memory_as_it_was(tmp_path: Path) -> None:
    """A process that never counts never pays for the table (an OpenAI client on the fast
    path): loading reads the file's hash and head, and maps the rest without touching it."""
    path = tmp_path / "o200k_base.table"
    code = f"""
import pathlib
from tokenrelay.billing import tokenizer
tokenizer.table_paths = lambda: [pathlib.Path({str(path)!r})]
tokenizer.load()  # compiles and writes it: this process's own pages
tokenizer._build.cache_clear()

def rss_kb():
    status = open("/proc/self/status").read().split("\\n")
    return sum(int(l.split()[1]) for l in status if l.startswith(("RssAnon", "RssFile")))

before = rss_kb()
tokenizer.load()
loaded = rss_kb()
tokenizer.count("The quick brown fox jumps over the lazy dog. " * 50)
print(loaded - before, rss_kb() - before)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    loaded_kb, counted_kb = map(int, out.stdout.split())
    assert loaded_kb < 1024, out.stdout + out.stderr
    assert counted_kb > loaded_kb  # the pages come in as counts look tokens up
