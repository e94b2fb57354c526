"""The emulator against the recorded vendor exchanges: framing, event sequences, key sets."""

from __future__ import annotations

import httpx
import pytest
from emu_helpers import emulator_path, with_trigger
from emu_structure import (
    ALLOWED_EXTRA,
    anthropic_label,
    compare_streams,
    gemini_label,
    openai_label,
    raw,
    recording,
    shape_diff,
)

LABELS = {"anthropic": anthropic_label, "gemini": gemini_label}

STREAMS = [
    ("anthropic__text_stream", ""),
    ("anthropic__tool_call_stream", ""),
    ("anthropic__thinking_stream", ""),
    ("anthropic__midstream_error", "[[midstream-error]]"),
    ("openai__text_stream", ""),
    ("openai__tool_call_stream", ""),
    ("openai__midstream_error", "[[midstream-error]]"),
    ("xai__text_stream", ""),
    ("xai__tool_call_stream", ""),
    ("deepseek__text_stream", ""),
    ("deepseek__reasoning_stream", ""),
    ("deepseek__tool_call_stream", ""),
    ("gemini__text_stream", ""),
    ("gemini__thinking_stream", ""),
    ("gemini__tool_call_stream", ""),
    ("gemini__midstream_error", "[[midstream-error]]"),
]

EXCHANGES = [
    ("anthropic__text", ""),
    ("anthropic__tool_call", ""),
    ("anthropic__error_overloaded", "[[error:529]]"),
    ("anthropic__error_invalid_request", ""),
    ("openai__text", ""),
    ("openai__tool_call", ""),
    ("openai__error_rate_limit", "[[error:429]]"),
    ("openai__error_unsupported_parameter", ""),
    ("xai__text", ""),
    ("xai__tool_call", ""),
    ("xai__error_invalid_key", ""),
    ("deepseek__text", ""),
    ("deepseek__reasoning", ""),
    ("deepseek__tool_call", ""),
    ("deepseek__error_insufficient_balance", "[[error:402]]"),
    ("gemini__text", ""),
    ("gemini__tool_call", ""),
    ("gemini__error_429", "[[error:429]]"),
    ("gemini__error_invalid_argument", ""),
]
# Bodies the emulator reproduces word for word (validation messages, fixed error bodies).
EXACT = {
    "openai__error_unsupported_parameter",
    "deepseek__error_insufficient_balance",
    "gemini__error_invalid_argument",
}


def _headers(request: dict, vendor: str) -> dict[str, str]:
    headers = dict(request["headers"])
    if vendor == "xai" and "invalid_key" in request.get("url", "") + str(headers):
        headers["authorization"] = "Bearer invalid"
    return headers


@pytest.mark.parametrize(("stem", "trigger"), STREAMS)
async def test_stream_matches_recording(emu: httpx.AsyncClient, stem: str, trigger: str) -> None:
    vendor = stem.split("__")[0]
    request = recording(f"{stem}.request.json")
    resp = await emu.post(
        emulator_path(request["url"]),
        headers=request["headers"],
        json=with_trigger(request["body"], trigger),
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    label = LABELS.get(vendor, openai_label)
    problems = compare_streams(vendor, raw(f"{stem}.sse"), resp.content, label)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("stem", "trigger"), EXCHANGES)
async def test_exchange_matches_recording(emu: httpx.AsyncClient, stem: str, trigger: str) -> None:
    vendor = stem.split("__")[0]
    rec = recording(f"{stem}.json")
    request, expected = rec["request"], rec["response"]
    headers = dict(request["headers"])
    if stem == "xai__error_invalid_key":
        headers["authorization"] = "Bearer invalid"
    resp = await emu.post(
        emulator_path(request["url"]), headers=headers, json=with_trigger(request["body"], trigger)
    )
    assert resp.status_code == expected["status"], resp.text
    assert resp.headers["content-type"] == expected["headers"]["content-type"]
    for name in ("retry-after", "x-should-retry"):
        if name in expected["headers"]:
            assert name in resp.headers
    body = resp.json()
    if stem in EXACT:
        assert body == expected["body"]
    problems = shape_diff(expected["body"], body, ALLOWED_EXTRA[vendor])
    assert not problems, "\n".join(problems)


async def test_anthropic_invalid_request_message(emu: httpx.AsyncClient) -> None:
    rec = recording("anthropic__error_invalid_request.json")
    resp = await emu.post(
        emulator_path(rec["request"]["url"]),
        headers=rec["request"]["headers"],
        json=rec["request"]["body"],
    )
    assert resp.json()["error"] == rec["response"]["body"]["error"]
    assert resp.json()["request_id"] == resp.headers["request-id"]


def test_structural_diff_catches_differences() -> None:
    """The helper itself must be able to fail."""
    assert shape_diff({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {}}, set()) == ["$.b.c: missing"]
    assert shape_diff({"a": 1}, {"a": 1, "z": 0}, set()) == ["$.z: unexpected"]
    assert shape_diff({"a": "x"}, {"a": 3}, set()) == ["$.a: str vs int"]
    lf = b'data: {"a":1}\n\ndata: [DONE]\n\n'
    crlf = b'data: {"a":1}\r\n\r\n'
    assert compare_streams("gemini", crlf, lf, lambda n, d: "x")
