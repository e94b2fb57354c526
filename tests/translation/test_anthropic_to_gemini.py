"""Anthropic Messages client ← Gemini (native generateContent / streamGenerateContent).

Recordings: text, text_stream, tool_call, tool_call_stream, thinking_stream, midstream_error,
error_429, error_invalid_argument; derived: parallel_tool_call(_stream).
No recording for: a non-stream thinking answer (thinking is covered by thinking_stream).
"""

from __future__ import annotations

import json

import anthropic
import pytest
from cell_harness import Cell, client_events, load, sse_events

STREAMS = [
    "text_stream",
    "tool_call_stream",
    "thinking_stream",
    "midstream_error",
    "parallel_tool_call_stream",
]
cell = Cell(
    "anthropic",
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


@pytest.mark.parametrize("case", ["tool_call", "tool_call_stream", "parallel_tool_call_stream"])
def test_function_calls_become_tool_use_with_synthesised_ids(case: str) -> None:
    view = cell.view(case)
    assert view.stop == "tool_use"  # Gemini says STOP; a functionCall part makes it tool_use
    assert all(call_id.startswith("call_") for call_id, _, _ in view.tool_calls)


def test_thought_parts_become_a_thinking_block_before_the_text() -> None:
    view = cell.view("thinking_stream")
    assert view.reasoning.startswith("**Counting the letters**")
    assert view.text == 'There are **3** r\'s in the word "strawberry": st**r**awbe**rr**y.'


def test_thoughts_are_billed_as_output() -> None:
    # candidatesTokenCount 28 + thoughtsTokenCount 244 (VENDORS.md §3.3)
    assert cell.view("text").usage["output_tokens"] == 28 + 244


@pytest.mark.parametrize("case", STREAMS)
def test_message_start_carries_the_prompt_tokens_of_the_first_chunk(case: str) -> None:
    # Many Anthropic clients (langchainjs, the Go SDK's Accumulate, Cline) take input and
    # cache tokens from message_start only; Gemini, unlike OpenAI, has told us them by then.
    first = json.loads(sse_events(load("gemini", case).body)[0]["data"])["usageMetadata"]
    events = client_events("anthropic", cell.render(case))["events"]
    assert events[0]["message"]["usage"]["input_tokens"] == first["promptTokenCount"]


def test_midstream_error_is_an_error_event_not_a_truncated_success() -> None:
    cell.check_midstream_error("midstream_error", "overloaded_error")


@pytest.mark.parametrize(
    ("case", "status", "error_type", "exc", "retry_after"),
    [
        ("error_429", 429, "rate_limit_error", anthropic.RateLimitError, 34.4),
        ("error_invalid_argument", 400, "invalid_request_error", anthropic.BadRequestError, None),
    ],
)
def test_vendor_errors(
    case: str, status: int, error_type: str, exc: type[Exception], retry_after: float | None
) -> None:
    cell.check_error(case, status=status, error_type=error_type, exc=exc, retry_after=retry_after)
