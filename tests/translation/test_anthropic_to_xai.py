"""Anthropic Messages client ← xAI (Grok, OpenAI-compatible Chat Completions).

Recordings: text, text_stream, tool_call, tool_call_stream (all grok-3-mini, all with
reasoning_content), error_invalid_key; derived: parallel_tool_call(_stream).
No recording for: a dedicated reasoning exchange (reasoning is in every recording above) and a
mid-stream error.
"""

from __future__ import annotations

import anthropic
import pytest
from cell_harness import Cell

cell = Cell(
    "anthropic",
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


def test_reasoning_content_becomes_a_thinking_block_first() -> None:
    view = cell.view("text_stream")
    assert (view.reasoning, view.text) == ("First, the user said", "Hello")


def test_reasoning_tokens_are_added_to_output_and_cache_reads_split_off() -> None:
    # xAI: completion_tokens 1 EXCLUDES reasoning_tokens 290; prompt 12 includes cached 11.
    assert cell.view("text_stream").usage == {
        "input_tokens": 1,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 11,
        "output_tokens": 1 + 290,
    }


def test_a_whole_tool_call_in_one_delta_becomes_one_tool_use_block() -> None:
    view = cell.view("tool_call_stream")
    assert view.tool_calls == [("call_55117580", "weather", {"location": "San Francisco"})]


def test_xai_rejecting_the_gateways_key_is_a_gateway_error_not_the_clients() -> None:
    # xAI says HTTP 400 "Incorrect API key"; the client's key was fine (VENDORS.md §6.3 #28).
    cell.check_error(
        "error_invalid_key", status=502, error_type="api_error", exc=anthropic.InternalServerError
    )
