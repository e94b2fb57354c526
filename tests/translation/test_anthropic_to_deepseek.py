"""Anthropic Messages client ← DeepSeek (OpenAI-compatible Chat Completions).

Recordings: text, text_stream (both cut by max_tokens), tool_call, tool_call_stream,
reasoning, reasoning_stream, error_insufficient_balance; derived: parallel_tool_call(_stream).
No recording for: a mid-stream error.
"""

from __future__ import annotations

import anthropic
import pytest
from cell_harness import Cell

cell = Cell("anthropic", "deepseek", missing=frozenset({"midstream_error"}))


def test_recording_gaps_are_as_documented() -> None:
    cell.check_gaps()


@pytest.mark.parametrize("case", cell.cases())
def test_rendered_events_match_golden(case: str) -> None:
    cell.check_golden(case)


@pytest.mark.parametrize("case", cell.success_cases())
def test_sdk_reads_what_deepseek_said(case: str) -> None:
    cell.check_sdk(case)


@pytest.mark.parametrize("case", ["text", "text_stream"])
def test_length_cut_is_max_tokens(case: str) -> None:
    assert cell.view(case).stop == "max_tokens"


@pytest.mark.parametrize("case", ["reasoning", "reasoning_stream", "tool_call_stream"])
def test_reasoning_content_becomes_a_thinking_block(case: str) -> None:
    view = cell.view(case)
    assert view.reasoning and not view.reasoning.startswith(view.text or "\0")


def test_cache_hits_are_cache_reads_not_input() -> None:
    # prompt 339 = prompt_cache_hit_tokens 320 + miss 19; completion 83 includes reasoning.
    assert cell.view("tool_call_stream").usage == {
        "input_tokens": 19,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 320,
        "output_tokens": 83,
    }


def test_deepseek_out_of_balance_is_a_gateway_error_not_the_clients() -> None:
    # DeepSeek 402 is the gateway's account, not the customer's (VENDORS.md §6.3 #28).
    cell.check_error(
        "error_insufficient_balance",
        status=502,
        error_type="api_error",
        exc=anthropic.InternalServerError,
    )
