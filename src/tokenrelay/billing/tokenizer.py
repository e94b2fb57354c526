"""OpenAI's o200k_base BPE (GPT-4o and later), built by tiktoken from the vocabulary shipped here.

`o200k_base.tiktoken.gz` is OpenAI's public o200k_base.tiktoken (MIT), the file tiktoken's
registry downloads from openaipublic.blob.core.windows.net, gzipped: nothing is fetched at run
time. It is checked against the sha256 tiktoken pins before anything is built from it.

Built once per process, by the server at startup (server/app.py), otherwise at the first count:
~0.27 s of CPU (~0.12 s of it in tiktoken's constructor, which holds the GIL), ~48 MB.
"""

from __future__ import annotations

import binascii
import gzip
import hashlib
import threading
from functools import cache
from importlib import resources
from typing import Protocol

# tiktoken_ext/openai_public.py's o200k_base (tiktoken 0.14): the file's hash, the pattern
# that splits text into pieces before BPE, the special tokens. tests/billing/test_tokenizer.py
# checks they are still tiktoken's.
VOCABULARY_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
PAT_STR = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
SPECIAL_TOKENS = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}

_VOCABULARY = "o200k_base.tiktoken.gz"
_lock = threading.Lock()


def vocabulary() -> bytes:
    """The packaged o200k_base.tiktoken, uncompressed (3.6 MB)."""
    return gzip.decompress(resources.files("tokenrelay.billing").joinpath(_VOCABULARY).read_bytes())


def mergeable_ranks(tiktoken_file: bytes) -> dict[bytes, int]:
    """A .tiktoken file's `<base64 token> <rank>` lines as tiktoken's `load_tiktoken_bpe` reads
    them, once its hash is o200k_base's. Parsed in C-level passes (map/zip), not a Python loop
    per line: ~100 ms instead of load_tiktoken_bpe's ~160."""
    if hashlib.sha256(tiktoken_file).hexdigest() != VOCABULARY_SHA256:
        raise ValueError(f"{_VOCABULARY}: not o200k_base's vocabulary (sha256 differs)")
    fields = tiktoken_file.split()
    return dict(zip(map(binascii.a2b_base64, fields[::2]), map(int, fields[1::2]), strict=True))


class _CoreBPE(Protocol):  # tiktoken._tiktoken.CoreBPE, which ships no type stubs
    def encode_ordinary(self, text: str) -> list[int]: ...


@cache
def _build() -> _CoreBPE:
    # tiktoken's Rust core, not the `tiktoken.Encoding` around it: that also keeps the dict of
    # ranks it is built from, 27 MB that only its single-token helpers read. `encode` below is
    # the part of `Encoding.encode` a count needs.
    from tiktoken._tiktoken import CoreBPE

    core: _CoreBPE = CoreBPE(mergeable_ranks(vocabulary()), SPECIAL_TOKENS, PAT_STR)
    return core


def load() -> _CoreBPE:
    """o200k_base, built at the first call. One build, whichever thread asks first: the
    others wait for it (tiktoken's constructor holds the GIL ~115 ms anyway)."""
    with _lock:
        return _build()


def encode(text: str) -> list[int]:
    """`tiktoken.get_encoding("o200k_base").encode(text)`: a text holding a special token's
    text is refused (ValueError), lone surrogates are replaced (U+FFFD)."""
    for special in SPECIAL_TOKENS:
        if special in text:
            raise ValueError(
                f"Encountered text corresponding to disallowed special token {special!r}"
            )
    core = load()
    try:
        return core.encode_ordinary(text)
    except UnicodeEncodeError:  # as tiktoken fixes it up
        return core.encode_ordinary(
            text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        )
