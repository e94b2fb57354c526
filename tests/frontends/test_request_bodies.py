"""Request bodies the gateway must refuse cleanly, in the client's format, on every proxy route:
too deep to re-serialise, too large, not JSON."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tokenrelay.gateway.jsonbody import MAX_DEPTH, ORJSON_MAX_LEVELS, nested_deeper

ROUTES = {
    "messages": ("/v1/messages", "anthropic"),
    "chat": ("/v1/chat/completions", "openai"),
    "count_tokens": ("/v1/messages/count_tokens", "anthropic"),
}


def _headers(api_key: str, fmt: str) -> dict[str, str]:
    if fmt == "anthropic":
        return {"x-api-key": api_key, "anthropic-version": "2023-06-01"}
    return {"authorization": f"Bearer {api_key}"}


def _error_type(r: httpx.Response, fmt: str) -> str:
    body = r.json()
    if fmt == "anthropic":
        assert body["type"] == "error"
    return str(body["error"]["type"])


def _nested(depth: int, model: str) -> bytes:
    """A valid request whose `metadata`-free extra field nests `depth` levels in all."""
    inner = depth - 1  # the body object itself is level 1
    return (
        b'{"model":"' + model.encode() + b'","max_tokens":5,'
        b'"messages":[{"role":"user","content":"hi"}],"x":' + b"[" * inner + b"]" * inner + b"}"
    )


@pytest.mark.parametrize("route", ROUTES)
# Both fast paths (same-format vendor: the body is re-serialised as it is) and a translation.
@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "gpt-4o", "gemini-2.5-flash"])
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 255, 600, 1023, 1024, 5000])
def test_deep_json_is_400_in_client_format(gateway, api_key, route, model, depth) -> None:
    path, fmt = ROUTES[route]
    r = httpx.post(
        gateway.proxy + path, headers=_headers(api_key, fmt), content=_nested(depth, model)
    )
    assert r.status_code == 400, r.text
    assert _error_type(r, fmt) == "invalid_request_error"
    assert "deeper than" in r.json()["error"]["message"]


@pytest.mark.parametrize("route", ROUTES)
def test_json_at_the_depth_limit_is_served(gateway, api_key, route) -> None:
    path, fmt = ROUTES[route]
    r = httpx.post(
        gateway.proxy + path,
        headers=_headers(api_key, fmt),
        content=_nested(MAX_DEPTH, "claude-sonnet-4-6"),
    )
    assert r.status_code == 200, r.text


def test_nested_deeper_counts_levels_exactly() -> None:
    assert not nested_deeper({"a": [{"b": []}]}, 4)
    assert nested_deeper({"a": [{"b": []}]}, 3)
    assert not nested_deeper("scalar", 1)
    deep: list[object] = []
    for _ in range(MAX_DEPTH - 1):
        deep = [deep]
    assert not nested_deeper(deep, MAX_DEPTH)  # MAX_DEPTH levels: fine
    assert nested_deeper([deep], MAX_DEPTH)  # one more: too deep
    for _ in range(100_000):  # far past the interpreter's recursion limit
        deep = [deep]
    assert nested_deeper(deep, MAX_DEPTH)


def test_orjson_still_serialises_exactly_254_levels() -> None:
    """nested_deeper relies on it; an orjson upgrade that moves the limit must fail here."""
    value: list[object] = []
    for _ in range(ORJSON_MAX_LEVELS - 1):
        value = [value]
    orjson.dumps(value)
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps([value])


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("megabytes", [33, 50])
def test_oversized_body_is_413_on_every_route(gateway, api_key, route, megabytes) -> None:
    path, fmt = ROUTES[route]
    filler = b"x" * (megabytes << 20)
    body = b'{"model":"claude-sonnet-4-6","max_tokens":5,"messages":[{"role":"user","content":"'
    r = httpx.post(
        gateway.proxy + path,
        headers=_headers(api_key, fmt),
        content=body + filler + b'"}]}',
        timeout=120,
    )
    assert r.status_code == 413, r.text
    if fmt == "anthropic":
        assert _error_type(r, fmt) == "request_too_large"
    else:
        assert r.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("route", ROUTES)
def test_invalid_json_is_400_without_parser_text(gateway, api_key, route) -> None:
    path, fmt = ROUTES[route]
    for body in (b"{not json", b'{"a":"\\ud800"}', b'{"a":1e999999}', b'{"a":NaN}', b"\xff\xfe"):
        r = httpx.post(gateway.proxy + path, headers=_headers(api_key, fmt), content=body)
        assert r.status_code == 400, (body, r.text)
        assert _error_type(r, fmt) == "invalid_request_error"
        message = r.json()["error"]["message"]
        assert message.startswith("Request body is not valid JSON"), message
        assert "surrogate" not in message and "infinity" not in message
