"""OpenAI Chat Completions client ← Anthropic Messages.

Recordings: text, text_stream, tool_call, tool_call_stream, thinking_stream, midstream_error,
error_overloaded, error_invalid_request; derived: parallel_tool_call(_stream).
No recording for: a non-stream thinking answer (thinking is covered by thinking_stream).
"""

from __future__ import annotations

import openai
import pytest
from cell_harness import Cell, client_events

cell = Cell(
    "openai",
    "anthropic",
    missing=frozenset({"reasoning"}),
)


def test_recording_gaps_are_as_documented() -> None:
    cell.check_gaps()


@pytest.mark.parametrize("case", cell.cases())
def test_rendered_events_match_golden(case: str) -> None:
    cell.check_golden(case)


@pytest.mark.parametrize("case", cell.success_cases())
def test_sdk_reads_what_anthropic_said(case: str) -> None:
    cell.check_sdk(case)


def test_thinking_is_reasoning_content_and_its_signature_stays_out() -> None:
    view = cell.view("thinking_stream")
    assert view.reasoning.startswith("The previous result was 925.")
    assert view.text == "925 ÷ 5 = 185"
    assert b"EvQBCkYICxgCKkAx" not in cell.render("thinking_stream").body


def test_reasoning_tokens_are_not_reported_as_zero_when_claude_thought() -> None:
    # Anthropic reports no thinking-token count here (no output_tokens_details); the 53
    # output tokens include the thinking. Unknown must not be rendered as 0.
    usage = cell.view("thinking_stream").usage
    assert usage.get("reasoning_tokens") != 0


@pytest.mark.parametrize("case", ["tool_call_stream", "parallel_tool_call_stream"])
def test_tool_call_indexes_count_calls_not_anthropic_blocks(case: str) -> None:
    # Anthropic: text block 0, tool_use block 1 (and 2) → tool_calls index 0 (and 1).
    events = client_events("openai", cell.render(case))["events"]
    announced = [
        frag["index"]
        for ev in events
        if ev != "[DONE]" and ev["choices"]
        for frag in ev["choices"][0]["delta"].get("tool_calls") or ()
        if "id" in frag
    ]
    assert announced == list(range(len(cell.view(case).tool_calls)))


def test_text_and_tool_calls_share_one_message() -> None:
    view = cell.view("tool_call")
    assert view.text.endswith("Okay, I will update the current issue list:")
    assert view.tool_calls == [("toolu_01LRmxn9vGM1d2DZSDBowdZ1", "updateIssueList", {})]
    assert view.stop == "tool_calls"


def test_midstream_error_is_an_error_chunk_without_done() -> None:
    cell.check_midstream_error("midstream_error", "server_error")


@pytest.mark.parametrize(
    ("case", "status", "error_type", "exc"),
    [
        # Anthropic 529 overloaded → 503 server_error (VENDORS.md §6.3 #28)
        ("error_overloaded", 503, "server_error", openai.InternalServerError),
        ("error_invalid_request", 400, "invalid_request_error", openai.BadRequestError),
    ],
)
def test_vendor_errors(case: str, status: int, error_type: str, exc: type[Exception]) -> None:
    cell.check_error(case, status=status, error_type=error_type, exc=exc)
