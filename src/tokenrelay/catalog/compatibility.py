"""The published compatibility contract: client API × vendor × feature, and coding CLI version ×
vendor — for each cell, what survives translation and what does not.

The cells are not written by hand: `compatibility_results.json` (next to this module) is what
the matrix tests observed (tests/compat/test_contract.py through the official SDKs, and
tests/clients/test_coding_clis.py with the pinned CLIs), recorded by the pytest plugin
tests/compat_recorder.py under `make compat`. Every matrix test also compares what it observed
with this file and fails when they differ, so the page cannot say what the code no longer does;
a cell the file lacks is published as "untested", never claimed.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

import orjson

from tokenrelay.vendors import BUILTIN, beta_policy

# yes: survives whole; partial: survives, with the losses listed; no: the gateway refuses it in
# the client's error format (or the API has it but the gateway does not serve it); n/a: the
# client API has no such feature; failing: its test failed when recorded; untested: no result.
Status = Literal["yes", "partial", "no", "n/a", "failing", "untested"]

RESULTS = Path(__file__).with_name("compatibility_results.json")

CLIENT_APIS = {
    "messages": "Anthropic Messages",
    "chat": "OpenAI Chat Completions",
    "responses": "OpenAI Responses",
    "gemini": "Gemini generateContent",
}
# vendor -> the model its cells are checked with
VENDOR_MODELS = {
    "anthropic": "claude-sonnet-4-6",
    "openai": "gpt-4o",
    "gemini": "gemini-2.5-flash",
    "xai": "grok-4.3",
    "deepseek": "deepseek-chat",
}
# A feature checked with another model of the vendor (gpt-4o does not reason).
FEATURE_MODELS = {("reasoning", "openai"): "gpt-5"}
FEATURES = {
    "text": "Text in, text out, streamed and not; usage and stop reason in the client's terms",
    "tools": "Tool definitions, a tool call, its result sent back, the final answer",
    "streamed_tool_arguments": "A tool call's arguments streamed as the client API streams them",
    "reasoning": "Reasoning asked for, shown as the client API shows it, counted in usage",
    "images": "An image in the prompt (base64), counted in the input",
    "documents": "A PDF document in the prompt (base64)",
    "stop_sequences": "Custom stop sequences (enforced by the gateway where a model has none)",
    "json_schema": "Output constrained to a JSON schema",
    "count_tokens": "Counting a request's input tokens before sending it",
    "batches": "The client API's batch interface, a line run on the model",
    "cache_control": "Prompt caching: breakpoints where the API has them, cache reads reported",
}
CLIS = {"claude-code": "Claude Code", "codex": "Codex CLI", "gemini-cli": "Gemini CLI"}
# The CLI runs' check (tests/clients/test_coding_clis.py::_check).
CLI_CHECK = (
    "a non-interactive run with the CLI's default tools reads a file of its workspace and "
    "answers from it; every vendor call billed once; the ledger clean"
)


def model_for(feature: str, vendor: str) -> str:
    return FEATURE_MODELS.get((feature, vendor), VENDOR_MODELS[vendor])


def cell_key(api: str, vendor: str, feature: str) -> str:
    return f"{api}/{vendor}/{feature}"


def cli_key(cli: str, vendor: str) -> str:
    return f"cli/{cli}/{vendor}"


@functools.cache
def recorded() -> dict[str, Any]:
    """The results file as recorded ({} before the first `make compat`)."""
    try:
        data = orjson.loads(RESULTS.read_bytes())
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


_UNTESTED: dict[str, Any] = {"status": "untested", "survives": [], "lost": [], "note": ""}


def result(key: str) -> dict[str, Any]:
    cells = recorded().get("cells") or {}
    got = cells.get(key)
    return {**_UNTESTED, **got} if isinstance(got, dict) else dict(_UNTESTED)


def matrix() -> list[dict[str, Any]]:
    """Every client-API cell, in the JSON's form."""
    return [
        {"api": api, "vendor": vendor, "model": model_for(feature, vendor), "feature": feature}
        | result(cell_key(api, vendor, feature))
        for api in CLIENT_APIS
        for vendor in VENDOR_MODELS
        for feature in FEATURES
    ]


def cli_matrix() -> list[dict[str, Any]]:
    versions = recorded().get("cli_versions") or {}
    return [
        {"cli": cli, "version": versions.get(cli, ""), "vendor": vendor}
        | {"model": VENDOR_MODELS[vendor]}
        | result(cli_key(cli, vendor))
        for cli in CLIS
        for vendor in VENDOR_MODELS
    ]


def beta_document() -> dict[str, object]:
    return beta_policy.document([spec.name for spec in BUILTIN])


def document() -> dict[str, object]:
    return {
        "client_apis": CLIENT_APIS,
        "features": FEATURES,
        "recorded_at": recorded().get("recorded_at", ""),
        "cells": matrix(),
        "clis": CLIS,
        "cli_check": CLI_CHECK,
        "cli_cells": cli_matrix(),
        "anthropic_beta": beta_document(),
    }
