"""A trivial, deterministic token count shared by every emulated vendor.

Real tokenizers differ per vendor; the gateway only needs numbers that are stable and
that agree between a messages call and its count_tokens call.
"""

from __future__ import annotations

from typing import Any

import orjson


def count(text: str) -> int:
    """ceil(chars / 4), at least 1 for any non-empty text."""
    if not text:
        return 0
    return max(1, (len(text) + 3) // 4)


def count_json(value: Any) -> int:
    """Tokens for a structured value (tool schemas, arguments, results)."""
    if isinstance(value, str):
        return count(value)
    return count(orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode())


IMAGE_TOKENS = 256  # flat price for any image / document part
