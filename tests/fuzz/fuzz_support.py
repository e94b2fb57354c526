"""The fuzz suite's probe: it sends a body to the live gateway, checks the answer's
properties and counts what it saw (a module, not the conftest: `from conftest import` may
resolve to another folder's conftest).

`TOKENRELAY_FUZZ_EXAMPLES` sets hypothesis' examples per test (CI default small; `make fuzz`
raises it). The totals print in the terminal summary, e.g. "fuzz: 900 bodies, 0 5xx".
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import httpx
import orjson

EXAMPLES = int(os.environ.get("TOKENRELAY_FUZZ_EXAMPLES", "150"))

# Error status → the `error.type` each client format must carry.
_STATUSES = (400, 401, 402, 403, 404, 413, 429)
_ANTHROPIC = "invalid_request_error authentication_error billing_error permission_error"
_OPENAI = "invalid_request_error invalid_request_error insufficient_quota request_forbidden"
ANTHROPIC_TYPES = dict(
    zip(
        _STATUSES,
        f"{_ANTHROPIC} not_found_error request_too_large rate_limit_error".split(),
        strict=True,
    )
)
OPENAI_TYPES = dict(
    zip(
        _STATUSES,
        f"{_OPENAI} invalid_request_error invalid_request_error requests".split(),
        strict=True,
    )
)
ROUTES = {  # route → (path, client format)
    "messages": ("/v1/messages", "anthropic"),
    "chat": ("/v1/chat/completions", "openai"),
    "count_tokens": ("/v1/messages/count_tokens", "anthropic"),
}


@dataclass
class Tally:
    bodies: int = 0
    server_errors: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)


TALLY = Tally()


@dataclass
class Probe:
    client: httpx.Client
    models: list[str]

    def send(self, route: str, body: bytes) -> httpx.Response:
        path, fmt = ROUTES[route]
        r = self.client.post("/api/proxy" + path, content=body)
        TALLY.bodies += 1
        TALLY.statuses[r.status_code] += 1
        if r.status_code >= 500:
            TALLY.server_errors.append(f"{route} {r.status_code} {body[:200]!r} → {r.text[:200]}")
        assert r.status_code < 500, (route, body[:500], r.text[:500])
        if r.status_code >= 400:
            check_error(r, fmt)
        elif r.headers.get("content-type", "").startswith("text/event-stream"):
            check_stream(r.content, fmt)
        else:
            payload = r.json()
            assert isinstance(payload, dict)
            if route == "count_tokens":
                assert isinstance(payload["input_tokens"], int)
        return r


def check_error(r: httpx.Response, fmt: str) -> None:
    assert r.headers["content-type"].startswith("application/json"), r.text
    body = r.json()
    error = body["error"]
    assert isinstance(error["message"], str) and error["message"]
    expected = (ANTHROPIC_TYPES if fmt == "anthropic" else OPENAI_TYPES).get(r.status_code)
    if fmt == "anthropic":
        assert body["type"] == "error"
    if expected is not None:
        assert error["type"] == expected, (r.status_code, body)


def check_stream(raw: bytes, fmt: str) -> None:
    """A stream that started ends properly: its terminator, or an error event."""
    events = [e for e in raw.split(b"\n\n") if e.strip()]
    assert events, raw
    last = events[-1]
    if fmt == "anthropic":
        assert last.startswith((b"event: message_stop", b"event: error")), raw[-500:]
    else:
        data = last.removeprefix(b"data: ")
        assert data == b"[DONE]" or "error" in orjson.loads(data), raw[-500:]
