"""OpenAI Chat Completions client ← Gemini (native generateContent / streamGenerateContent).

Recordings: text, text_stream, tool_call, tool_call_stream, thinking_stream, midstream_error,
error_429, error_invalid_argument; derived: parallel_tool_call(_stream).
No recording for: a non-stream thinking answer (thinking is covered by thinking_stream).
"""

from __future__ import annotations

import openai
import pytest
from cell_harness import Cell

TOOL_STREAMS = ["tool_call_stream", "parallel_tool_call_stream"]
cell = Cell(
    "openai",
    "gemini",
    missing=frozenset({"reasoning"}),
)


def test_recording_gaps_are_as_documented() -> None:
    cell.check_gaps()


@pytest.mark.parametrize("case", cell.cases())
def test_rendered_events_match_golden(case: str) -> None:
    cell.check_golden(case)


@pytest.mark.parametrize("case", cell.success_cases())
def test_sdk_reads_what_gemini_said(case: str) -> None:
    cell.check_sdk(case)


@pytest.mark.parametrize("case", TOOL_STREAMS)
def test_tool_call_only_stream_has_null_content(case: str) -> None:
    cell.check_null_content_without_text(case)


@pytest.mark.parametrize("case", ["tool_call", "tool_call_stream", "parallel_tool_call_stream"])
def test_function_calls_finish_with_tool_calls(case: str) -> None:
    view = cell.view(case)
    assert view.stop == "tool_calls"  # Gemini says STOP (VENDORS.md §6.2 #18)
    assert all(call_id.startswith("call_") for call_id, _, _ in view.tool_calls)


def test_thought_parts_become_reasoning_content() -> None:
    view = cell.view("thinking_stream")
    assert view.reasoning.startswith("**Counting the letters**")
    assert view.text.startswith("There are **3** r's")


def test_thoughts_are_completion_and_reasoning_tokens() -> None:
    # candidatesTokenCount 21 + thoughtsTokenCount 389; total = Gemini's totalTokenCount 422.
    assert cell.view("thinking_stream").usage == {
        "prompt_tokens": 12,
        "completion_tokens": 21 + 389,
        "total_tokens": 422,
        "cached_tokens": 0,
        "reasoning_tokens": 389,
    }


def test_midstream_error_is_an_error_chunk_without_done() -> None:
    cell.check_midstream_error("midstream_error", "server_error")


def test_resource_exhausted_is_a_rate_limit_with_retry_after() -> None:
    cell.check_error(
        "error_429",
        status=429,
        error_type="requests",
        exc=openai.RateLimitError,
        retry_after=34.4,
        code="rate_limit_exceeded",
    )


def test_invalid_argument_is_a_bad_request() -> None:
    cell.check_error(
        "error_invalid_argument",
        status=400,
        error_type="invalid_request_error",
        exc=openai.BadRequestError,
    )
