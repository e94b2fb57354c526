"""Public pages: the landing page and the docs (each coding CLI's setup, the models)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tokenrelay.portal import client_setup
from tokenrelay.portal.web import KIND, PortalBase


def _cli_setups(base: str, examples: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Each coding CLI's setup as the tests run it (client_setup), for a model of the catalog."""
    key = "sk-aic-..."
    model = next((m for v, m in examples if v == "anthropic"), examples[0][1] if examples else "")
    other = next((m for v, m in examples if v not in ("anthropic", "openai")), model)

    def exports(env: dict[str, str]) -> str:
        return "\n".join(f"export {k}={v}" for k, v in env.items())

    return [
        {
            "name": "Claude Code",
            "api": "Anthropic Messages",
            "files": [],
            "shell": exports(client_setup.claude_code_env(base, key)) + f"\nclaude --model {model}",
        },
        {
            "name": "Codex CLI",
            "api": "OpenAI Responses",
            "files": [("~/.codex/config.toml", client_setup.codex_config(base, other))],
            "shell": exports(client_setup.codex_env(key))
            + '\ncodex exec "Explain this repository"',
        },
        {
            "name": "Gemini CLI",
            "api": "Gemini generateContent",
            "files": [("~/.gemini/settings.json", client_setup.gemini_settings_json())],
            "shell": exports(client_setup.gemini_env(base, key))
            + f'\ngemini -m {other} -p "Explain this repository"',
        },
    ]


class PublicPages(PortalBase):
    async def landing(self, request: Request) -> Response:
        session = await self.session(request, KIND)
        return self.page(request, "landing.html", account=session is not None)

    async def docs(self, request: Request) -> Response:
        models = self.models()
        examples: list[tuple[str, str]] = []
        for m in models:
            if m.get("vendor") not in {v for v, _ in examples}:
                examples.append((m.get("vendor", ""), m["id"]))
        session = await self.session(request, KIND)
        base = self.settings.public_base()
        return self.page(
            request,
            "docs.html",
            base=base,
            models=models,
            examples=examples,
            clis=_cli_setups(base, examples),
            account=session is not None,
        )
