"""How each coding CLI is pointed at a tokenrelay gateway: environment, config files, command.

The one place for this set-up: README.md's "Coding CLIs" section shows the same values. Every
CLI runs in a fresh HOME (nothing of the machine's own configuration leaks in) with its
telemetry, update checks and other network extras off, so nothing but the gateway is called.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

BIN = Path(__file__).parent / "node_modules" / ".bin"


@dataclass
class Invocation:
    argv: list[str]
    env: dict[str, str]


def _base_env(home: Path) -> dict[str, str]:
    # Only what a CLI needs to run: no proxy settings, no vendor keys from the machine.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}


def claude_code(gateway: str, key: str, home: Path, model: str, prompt: str) -> Invocation:
    """Claude Code (`claude -p`), default tools, on the Anthropic Messages API."""
    env = {
        **_base_env(home),
        "ANTHROPIC_BASE_URL": f"{gateway}/api/proxy",
        "ANTHROPIC_API_KEY": key,
        # Telemetry, error reporting, auto-update and every other non-essential call off.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    return Invocation([str(BIN / "claude"), "-p", prompt, "--model", model], env)


def codex_config(gateway: str, model: str) -> str:
    """$CODEX_HOME/config.toml: the gateway as a model provider on the Responses API (the only
    wire Codex speaks). Retries off: an error shows at once instead of after 5 backoffs. Web
    search off for non-OpenAI models: with full access Codex offers live search, an OpenAI
    built-in tool the gateway refuses (400) on other vendors."""
    search = "" if model.startswith(("gpt", "o1", "o3", "o4")) else 'web_search = "disabled"\n'
    return f"""\
model = "{model}"
model_provider = "tokenrelay"
{search}check_for_update_on_startup = false

[analytics]
enabled = false

[model_providers.tokenrelay]
name = "tokenrelay"
base_url = "{gateway}/api/proxy/v1"
env_key = "TOKENRELAY_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"""


def codex(gateway: str, key: str, home: Path, model: str, prompt: str) -> Invocation:
    """Codex CLI (`codex exec`)."""
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(codex_config(gateway, model))
    env = {**_base_env(home), "CODEX_HOME": str(codex_home), "TOKENRELAY_API_KEY": key}
    # The model only ever runs `cat` in a temporary workspace; Codex's Linux sandbox needs user
    # namespaces, which containers often lack.
    argv = [str(BIN / "codex"), "exec", "--skip-git-repo-check", "--sandbox"]
    return Invocation([*argv, "danger-full-access", "--model", model, prompt], env)


GEMINI_SETTINGS = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
}


def gemini_cli(gateway: str, key: str, home: Path, model: str, prompt: str) -> Invocation:
    """Gemini CLI (`gemini -p`) on the Gemini API (`/api/proxy/v1beta/models/...`)."""
    settings = home / ".gemini" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps(GEMINI_SETTINGS, indent=2))
    env = {
        **_base_env(home),
        "GOOGLE_GEMINI_BASE_URL": f"{gateway}/api/proxy",
        "GEMINI_API_KEY": key,
        "GEMINI_CLI_TRUST_WORKSPACE": "true",  # non-interactive runs refuse an untrusted folder
    }
    return Invocation([str(BIN / "gemini"), "-p", prompt, "-m", model], env)
