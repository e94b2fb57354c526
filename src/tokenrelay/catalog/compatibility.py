"""The published compatibility contract: client API × vendor × feature, what survives.

This table is the one source of `/compatibility` (page and JSON) and of the test that checks
it (tests/e2e/test_compatibility.py parametrizes over every cell marked "yes" and drives it
through the official SDK): a claim here that stops being true fails CI, so the page cannot
drift. Features not yet in the table are listed as not covered, never claimed.
"""

from __future__ import annotations

from typing import Literal

# yes: survives translation whole; partial: survives as the note says; n/a: no such feature
Status = Literal["yes", "partial", "n/a"]

CLIENT_APIS = {"messages": "Anthropic Messages", "chat": "OpenAI Chat Completions"}
# vendor -> the model its cells are checked with
VENDOR_MODELS = {
    "anthropic": "claude-sonnet-4-6",
    "openai": "gpt-4o",
    "gemini": "gemini-2.5-flash",
    "xai": "grok-4.3",
    "deepseek": "deepseek-chat",
}
FEATURES = {
    "text": "Text in, text out, streamed and not; usage and stop reason in the client's terms",
    "tools": "Tool definitions, a tool call, its result sent back, the final answer",
    "streamed_tool_arguments": "A tool call's arguments streamed as the client API streams them",
    "stop_sequences": "Custom stop sequences (enforced by the gateway where a model has none)",
    "count_tokens": "Counting a request's input tokens before sending it",
}
NOT_YET_COVERED = (
    "reasoning",
    "images",
    "documents",
    "JSON schema",
    "batches",
    "cache control",
    "the Responses and Gemini client APIs",
)

# Cells that differ from "yes", with why: (api, vendor or None for every vendor, feature).
_STOP_REASON_LOST: tuple[Status, str] = (
    "partial",
    "the text ends before the stop sequence, but stop_reason is end_turn and stop_sequence "
    "null: the vendor reports a stop sequence and a natural end alike",
)
_EXCEPTIONS: dict[tuple[str, str | None, str], tuple[Status, str]] = {
    ("chat", None, "count_tokens"): (
        "n/a",
        "the OpenAI API has no count endpoint: use POST /api/proxy/v1/messages/count_tokens",
    ),
    ("messages", "openai", "stop_sequences"): _STOP_REASON_LOST,
    ("messages", "gemini", "stop_sequences"): _STOP_REASON_LOST,
    ("messages", "deepseek", "stop_sequences"): _STOP_REASON_LOST,
}


def cell(api: str, vendor: str, feature: str) -> tuple[Status, str]:
    return _EXCEPTIONS.get(
        (api, vendor, feature), _EXCEPTIONS.get((api, None, feature), ("yes", ""))
    )


def matrix() -> list[dict[str, str]]:
    """Every cell, in the JSON's form."""
    return [
        {"api": api, "vendor": vendor, "model": model, "feature": feature}
        | dict(zip(("status", "note"), cell(api, vendor, feature), strict=True))
        for api in CLIENT_APIS
        for vendor, model in VENDOR_MODELS.items()
        for feature in FEATURES
    ]


def document() -> dict[str, object]:
    return {
        "client_apis": CLIENT_APIS,
        "features": FEATURES,
        "not_yet_covered": list(NOT_YET_COVERED),
        "cells": matrix(),
    }
