"""OpenAI's o200k_base BPE (GPT-4o and later), counted here from the vocabulary shipped here.

`o200k_base.tiktoken.gz` is OpenAI's public o200k_base.tiktoken (MIT), the file tiktoken's
registry downloads from openaipublic.blob.core.windows.net, gzipped: nothing is fetched at run
time. It is checked against the sha256 tiktoken pins before anything is built from it.

Why not tiktoken itself: its Rust core keeps three copies of the 200k tokens (two hash maps and
a sorted list), ~48 MB resident in every process for a count the gateway makes only when a
vendor does not report usage, for the prompt size an Anthropic-format stream opens with, or
when a client asks for one. Here the tokens sit in one 1.6 MB byte string, found through an
open-addressing table of 2 MB: a 4.3 MB image compiled once from the vocabulary and kept as a
file (`load`) that every process maps read-only, so that the page cache holds one copy for all
the gateway's processes on a machine, and a process that never counts has none of it resident
(it was 7.6 MB built in each process; ~0.5 MB now, until a count). The pieces are split by
the same pattern (the `regex` module, which tiktoken's own reference implementation uses) and
merged in tiktoken's order (the lowest rank first, the leftmost of equal ranks), so the counts are
tiktoken's, token for token (tests/billing/test_tokenizer.py compares them, hypothesis too).
Pure Python is slower: ~190-260 ns a character of prose, code or a coding agent's prompt
counted cold, ~125 for pieces seen lately, against tiktoken's ~45-70; random letters between
blanks, the worst case, ~1.2 µs against ~80 ns (`python -m bench.tokenizer_cost`).

Loaded by the server at startup (server/app.py), otherwise at the first count: ~15 ms from
the file, ~0.3 s of CPU when it must be compiled.
"""

from __future__ import annotations

import binascii
import contextlib
import gzip
import hashlib
import heapq
import io
import itertools
import logging
import mmap
import os
import struct
import sys
import threading
from array import array
from collections.abc import Iterable, Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from zlib import crc32

import regex

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

log = logging.getLogger("tokenrelay.billing")
_VOCABULARY = "o200k_base.tiktoken.gz"
# The compiled table (`compile_table`), kept as a file that every process maps read-only. Its
# sha256 is checked before it is used: a file that is not this image (truncated, from another
# version, altered) is compiled again from the vocabulary, whose own hash is checked.
_TABLE = "o200k_base.table"
_MAGIC = b"tokenrelay o200k_base table v1\n\0"
_HEADER = struct.Struct("=32sIII4x")  # magic, tokens, slots, two-byte tokens; 48 bytes
TABLE_SHA256 = "583bf4efb4288b8babb2acbb0f0a47fd74b2ea1b6897ec3fb8f9f22e5c06849b"
_lock = threading.Lock()
# Pieces longer than this merge through a heap (n log n) rather than tiktoken's scan for the
# lowest pair (n²): a 20,000-letter run costs ~60 ms instead of ~3 s. Equal results; below it,
# the scan is the faster of the two.
_SCAN_BYTES = 32
# A count estimates a piece longer than this (a run of letters or blanks with no break, which
# real text has not) from its first _LONG_PIECE bytes: ~4 ms a piece, where merging all of a
# 1 MB run would take ~4 s. Within a few % of tiktoken on such runs.
_LONG_PIECE = 1024
# Counts of recent pieces: prose and code repeat theirs (~40% of a count's time saved). Only
# pieces of up to _REMEMBERED_CHARS (words, numbers, punctuation runs): 16k of them hold ~2 MB
# at most, where remembering any piece would let a text of long distinct runs hold gigabytes.
_REMEMBERED = 16_384
_REMEMBERED_CHARS = 32
_NO_PAIR = 1 << 62  # the rank of a pair that is not a token: never merged


def vocabulary() -> bytes:
    """The packaged o200k_base.tiktoken, uncompressed (3.6 MB)."""
    return gzip.decompress(resources.files("tokenrelay.billing").joinpath(_VOCABULARY).read_bytes())


