"""OpenAI Chat Completions client ← DeepSeek (OpenAI-compatible Chat Completions).

Recordings: text, text_stream (both cut by max_tokens), tool_call, tool_call_stream,
reasoning, reasoning_stream, error_insufficient_balance; derived: parallel_tool_call(_stream).
No recording for: a mid-stream error.
"""

from __future__ import annotations

import openai
import pytest
from cell_harness import Cell

TOOL_STREAMS = ["tool_call_stream", "parallel_tool_call_stream"]
cell = Cell(
    "openai",
    "deepseek",
    missing=frozenset({"midstream_error"}),
)


def test_recording_gaps_are_as_documented() -> None:
    cell.check_gaps()


@pytest.mark.parametrize("case", cell.cases())
def test_rendered_events_match_golden(case: str) -> None:
    cell.check_golden(case)


@pytest.mark.parametrize("case", cell.success_cases())
def test_sdk_reads_what_deepseek_said(case: str) -> None:
    cell.check_sdk(case)


@pytest.mark.parametrize("case", TOOL_STREAMS)
def test_tool_call_only_stream_has_null_content(case: str) -> None:
    cell.check_null_content_without_text(case)


@pytest.mark.parametrize("case", ["text", "text_stream"])
def test_length_cut_finishes_with_length(case: str) -> None:
    assert cell.view(case).stop == "length"


@pytest.mark.parametrize("case", ["reasoning", "reasoning_stream", "tool_call"])
def test_reasoning_content_passes_through(case: str) -> None:
    assert cell.view(case).reasoning


def test_cache_hits_are_cached_tokens() -> None:
    # prompt 339 = prompt_cache_hit_tokens 320 + miss 19; completion 92 includes reasoning 48.
    assert cell.view("tool_call").usage == {
        "prompt_tokens": 339,
        "completion_tokens": 92,
        "total_tokens": 431,
        "cached_tokens": 320,
        "reasoning_tokens": 48,
    }


def test_deepseek_out_of_balance_is_a_gateway_error_not_the_clients() -> None:
    # DeepSeek 402 is the gateway's account, not the customer's (VENDORS.md §6.3 #28).
    cell.check_error(
        "error_insufficient_balance",
        status=502,
        error_type="server_error",
        exc=openai.InternalServerError,
        code="upstream_account_error",  # the relay tells SDKs not to retry it
    )
