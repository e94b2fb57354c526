"""What a customer needs right after creating a key: the environment each SDK and coding CLI
reads, with the key filled in (shown once, on the page that created it), and the check of a
key's model allow-list against the catalog (a typo would fail every request of the key)."""

from __future__ import annotations

import difflib
from typing import Any

from tokenrelay.portal import client_setup


def snippets(base: str, key: str) -> list[tuple[str, str]]:
    """(client, shell lines) for each SDK and CLI, the key filled in."""

    def exports(env: dict[str, str]) -> str:
        return "\n".join(f"export {k}={v}" for k, v in env.items())

    return [
        ("Any SDK (the docs' examples read this)", f"export TOKENRELAY_API_KEY={key}"),
        (
            "OpenAI SDKs (Chat and Responses)",
            exports({"OPENAI_BASE_URL": f"{base}/api/proxy/v1", "OPENAI_API_KEY": key}),
        ),
        (
            "Anthropic SDKs",
            exports({"ANTHROPIC_BASE_URL": f"{base}/api/proxy", "ANTHROPIC_API_KEY": key}),
        ),
        ("Claude Code", exports(client_setup.claude_code_env(base, key))),
        ("Codex CLI (with the config.toml of the docs)", exports(client_setup.codex_env(key))),
        ("Gemini CLI and SDKs", exports(client_setup.gemini_env(base, key))),
    ]


def unknown_models(allowed: list[str], models: list[dict[str, Any]]) -> str | None:
    """A message naming the allow-list's models the catalog does not serve, or None."""
    known = {m["id"] for m in models} | {a for m in models for a in m.get("aliases", [])}
    unknown = [name for name in allowed if name not in known]
    if not unknown:
        return None
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return f"Allowed models: not in the catalog: {', '.join(hints)}. See /pricing for the list."
