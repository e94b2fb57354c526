"""How each coding CLI is pointed at a tokenrelay gateway: its environment and config files.

The one place for it: the /docs page renders these values and tests/clients runs the real CLIs
with them, so what a customer copies is what the tests ran. Telemetry, update checks and other
network extras are off (a CLI then calls nothing but the gateway).
"""

from __future__ import annotations

import json
from typing import Any

# Codex offers OpenAI's built-in web search; other vendors refuse live search (a 400), so its
# config turns it off for them.
_OPENAI_PREFIXES = ("gpt", "o1", "o3", "o4", "chatgpt", "codex")


def claude_code_env(gateway: str, key: str) -> dict[str, str]:
    """Claude Code (`claude -p "..." --model M`), on the Anthropic Messages API."""
    return {
        "ANTHROPIC_BASE_URL": f"{gateway}/api/proxy",
        "ANTHROPIC_API_KEY": key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
    }


def codex_config(gateway: str, model: str, provider: str = "tokenrelay") -> str:
    """`$CODEX_HOME/config.toml` (default `~/.codex/config.toml`): the gateway as a model
    provider (named `provider`: the operator's brand on /docs) on the Responses API, the only
    wire Codex speaks. Its key comes from `TOKENRELAY_API_KEY` (`codex_env`)."""
    search = "" if model.startswith(_OPENAI_PREFIXES) else 'web_search = "disabled"\n'
    return f"""\
model = "{model}"
model_provider = "{provider}"
{search}check_for_update_on_startup = false

[analytics]
enabled = false

[model_providers.{provider}]
name = "{provider}"
base_url = "{gateway}/api/proxy/v1"
env_key = "TOKENRELAY_API_KEY"
wire_api = "responses"
"""


def codex_env(key: str) -> dict[str, str]:
    return {"TOKENRELAY_API_KEY": key}


# `~/.gemini/settings.json`: API-key auth (the gateway's key), no usage statistics or updates.
GEMINI_SETTINGS: dict[str, Any] = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
}


def gemini_settings_json() -> str:
    return json.dumps(GEMINI_SETTINGS, indent=2)


def gemini_env(gateway: str, key: str) -> dict[str, str]:
    """Gemini CLI (`gemini -m M -p "..."`; give `-m` a catalog model), on the Gemini API."""
    return {
        "GOOGLE_GEMINI_BASE_URL": f"{gateway}/api/proxy",
        "GEMINI_API_KEY": key,
        "GEMINI_CLI_TRUST_WORKSPACE": "true",  # non-interactive runs refuse an untrusted folder
    }