def tokens_by_rank(tiktoken_file: bytes) -> Iterator[bytes]:
    """A .tiktoken file's `<base64 token> <rank>` lines, its tokens in rank order, once its hash
    is o200k_base's (whose ranks run 0, 1, 2, … with none left out). One line at a time: the
    whole file split at once would hold ~27 MB of small objects for a moment, and the heap
    they leave behind in fragments stays resident."""
    if hashlib.sha256(tiktoken_file).hexdigest() != VOCABULARY_SHA256:
        raise ValueError(f"{_VOCABULARY}: not o200k_base's vocabulary (sha256 differs)")

    def tokens() -> Iterator[bytes]:
        for expected, line in enumerate(io.BytesIO(tiktoken_file)):
            token, _, rank = line.partition(b" ")
            if int(rank) != expected:
                raise ValueError(f"{_VOCABULARY}: ranks are not 0, 1, 2, …")
            yield binascii.a2b_base64(token)

    return tokens()


class Vocabulary:
    """Token bytes → rank, compactly, read from a table image (`compile_table`): all tokens in
    one byte string, `_ends[r]` where token r ends (offsets into the image), and a
    linear-probing table of rank + 1 (0: empty) at the token's CRC-32 — a hash that is the
    same in every process, so the image can be a file that every process maps (`load`)."""

    __slots__ = ("_blob", "_ends", "_mask", "_table", "pairs")

    def __init__(self, image: bytes | mmap.mmap, head: bytes | None = None) -> None:
        """`head`: the image's first `head_bytes(image)` bytes, when read apart from a mapped
        image, which loading then leaves untouched (none of its pages resident yet)."""
        head = image[: head_bytes(image)] if head is None else head
        magic, tokens, slots, two_byte = _HEADER.unpack_from(head)
        if magic != _MAGIC:
            raise ValueError("not an o200k_base table of this version")
        # The two-byte tokens (4,909) in a dict as well: every merge starts from a piece's
        # byte pairs, looked up at C speed there (~40% of a cold count's time).
        at = _HEADER.size + 4 * two_byte
        ranks, pairs = memoryview(head)[_HEADER.size : at].cast("I"), head[at:]
        self.pairs: dict[bytes, int] = {pairs[2 * i : 2 * i + 2]: r for i, r in enumerate(ranks)}
        view, at = memoryview(image), len(head)
        self._ends = view[at : (at := at + 4 * (tokens + 1))].cast("I")
        self._table = view[at : at + 4 * slots].cast("i")
        self._blob, self._mask = image, slots - 1

    def rank(self, token: bytes) -> int:
        """The token's rank, or _NO_PAIR when it is not one."""
        table, ends, blob, mask = self._table, self._ends, self._blob, self._mask
        slot = crc32(token) & mask
        while rank := table[slot]:
            if blob[ends[rank - 1] : ends[rank]] == token:
                return rank - 1
            slot = (slot + 1) & mask
        return _NO_PAIR


def head_bytes(image: bytes | mmap.mmap) -> int:
    """How long the image's head is: its header, then the two-byte tokens' ranks and bytes."""
    return _HEADER.size + 6 * _HEADER.unpack_from(image)[3]


def compile_table(tokens: Iterable[bytes]) -> bytes:
    """The table image `Vocabulary` reads: a header, the two-byte tokens' ranks and bytes,
    the tokens' end offsets, the probing table, then all the tokens (native byte order)."""
    blob, lengths, two_byte, pairs = bytearray(), array("I"), array("I"), bytearray()
    for rank, token in enumerate(tokens):
        if len(token) == 2:
            two_byte.append(rank)
            pairs += token
        blob += token
        lengths.append(len(token))
    slots = 1 << (2 * len(lengths)).bit_length()  # under half full: short probe runs
    start = _HEADER.size + 6 * len(two_byte) + 4 * (len(lengths) + 1 + slots)
    ends = array("I", itertools.accumulate(lengths, initial=start))
    table, mask = array("i", bytes(4 * slots)), slots - 1
    for rank in range(1, len(ends)):
        slot = crc32(blob[ends[rank - 1] - start : ends[rank] - start]) & mask
        while table[slot]:
            slot = (slot + 1) & mask
        table[slot] = rank
    header = _HEADER.pack(_MAGIC, len(lengths), slots, len(two_byte))
    sections = (header, two_byte.tobytes(), pairs, ends.tobytes(), table.tobytes(), blob)
    return b"".join(sections)


