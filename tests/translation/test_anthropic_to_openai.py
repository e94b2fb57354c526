"""Anthropic Messages client ← OpenAI Chat Completions.

Recordings: text, text_stream, tool_call, tool_call_stream, midstream_error,
error_rate_limit, error_unsupported_parameter; derived: parallel_tool_call(_stream).
No recording for: reasoning (non-stream or stream) — o-series models expose no reasoning
text in Chat Completions, only completion_tokens_details.reasoning_tokens.
"""

from __future__ import annotations

import anthropic
import pytest
from cell_harness import Cell, client_events

cell = Cell("anthropic", "openai", missing=frozenset({"reasoning", "reasoning_stream"}))


def test_recording_gaps_are_as_documented() -> None:
    cell.check_gaps()


@pytest.mark.parametrize("case", cell.cases())
def test_rendered_events_match_golden(case: str) -> None:
    cell.check_golden(case)


@pytest.mark.parametrize("case", cell.success_cases())
def test_sdk_reads_what_openai_said(case: str) -> None:
    cell.check_sdk(case)


def test_usage_known_only_at_the_end_reaches_the_client_in_message_delta() -> None:
    # OpenAI reveals usage after the last token: message_start says 0 (VENDORS.md §6.2 #20)
    # and message_delta carries the real prompt count, which the SDK adopts.
    events = client_events("anthropic", cell.render("text_stream"))["events"]
    assert events[0]["message"]["usage"]["input_tokens"] == 0
    assert events[-2]["usage"]["input_tokens"] == 14
    assert cell.view("text_stream").usage["input_tokens"] == 14


def test_parallel_calls_are_separate_tool_use_blocks() -> None:
    events = client_events("anthropic", cell.render("parallel_tool_call_stream"))["events"]
    starts = [e for e in events if e["type"] == "content_block_start"]
    assert [(s["index"], s["content_block"]["type"]) for s in starts] == [
        (0, "tool_use"),
        (1, "tool_use"),
    ]
    assert cell.view("parallel_tool_call_stream").stop == "tool_use"


def test_midstream_error_is_an_error_event_not_a_truncated_success() -> None:
    cell.check_midstream_error("midstream_error", "api_error")


@pytest.mark.parametrize(
    ("case", "status", "error_type", "exc", "retry_after"),
    [
        ("error_rate_limit", 429, "rate_limit_error", anthropic.RateLimitError, 3.0),
        (
            "error_unsupported_parameter",
            400,
            "invalid_request_error",
            anthropic.BadRequestError,
            None,
        ),
    ],
)
def test_vendor_errors(
    case: str, status: int, error_type: str, exc: type[Exception], retry_after: float | None
) -> None:
    cell.check_error(case, status=status, error_type=error_type, exc=exc, retry_after=retry_after)
