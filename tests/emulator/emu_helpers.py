"""Request helpers for the emulator tests."""

from __future__ import annotations

import copy
from typing import Any

_HOSTS = {
    "https://api.anthropic.com": "/anthropic",
    "https://api.openai.com": "/openai",
    "https://generativelanguage.googleapis.com": "/gemini",
    "https://api.x.ai": "/xai",
    "https://api.deepseek.com": "/deepseek",
}
AUTH = {
    "anthropic": {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"},
    "openai": {"authorization": "Bearer sk-test"},
    "xai": {"authorization": "Bearer xai-test"},
    "deepseek": {"authorization": "Bearer sk-test"},
    "compat": {"authorization": "Bearer any-key"},  # an operator's own compatible server
    "gemini": {"x-goog-api-key": "test-key"},
}
PATHS = {
    "anthropic": "/anthropic/v1/messages",
    "openai": "/openai/v1/chat/completions",
    "xai": "/xai/v1/chat/completions",
    "deepseek": "/deepseek/chat/completions",
    "compat": "/compat/acme-llm/v1/chat/completions",
}


def emulator_path(url: str) -> str:
    for host, prefix in _HOSTS.items():
        if url.startswith(host):
            return prefix + url[len(host) :]
    raise AssertionError(url)


def with_trigger(body: dict[str, Any], trigger: str) -> dict[str, Any]:
    """Append a [[marker]] to the last user turn's text, whatever the vendor's shape."""
    body = copy.deepcopy(body)
    if not trigger:
        return body
    if "contents" in body:
        part = next(p for p in reversed(body["contents"][-1]["parts"]) if "text" in p)
        part["text"] += " " + trigger
        return body
    msg = next(m for m in reversed(body["messages"]) if m["role"] == "user")
    if isinstance(msg["content"], str):
        msg["content"] += " " + trigger
    else:
        block = next(b for b in reversed(msg["content"]) if b.get("type") == "text")
        block["text"] += " " + trigger
    return body


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def gemini_user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


def gemini_path(model: str, action: str = "generateContent") -> str:
    suffix = "?alt=sse" if action == "streamGenerateContent" else ""
    return f"/gemini/v1beta/models/{model}:{action}{suffix}"