def _pair_ranks(vocabulary: Vocabulary, piece: bytes) -> list[int]:
    pair = vocabulary.pairs.get
    return [pair(piece[i : i + 2], _NO_PAIR) for i in range(len(piece) - 1)]


def _scan_merge(vocabulary: Vocabulary, piece: bytes) -> list[int]:
    """tiktoken's byte_pair_merge: merge the adjacent pair of the lowest rank (the leftmost of
    equals) until no pair is a token. The parts' start offsets, then the piece's end."""
    rank = vocabulary.rank
    starts = list(range(len(piece) + 1))
    ranks = _pair_ranks(vocabulary, piece)
    while ranks:
        lowest = min(ranks)
        if lowest == _NO_PAIR:
            break
        i = ranks.index(lowest)
        del starts[i + 1], ranks[i]
        if i < len(ranks):
            ranks[i] = rank(piece[starts[i] : starts[i + 2]])
        if i:
            ranks[i - 1] = rank(piece[starts[i - 1] : starts[i + 1]])
    return starts


def _heap_merge(vocabulary: Vocabulary, piece: bytes) -> list[int]:
    """_scan_merge's result in n log n: pairs in a heap by (rank, start), which pops the lowest
    rank and the leftmost of equals, as the scan picks; an entry whose pair has since changed
    is skipped. A part is named by its start, which no merge moves."""
    rank = vocabulary.rank
    n = len(piece)
    after = list(range(1, n + 1))  # the start of the part after the one starting at i
    before = list(range(-1, n - 1))
    pair = [*_pair_ranks(vocabulary, piece), _NO_PAIR]  # part i with the next
    heap = [(r, i) for i, r in enumerate(pair) if r != _NO_PAIR]
    heapq.heapify(heap)
    while heap:
        r, i = heapq.heappop(heap)
        if pair[i] != r:  # merged away (set to _NO_PAIR) or re-ranked since
            continue
        gone = after[i]
        pair[gone] = _NO_PAIR
        following = after[i] = after[gone]
        if following < n:
            before[following] = i
            r = pair[i] = rank(piece[i : after[following]])
            if r != _NO_PAIR:
                heapq.heappush(heap, (r, i))
        else:
            pair[i] = _NO_PAIR
        if (prior := before[i]) >= 0:
            r = pair[prior] = rank(piece[prior:following])
            if r != _NO_PAIR:
                heapq.heappush(heap, (r, prior))
    starts, i = [], 0
    while i < n:
        starts.append(i)
        i = after[i]
    starts.append(n)
    return starts


