"""Structural comparison of emulator output against recorded vendor exchanges.

Values differ (the emulator's words are not the model's); what must match is the framing, the
sequence of event kinds and the JSON key sets at every level.
"""

from __future__ import annotations

import json
from typing import Any

from paths import RECORDINGS

# Newer-API fields the emulator may add on top of an older recording, per vendor.
ALLOWED_EXTRA = {
    "anthropic": {
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "cache_creation",
        "service_tier",
        "inference_geo",
        "input_tokens",
    },
    "openai": {
        "service_tier",
        "usage",
        "annotations",
        "prompt_tokens_details",
        "audio_tokens",
        "accepted_prediction_tokens",
        "rejected_prediction_tokens",
    },
    "xai": set(),
    "deepseek": set(),
    "gemini": {"thoughtSignature"},
}


def recording(name: str) -> Any:
    return json.loads((RECORDINGS / name).read_text())


def raw(name: str) -> bytes:
    return (RECORDINGS / name).read_bytes()


def split_events(body: bytes) -> tuple[bytes, list[bytes]]:
    """(separator, event blocks) — the separator tells LF from CRLF framing."""
    sep = b"\r\n\r\n" if b"\r\n\r\n" in body else b"\n\n"
    return sep, [e for e in body.split(sep) if e.strip()]


def sse_events(body: bytes) -> list[tuple[str | None, Any]]:
    """[(event name or None, parsed data or the raw string for [DONE])]."""
    sep, blocks = split_events(body)
    nl = b"\r\n" if sep == b"\r\n\r\n" else b"\n"
    out: list[tuple[str | None, Any]] = []
    for block in blocks:
        name, data = None, None
        for line in block.split(nl):
            if line.startswith(b"event: "):
                name = line[7:].decode()
            elif line.startswith(b"data: "):
                text = line[6:].decode()
                data = text if text == "[DONE]" else json.loads(text)
            elif line.startswith(b":"):
                name = ":comment"
        out.append((name, data))
    return out


def _kind(obj: Any) -> str:
    if isinstance(obj, dict):
        for key in ("type", "@type"):
            if isinstance(obj.get(key), str):
                return obj[key]
        return ",".join(sorted(k for k in obj if k in _PART_KEYS)) or "dict"
    return type(obj).__name__


_PART_KEYS = {"text", "functionCall", "functionResponse", "thought", "inlineData"}


def shape_diff(recorded: Any, emulated: Any, allowed: set[str], path: str = "$") -> list[str]:
    """Differences in structure: missing keys, unexpected keys, type mismatches."""
    problems: list[str] = []
    if recorded is None or emulated is None:
        return problems  # nullable fields: null in one exchange, a value in another
    if isinstance(recorded, dict):
        if not isinstance(emulated, dict):
            return [f"{path}: expected object, got {type(emulated).__name__}"]
        for key in recorded.keys() - emulated.keys():
            problems.append(f"{path}.{key}: missing")
        for key in emulated.keys() - recorded.keys() - allowed:
            problems.append(f"{path}.{key}: unexpected")
        for key in recorded.keys() & emulated.keys():
            problems += shape_diff(recorded[key], emulated[key], allowed, f"{path}.{key}")
        return problems
    if isinstance(recorded, list):
        if not isinstance(emulated, list):
            return [f"{path}: expected array, got {type(emulated).__name__}"]
        by_kind = {_kind(r): r for r in reversed(recorded)}
        for i, item in enumerate(emulated):
            match = by_kind.get(_kind(item))
            if match is not None:
                problems += shape_diff(match, item, allowed, f"{path}[{i}]")
        return problems
    if (
        isinstance(recorded, bool) != isinstance(emulated, bool)
        or (isinstance(recorded, int | float) != isinstance(emulated, int | float))
        or isinstance(recorded, str) != isinstance(emulated, str)
    ):
        problems.append(f"{path}: {type(recorded).__name__} vs {type(emulated).__name__}")
    return problems


def compress(labels: list[str]) -> list[str]:
    out: list[str] = []
    for label in labels:
        if not out or out[-1] != label:
            out.append(label)
    return out


def anthropic_label(name: str | None, data: Any) -> str:
    if name == "content_block_start":
        return f"start:{data['content_block']['type']}"
    if name == "content_block_delta":
        return f"delta:{data['delta']['type']}"
    return str(name)


def openai_label(_name: str | None, data: Any) -> str:
    if data == "[DONE]":
        return "[DONE]"
    if "error" in data:
        return "error"
    if not data["choices"]:
        return "usage"
    choice = data["choices"][0]
    delta = choice["delta"]
    if choice.get("finish_reason"):
        return "finish+usage" if data.get("usage") else "finish"
    if "role" in delta:
        return "role"
    if delta.get("tool_calls"):
        return "tool_start" if "id" in delta["tool_calls"][0] else "tool_args"
    if delta.get("reasoning_content") is not None:
        return "reasoning"
    return "content"


def gemini_label(_name: str | None, data: Any) -> str:
    if "error" in data:
        return "error"
    if "candidates" not in data:
        return "blocked"
    cand = data["candidates"][0]
    part = cand["content"]["parts"][0]
    if part.get("thought"):
        label = "thought"
    elif "functionCall" in part:
        label = "call"
    elif part.get("text") == "":
        label = "sig" if "thoughtSignature" in part else "empty"
    else:
        label = "text"
    return label + ("+finish" if "finishReason" in cand else "")


def first_by_label(events: list[tuple[str | None, Any]], label: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, data in events:
        found.setdefault(label(name, data), data)
    return found


def compare_streams(vendor: str, recorded: bytes, emulated: bytes, label: Any) -> list[str]:
    """Framing, event-kind sequence and per-kind key sets; returns a list of problems."""
    problems = []
    r_sep, _ = split_events(recorded)
    e_sep, _ = split_events(emulated)
    if r_sep != e_sep:
        problems.append(f"separator {e_sep!r} != recorded {r_sep!r}")
    if recorded.endswith(b"\n") != emulated.endswith(b"\n"):
        problems.append("trailing newline differs")
    rec, emu = sse_events(recorded), sse_events(emulated)
    if [n for n, _ in rec if n] and not all(n for n, _ in emu):
        problems.append("missing event: lines")
    if not [n for n, _ in rec if n] and any(n for n, _ in emu):
        problems.append("unexpected event: lines")
    r_seq = compress([label(n, d) for n, d in rec])
    e_seq = compress([label(n, d) for n, d in emu])
    if r_seq != e_seq:
        problems.append(f"event sequence {e_seq} != recorded {r_seq}")
    r_first, e_first = first_by_label(rec, label), first_by_label(emu, label)
    for kind, data in r_first.items():
        if kind in e_first and isinstance(data, dict):
            problems += [
                f"[{kind}] {p}" for p in shape_diff(data, e_first[kind], ALLOWED_EXTRA[vendor])
            ]
    return problems
