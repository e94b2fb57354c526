"""Anthropic Messages client ← Anthropic, through the codec path.

The relay serves this cell by the fast path (bytes passed through); these tests pin the codec
path, which must say the same thing (DESIGN.md §1) — so the SDK must read the rendered answer
exactly as it reads the vendor's own bytes, thinking signatures included.

Recordings: text, text_stream, tool_call, tool_call_stream, thinking_stream, midstream_error,
error_overloaded, error_invalid_request; derived: parallel_tool_call(_stream).
No recording for: a non-stream thinking answer (thinking is covered by thinking_stream).
"""

from __future__ import annotations

import anthropic
import pytest
from cell_harness import Cell, load, sdk_read

cell = Cell("anthropic", "anthropic", missing=frozenset({"reasoning"}))


def _blocks(msg: anthropic.types.Message) -> list[dict[str, object]]:
    keep = {"type", "text", "thinking", "signature", "data", "id", "name", "input"}
    return [{k: v for k, v in b.model_dump().items() if k in keep} for b in msg.content]


def test_recording_gaps_are_as_documented() -> None:
    cell.check_gaps()


@pytest.mark.parametrize("case", cell.cases())
def test_rendered_events_match_golden(case: str) -> None:
    cell.check_golden(case)


@pytest.mark.parametrize("case", cell.success_cases())
def test_sdk_reads_what_anthropic_said(case: str) -> None:
    cell.check_sdk(case)


@pytest.mark.parametrize("case", cell.success_cases())
def test_codec_path_gives_the_vendors_own_message(case: str) -> None:
    rec = load("anthropic", case)
    raw = sdk_read("anthropic", rec.body, stream=rec.stream)
    rendered = cell.render(case)
    ours = sdk_read("anthropic", rendered.body, stream=rendered.stream)
    assert (ours.id, ours.model, ours.stop_reason) == (raw.id, raw.model, raw.stop_reason)
    assert _blocks(ours) == _blocks(raw)  # thinking signature included: it is replayed later


def test_midstream_error_is_an_error_event_not_a_truncated_success() -> None:
    cell.check_midstream_error("midstream_error", "overloaded_error")


@pytest.mark.parametrize(
    ("case", "status", "error_type", "exc"),
    [
        ("error_overloaded", 529, "overloaded_error", anthropic.OverloadedError),
        ("error_invalid_request", 400, "invalid_request_error", anthropic.BadRequestError),
    ],
)
def test_vendor_errors(case: str, status: int, error_type: str, exc: type[Exception]) -> None:
    cell.check_error(case, status=status, error_type=error_type, exc=exc)