class Encoding:
    """o200k_base: a text's pieces, each one token or merged from its bytes."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        self._pieces = regex.compile(PAT_STR).findall
        self._counts: dict[str, int] = {}

    def _parts(self, piece: bytes) -> list[int]:
        if self.vocabulary.rank(piece) != _NO_PAIR:
            return [0, len(piece)]
        merge = _scan_merge if len(piece) <= _SCAN_BYTES else _heap_merge
        return merge(self.vocabulary, piece)

    def _count_piece(self, piece: bytes) -> int:
        if len(piece) <= _LONG_PIECE:
            return len(self._parts(piece)) - 1
        # Its first part, then the rest at the rate of the head's parts between its first and
        # its last (which the cut may have split).
        parts = self._parts(piece[:_LONG_PIECE])
        inner, first = len(parts) - 3, parts[1]
        if inner < 1:
            return len(piece)  # a head of one or two tokens: never below the count
        return 1 + -(-(len(piece) - first) * inner // (parts[-2] - first))

    def encode_ordinary(self, text: str) -> list[int]:
        """tiktoken's CoreBPE.encode_ordinary: the tokens' ranks (special tokens' text as text)."""
        rank = self.vocabulary.rank
        out: list[int] = []
        for piece in map(str.encode, self._pieces(text)):
            parts = self._parts(piece)
            out += (rank(piece[a:b]) for a, b in itertools.pairwise(parts))
        return out

    def count_ordinary(self, text: str) -> int:
        """len(encode_ordinary(text)), with the counts of recent pieces remembered; a piece
        longer than _LONG_PIECE bytes estimated from its head."""
        counts, total = self._counts, 0
        for piece in self._pieces(text):
            n = counts.get(piece)
            if n is None:
                n = self._count_piece(piece.encode())
                if len(piece) <= _REMEMBERED_CHARS:
                    if len(counts) >= _REMEMBERED:
                        counts.clear()
                    counts[piece] = n
            total += n
        return total


def table_paths() -> list[Path]:
    """Where the table image is kept, in the order tried: beside the vocabulary (an editable
    install, or an image that wrote it at build: deploy/Dockerfile), then the user's cache."""
    paths = [Path(__file__).with_name(_TABLE)]
    with contextlib.suppress(RuntimeError):  # no home directory to find
        cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        paths.append(Path(cache) / "tokenrelay" / _TABLE)
    return paths


def _mapped(path: Path) -> Vocabulary | None:
    """The image at `path`, mapped read-only, if it is the one this vocabulary compiles to;
    None otherwise. Its hash and head are read through the file, not the mapping: none of the
    mapped pages is resident until a count looks a token up (Linux maps a file's page cache
    by up to 2 MB at a touch)."""
    try:
        with path.open("rb") as f:
            if hashlib.file_digest(f, "sha256").hexdigest() != TABLE_SHA256:
                return None
            f.seek(0)
            head = f.read(_HEADER.size)
            head += f.read(head_bytes(head) - len(head))
            return Vocabulary(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), head)
    except (OSError, ValueError, struct.error):
        return None


def _kept(image: bytes) -> Vocabulary | None:
    """`image` written to the first place that takes it, then mapped from there."""
    for path in table_paths():
        part = path.with_name(f".{path.name}.{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            part.write_bytes(image)
            os.replace(part, path)  # a process reading the old file keeps its own
        except OSError:
            with contextlib.suppress(OSError):
                part.unlink(missing_ok=True)
            continue
        if (mapped := _mapped(path)) is not None:
            return mapped
    return None


@cache
def _build() -> Encoding:
    """From the table file when one is there (a few ms: its pages load as counts touch them,
    and every process on the machine shares them); otherwise compiled from the vocabulary
    (~0.3 s), then kept for the next process, or, where nothing can be written, held here."""
    files = sys.byteorder == "little"  # TABLE_SHA256 is the little-endian image's
    for path in table_paths() if files else ():
        if (mapped := _mapped(path)) is not None:
            return Encoding(mapped)
    image = compile_table(tokens_by_rank(vocabulary()))
    kept = files and hashlib.sha256(image).hexdigest() == TABLE_SHA256
    if kept and (mapped := _kept(image)) is not None:
        return Encoding(mapped)
    if kept:
        log.warning(
            "the o200k table could not be written to %s: compiled in this process "
            "(~4 MB each; writable XDG_CACHE_HOME keeps one copy for all)",
            " or ".join(map(str, table_paths())) or "any place",
        )
    return Encoding(Vocabulary(image))


def load() -> Encoding:
    """o200k_base, loaded at the first call. One load, whichever thread asks first: the
    others wait for it."""
    with _lock:
        return _build()


def _ordinary(text: str) -> str:
    """`text` as tiktoken encodes it: a special token's text is refused (ValueError), lone
    surrogates are replaced (U+FFFD)."""
    for special in SPECIAL_TOKENS:
        if special in text:
            raise ValueError(
                f"Encountered text corresponding to disallowed special token {special!r}"
            )
    try:
        text.encode()
    except UnicodeEncodeError:  # as tiktoken fixes it up
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def encode(text: str) -> list[int]:
    """`tiktoken.get_encoding("o200k_base").encode(text)`."""
    return load().encode_ordinary(_ordinary(text))


def count(text: str) -> int:
    """`len(tiktoken.get_encoding("o200k_base").encode(text))`, the same refusals."""
    return load().count_ordinary(_ordinary(text))
