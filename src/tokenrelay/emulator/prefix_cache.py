"""A prompt cache per emulated deployment (`/_d/<name>/...`): a prompt whose leading messages
one deployment has already seen reads them from its cache, as the vendors' prompt caches do
(automatic prefix caching, at message granularity). Another deployment has not seen them: a
conversation that hops between deployments reads nothing. Tests measure session affinity
with it."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import orjson

_MAX_ENTRIES = 200_000
_SEEN: OrderedDict[bytes, None] = OrderedDict()


def cached_tokens(deployment: str, model: str, segments: Sequence[tuple[Any, int]]) -> int:
    """Tokens of the longest prefix of `segments` ((segment, its tokens), in prompt order) that
    `deployment` has served before for `model`; every prefix is remembered for next time."""
    h = hashlib.sha256(f"{deployment}\0{model}\0".encode())
    total = read = 0
    digests = []
    for segment, count in segments:
        h.update(orjson.dumps(segment, option=orjson.OPT_SORT_KEYS))
        total += count
        digest = h.copy().digest()
        digests.append(digest)
        if digest in _SEEN:
            read = total
    for digest in digests:
        _SEEN[digest] = None
        _SEEN.move_to_end(digest)
    while len(_SEEN) > _MAX_ENTRIES:
        _SEEN.popitem(last=False)
    return read
