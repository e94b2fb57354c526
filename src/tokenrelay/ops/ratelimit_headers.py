"""Rate-limit headers in each client API's own convention, from the key's rpm/tpm buckets.

- Anthropic Messages: `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`, the
  reset an RFC 3339 time (when the bucket is full again), as Anthropic sends them.
- OpenAI Chat Completions and Responses: `x-ratelimit-{limit,remaining,reset}-{requests,
  tokens}`, the reset a duration (`1s`, `6m0s`), as OpenAI sends them.
- Gemini: none. Google's API sends no rate-limit headers (quota errors say it in the body),
  and its SDK and CLI read none.

A key without a limit gets no header for it: there is nothing to count down. This runs on
every response: the names are built once, the values are a few integer formats (~3 µs).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from tokenrelay.billing.ratelimit import Levels

Names = tuple[bytes, bytes, bytes]  # limit, remaining, reset


def _anthropic(what: str) -> Names:
    p = f"anthropic-ratelimit-{what}-"
    return f"{p}limit".encode(), f"{p}remaining".encode(), f"{p}reset".encode()


def _openai(what: str) -> Names:
    return (
        f"x-ratelimit-limit-{what}".encode(),
        f"x-ratelimit-remaining-{what}".encode(),
        f"x-ratelimit-reset-{what}".encode(),
    )


# client format -> (the requests bucket's names, the tokens bucket's)
_NAMES: dict[str, tuple[Names, Names]] = {
    "anthropic": (_anthropic("requests"), _anthropic("tokens")),
    "openai": (_openai("requests"), _openai("tokens")),
    "responses": (_openai("requests"), _openai("tokens")),
}


def _duration(seconds: float) -> bytes:
    """OpenAI's reset form: `0s`, `12s`, `6m0s` (whole seconds, rounded up)."""
    s = math.ceil(seconds)
    return b"%ds" % s if s < 60 else b"%dm%ds" % divmod(s, 60)


_instants: dict[int, bytes] = {}


def _instant(seconds: float) -> bytes:
    """Anthropic's reset form: the RFC 3339 time `seconds` from now (whole seconds, up)."""
    at = math.ceil(time.time() + seconds)
    text = _instants.get(at)
    if text is None:  # formatted once a second per distinct reset, not per response
        if len(_instants) > 1024:
            _instants.clear()
        text = _instants[at] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)).encode()
    return text


def _bucket(
    out: list[tuple[bytes, bytes]],
    names: Names,
    limit: int,
    level: float,
    reset: Callable[[float], bytes],
) -> None:
    out.append((names[0], b"%d" % limit))
    out.append((names[1], b"%d" % level if level > 0 else b"0"))  # %d truncates: the floor
    out.append((names[2], reset((limit - level) * 60.0 / limit if level < limit else 0.0)))


def rate_limit_headers(
    client_format: str, rpm: int | None, tpm: int | None, levels: Levels
) -> list[tuple[bytes, bytes]]:
    if not (rpm or tpm):
        return []
    names = _NAMES.get(client_format)
    if names is None:
        return []
    reset = _instant if client_format == "anthropic" else _duration
    out: list[tuple[bytes, bytes]] = []
    requests, tokens = levels
    if rpm and requests is not None:
        _bucket(out, names[0], rpm, requests, reset)
    if tpm and tokens is not None:
        _bucket(out, names[1], tpm, tokens, reset)
    return out
