"""Each coding CLI's command line, run in a fresh HOME (nothing of the machine's own
configuration leaks in). Their environment and config files come from
`tokenrelay.portal.client_setup`, which the /docs page renders too: what the docs show is what ran.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tokenrelay.portal import client_setup

BIN = Path(__file__).parent / "node_modules" / ".bin"


@dataclass
class Invocation:
    argv: list[str]
    env: dict[str, str]


def run(
    invocation: Invocation, cwd: Path, timeout: float = 150
) -> subprocess.CompletedProcess[str]:
    """A CLI run to its end in `cwd`, with no input (non-interactive), its output captured."""
    return subprocess.run(
        invocation.argv,
        env=invocation.env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _base_env(home: Path) -> dict[str, str]:
    # Only what a CLI needs to run: no proxy settings, no vendor keys from the machine.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}


def claude_code(gateway: str, key: str, home: Path, model: str, prompt: str) -> Invocation:
    """Claude Code (`claude -p`), default tools, on the Anthropic Messages API."""
    env = {**_base_env(home), **client_setup.claude_code_env(gateway, key)}
    return Invocation([str(BIN / "claude"), "-p", prompt, "--model", model], env)


def codex(gateway: str, key: str, home: Path, model: str, prompt: str) -> Invocation:
    """Codex CLI (`codex exec`). Retries off here: an error shows at once instead of after 5
    backoffs."""
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    config = client_setup.codex_config(gateway, model)
    config += "request_max_retries = 0\nstream_max_retries = 0\n"
    (codex_home / "config.toml").write_text(config)
    env = {**_base_env(home), "CODEX_HOME": str(codex_home), **client_setup.codex_env(key)}
    # The model only ever runs `cat` in a temporary workspace; Codex's Linux sandbox needs user
    # namespaces, which containers often lack.
    argv = [str(BIN / "codex"), "exec", "--skip-git-repo-check", "--sandbox"]
    return Invocation([*argv, "danger-full-access", "--model", model, prompt], env)


def gemini_cli(gateway: str, key: str, home: Path, model: str, prompt: str) -> Invocation:
    """Gemini CLI (`gemini -p`) on the Gemini API (`/api/proxy/v1beta/models/...`)."""
    settings = home / ".gemini" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(client_setup.gemini_settings_json())
    env = {**_base_env(home), **client_setup.gemini_env(gateway, key)}
    return Invocation([str(BIN / "gemini"), "-p", prompt, "-m", model], env)
