"""OpenAI Chat Completions client ← xAI (Grok, OpenAI-compatible Chat Completions).

Recordings: text, text_stream, tool_call, tool_call_stream (all grok-3-mini, all with
reasoning_content), error_invalid_key; derived: parallel_tool_call(_stream).
No recording for: a dedicated reasoning exchange (reasoning is in every recording above) and a
mid-stream error.
"""

from __future__ import annotations

import openai
import pytest
from cell_harness import Cell

TOOL_STREAMS = ["tool_call_stream", "parallel_tool_call_stream"]
cell = Cell(
    "openai",
    "xai",
    missing=frozenset({"reasoning", "reasoning_stream", "midstream_error"}),
)


def test_recording_gaps_are_as_documented() -> None:
    cell.check_gaps()


@pytest.mark.parametrize("case", cell.cases())
def test_rendered_events_match_golden(case: str) -> None:
    cell.check_golden(case)


@pytest.mark.parametrize("case", cell.success_cases())
def test_sdk_reads_what_xai_said(case: str) -> None:
    cell.check_sdk(case)


@pytest.mark.parametrize("case", TOOL_STREAMS)
def test_tool_call_only_stream_has_null_content(case: str) -> None:
    cell.check_null_content_without_text(case)


def test_reasoning_content_passes_through() -> None:
    assert cell.view("tool_call").reasoning.startswith("First, the user is asking")


def test_completion_tokens_include_reasoning_as_openai_counts_them() -> None:
    # xAI: completion_tokens 26 EXCLUDES reasoning_tokens 196; OpenAI semantics include them.
    # total_tokens stays xAI's own 513 = 291 + 26 + 196.
    assert cell.view("tool_call_stream").usage == {
        "prompt_tokens": 291,
        "completion_tokens": 26 + 196,
        "total_tokens": 513,
        "cached_tokens": 290,
        "reasoning_tokens": 196,
    }


def test_xai_rejecting_the_gateways_key_is_a_gateway_error_not_the_clients() -> None:
    # xAI says HTTP 400 "Incorrect API key"; the client's key was fine (VENDORS.md §6.3 #28),
    # and the vendor's partial key ("xa***ED") never reaches the client.
    cell.check_error(
        "error_invalid_key",
        status=502,
        error_type="server_error",
        exc=openai.InternalServerError,
        code="upstream_account_error",  # the relay tells SDKs not to retry it
    )
    assert b"xa***ED" not in cell.render("error_invalid_key").body
