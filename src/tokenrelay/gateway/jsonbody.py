"""Request body bytes → the JSON object a proxy route works on, or a 400 naming what is wrong.

One place for both client APIs and count_tokens. Besides "valid JSON" and "an object", it
bounds nesting: orjson parses up to 1,024 levels but serialises only 254, and the gateway
re-serialises every body it forwards (translation may add a few levels on top), so a body
deeper than MAX_DEPTH would parse here and fail later as a 500.
"""

from __future__ import annotations

from typing import Any

import orjson

from tokenrelay.asgi import BodyTooLarge, Receive, read_body
from tokenrelay.errors import GatewayError, invalid

# Far above any real request (deep JSON schemas run to a few dozen levels) and far enough
# below orjson's 254 for the wrapping a vendor body adds around client values.
MAX_DEPTH = 128
_TOO_DEEP = f"Request body nests JSON deeper than {MAX_DEPTH} levels."


async def read_limited(receive: Receive, limit: int) -> bytes:
    """The request body, or the 413 every proxy route answers past `limit` bytes."""
    try:
        return await read_body(receive, limit)
    except BodyTooLarge:
        raise GatewayError(
            "request_too_large", f"Request body exceeds {limit} bytes.", 413
        ) from None


def parse_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if exc.msg.startswith("depth limit"):  # orjson stops parsing at 1,024 levels
            raise invalid(_TOO_DEEP) from None
        # Our wording with the position, not the parser's message.
        where = f" (line {exc.lineno}, column {exc.colno})" if exc.lineno else ""
        raise invalid(f"Request body is not valid JSON{where}.") from None
    if not isinstance(payload, dict):
        raise invalid("Request body must be a JSON object.")
    # Fewer brackets than the limit cannot nest deeper than it: two C-speed scans keep the
    # common case cheap; only bracket-rich bodies pay for the walk.
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH and nested_deeper(payload, MAX_DEPTH):
        raise invalid(_TOO_DEEP)
    return payload


# orjson serialises at most this many levels ("Recursion limit reached" past it; pinned by
# tests/frontends/test_request_bodies.py).
ORJSON_MAX_LEVELS = 254


def nested_deeper(value: Any, limit: int) -> bool:
    """Whether containers nest more than `limit` levels, counting `value` as level 1.

    Asked of orjson in C: `value` wrapped in enough lists that exactly `limit` levels of its
    own still serialise. A walk in Python cost as much as parsing the body (0.2 ms for a
    150 KB Claude Code request); this costs a quarter of that, and only bracket-rich bodies
    pay it."""
    if not 0 < limit <= ORJSON_MAX_LEVELS:
        raise ValueError(f"limit must be in 1..{ORJSON_MAX_LEVELS}")
    wrapped = value
    for _ in range(ORJSON_MAX_LEVELS - limit):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        return True
    return False
