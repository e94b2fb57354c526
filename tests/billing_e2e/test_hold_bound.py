"""The credit hold is an upper bound of what the vendor can bill for the request as sent.

Whatever a client puts in a request (documents, files, images, tool definitions with any
field, server tools, cached system blocks, unknown fields), the hold the gateway takes must
cover the most the vendor could charge for it. A key with no credit makes the gateway show its
hold without calling anyone: the 402 says "this request may cost up to $X".

The vendor's most is modelled from the client's own body on the same-format path (every byte
of it reaches the vendor): one token per UTF-8 byte of every string in it (no tokenizer makes
more), four tokens of framing per message, the vendor's per-image maximum for an image, the
whole context window for a PDF or file, ten passes for server tools; all of it at the
dearest prompt rate, plus every output token the call allows.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway_support import ADMIN_TOKEN, RunningGateway

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
# Models without price tiers, one short and one long context window per format.
ANTHROPIC_MODELS = ["claude-haiku-4-5", "claude-sonnet-4-6"]
OPENAI_MODELS = ["gpt-4o", "gpt-4.1-mini"]
IMAGE_TOKENS = {"anthropic": 5_000, "openai": 25_600}  # the vendors' documented maxima
SERVER_PASSES = 10
TOOL_PROMPT = 1_024
HOLD = re.compile(r"may cost up to \$([0-9.]+)")


@pytest.fixture(scope="module")
def models(gateway: RunningGateway, broke_key: str) -> dict[str, dict[str, Any]]:
    r = httpx.get(gateway.proxy + "/v1/models", headers={"authorization": f"Bearer {broke_key}"})
    return {m["id"]: m for m in r.json()["data"]}


# ------------------------------------------------------------------------------ strategies

texts = st.one_of(
    st.text(max_size=300),
    st.text(alphabet="日本語テキスト🙂é ", max_size=200),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "€", " x", "🙂"]), st.integers(0, 60_000)),
)
blob = st.builds(
    lambda n: base64.b64encode(b"\x00" * n).decode(), st.sampled_from([0, 30, 3_000, 300_000])
)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), texts)
json_any = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
cache = st.one_of(
    st.none(), st.just({"type": "ephemeral"}), st.just({"type": "ephemeral", "ttl": "1h"})
)


def _with(block: dict[str, Any], cache_control: Any) -> dict[str, Any]:
    return {**block, "cache_control": cache_control} if cache_control else block


anthropic_block = st.one_of(
    st.builds(lambda t, c: _with({"type": "text", "text": t or "."}, c), texts, cache),
    st.builds(
        lambda d: {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": d},
        },
        blob,
    ),
    st.just({"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}),
    st.builds(
        lambda d: {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": d or "AA=="},
        },
        blob,
    ),
    st.builds(
        lambda t: {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": t or "."},
        },
        texts,
    ),
    st.just({"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}),
)
anthropic_tool = st.one_of(
    st.builds(
        lambda name, desc, extra: {
            "name": name,
            "description": desc,
            "input_schema": {"type": "object", "properties": {"x": {"type": "string"}}, **extra},
        },
        st.from_regex(r"[a-z]{1,12}", fullmatch=True),
        texts,
        st.dictionaries(st.from_regex(r"x_[a-z]{1,6}", fullmatch=True), json_any, max_size=2),
    ),
    st.builds(
        lambda blob: {"type": "web_search_20250305", "name": "web_search", "x_blob": blob},
        texts,
    ),
)


@st.composite
def anthropic_bodies(draw: st.DrawFn) -> dict[str, Any]:
    turns = draw(
        st.lists(st.lists(anthropic_block, min_size=1, max_size=4), min_size=1, max_size=4)
    )
    messages = []
    for i, blocks in enumerate(turns):
        role = "user" if i % 2 == 0 else "assistant"
        if role == "assistant":  # assistants send text only
            blocks = [{"type": "text", "text": "ok"}]
        messages.append({"role": role, "content": blocks})
    if messages[-1]["role"] == "assistant":
        messages.append({"role": "user", "content": "go on"})
    body: dict[str, Any] = {
        "model": draw(st.sampled_from(ANTHROPIC_MODELS)),
        "max_tokens": draw(st.integers(1, 64_000)),
        "messages": messages,
    }
    system = draw(
        st.lists(
            st.builds(lambda t, c: _with({"type": "text", "text": t or "."}, c), texts, cache),
            max_size=2,
        )
    )
    if system:
        body["system"] = system
    tools = draw(st.lists(anthropic_tool, max_size=3, unique_by=lambda t: t["name"]))
    if tools:
        body["tools"] = tools
    extra = draw(
        st.dictionaries(st.from_regex(r"x_[a-z]{1,6}", fullmatch=True), json_any, max_size=2)
    )
    return {**body, **extra}


openai_part = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, texts),
    st.builds(
        lambda d: {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{d}"}}, blob
    ),
    st.just(
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}}
    ),
    st.builds(
        lambda d: {
            "type": "file",
            "file": {
                "filename": "a.pdf",
                "file_data": f"data:application/pdf;base64,{d or 'AA=='}",
            },
        },
        blob,
    ),
)
openai_tool = st.builds(
    lambda name, desc, extra: {
        "type": "function",
        "function": {
            "name": name,
            "description": desc,
            "parameters": {"type": "object", "properties": {}, **extra},
        },
    },
    st.from_regex(r"[a-z]{1,12}", fullmatch=True),
    texts,
    st.dictionaries(st.from_regex(r"x_[a-z]{1,6}", fullmatch=True), json_any, max_size=2),
)


@st.composite
def openai_bodies(draw: st.DrawFn) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(texts)})
    for _ in range(draw(st.integers(1, 3))):
        messages.append(
            {"role": "user", "content": draw(st.lists(openai_part, min_size=1, max_size=4))}
        )
    body: dict[str, Any] = {"model": draw(st.sampled_from(OPENAI_MODELS)), "messages": messages}
    if draw(st.booleans()):
        body["max_completion_tokens"] = draw(st.integers(1, 16_000))
    n = draw(st.sampled_from([None, 1, 3]))
    if n is not None:
        body["n"] = n
    tools = draw(st.lists(openai_tool, max_size=3, unique_by=lambda t: t["function"]["name"]))
    if tools:
        body["tools"] = tools
    return body


# ------------------------------------------------------------------------------ the oracle


def _walk(value: Any) -> Iterator[Any]:
    stack = [value]
    while stack:
        v = stack.pop()
        yield v
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def _media(body: dict[str, Any]) -> tuple[int, set[str], bool]:
    """(images, their base64 strings, any document or file the vendor renders)."""
    images, data, window = 0, set(), False
    for v in _walk(body):
        if not isinstance(v, dict):
            continue
        kind = v.get("type")
        if kind == "image":
            images += 1
            if v["source"]["type"] == "base64":
                data.add(v["source"]["data"])
        elif kind == "image_url":
            images += 1
            url = v["image_url"]["url"]
            if url.startswith("data:"):
                data.add(url)  # the whole URI: its prefix is text the vendor never bills
        elif kind == "file" or (kind == "document" and v["source"]["type"] != "text"):
            window = True
    return images, data, window


def most_the_vendor_can_bill(body: dict[str, Any], vendor: str, model: dict[str, Any]) -> Decimal:
    images, image_data, window = _media(body)
    strings = sum(
        len(v.encode()) if isinstance(v, str) else len(str(v))
        for v in _walk(body)
        if not isinstance(v, dict | list) and v not in image_data
    )
    tokens = strings + 4 * len(body["messages"]) + images * IMAGE_TOKENS[vendor]
    server = any(
        t.get("type", "custom") not in ("custom", "function") for t in body.get("tools", [])
    )
    if body.get("tools"):
        tokens += TOOL_PROMPT
    ctx = model["context_window"]
    prompt = (ctx if window else min(tokens, ctx)) * (SERVER_PASSES if server else 1)
    p = model["pricing"]
    dearest = max(
        Decimal(p[f]) for f in ("input_per_mtok", "cache_write_per_mtok", "cache_write_1h_per_mtok")
    )
    max_out = body.get("max_tokens") or body.get("max_completion_tokens") or model["max_output"]
    output = max_out * (body.get("n") or 1)
    return (prompt * dearest + output * Decimal(p["output_per_mtok"])) / 1_000_000


def _hold(gateway: RunningGateway, key: str, path: str, body: dict[str, Any]) -> Decimal:
    r = httpx.post(
        gateway.proxy + path, headers={"authorization": f"Bearer {key}"}, json=body, timeout=60
    )
    assert r.status_code == 402, r.text[:500]
    match = HOLD.search(r.text)
    assert match is not None, r.text
    return Decimal(match.group(1))


PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


FORMATS = {
    "anthropic": ("/v1/messages", anthropic_bodies()),
    "openai": ("/v1/chat/completions", openai_bodies()),
}


@pytest.mark.parametrize("vendor", list(FORMATS))
@PROPERTY
@given(data=st.data())
def test_hold_covers_every_billable_byte(
    gateway: RunningGateway,
    broke_key: str,
    models: dict[str, dict[str, Any]],
    vendor: str,
    data: st.DataObject,
) -> None:
    path, bodies = FORMATS[vendor]
    body = data.draw(bodies)
    hold = _hold(gateway, broke_key, path, body)
    assert hold >= most_the_vendor_can_bill(body, vendor, models[body["model"]])
