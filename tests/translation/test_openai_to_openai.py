"""OpenAI Chat Completions client ← OpenAI, through the codec path.

The relay serves this cell by the fast path (bytes passed through); these tests pin the codec
path, which must say the same thing (DESIGN.md §1) — so the SDK must read the rendered answer
as it reads OpenAI's own bytes.

Recordings: text, text_stream, tool_call, tool_call_stream, midstream_error,
error_rate_limit, error_unsupported_parameter; derived: parallel_tool_call(_stream).
No recording for: reasoning (non-stream or stream) — Chat Completions exposes no reasoning
text, only completion_tokens_details.reasoning_tokens.
"""

from __future__ import annotations

import openai
import pytest
from cell_harness import Cell, load, openai_view, sdk_read

TOOL_STREAMS = ["tool_call_stream", "parallel_tool_call_stream"]
cell = Cell(
    "openai",
    "openai",
    missing=frozenset({"reasoning", "reasoning_stream"}),
)


def _both(case: str) -> tuple[object, object]:
    rec, rendered = load("openai", case), cell.render(case)
    raw = sdk_read("openai", rec.body, stream=rec.stream)
    return raw, sdk_read("openai", rendered.body, stream=rendered.stream)


def test_recording_gaps_are_as_documented() -> None:
    cell.check_gaps()


@pytest.mark.parametrize("case", cell.cases())
def test_rendered_events_match_golden(case: str) -> None:
    cell.check_golden(case)


@pytest.mark.parametrize("case", cell.success_cases())
def test_sdk_reads_what_openai_said(case: str) -> None:
    cell.check_sdk(case)


@pytest.mark.parametrize("case", cell.success_cases())
def test_codec_path_gives_the_vendors_own_completion(case: str) -> None:
    raw, ours = _both(case)
    assert openai_view(ours) == openai_view(raw)
    assert (ours.id, ours.model) == (raw.id, raw.model)  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", TOOL_STREAMS)
def test_tool_call_only_stream_has_null_content(case: str) -> None:
    raw, _ = _both(case)
    assert raw.choices[0].message.content is None  # type: ignore[attr-defined]  # OpenAI's own
    cell.check_null_content_without_text(case)


def test_midstream_error_is_an_error_chunk_without_done() -> None:
    cell.check_midstream_error("midstream_error", "server_error")


def test_rate_limit_keeps_status_code_and_retry_after() -> None:
    # The IR keeps the rate-limit dimension: OpenAI said type "tokens" (TPM), so does the client
    # (VENDORS.md §2.5: "tokens" and "requests" are OpenAI's 429 types).
    cell.check_error(
        "error_rate_limit",
        status=429,
        error_type="tokens",
        exc=openai.RateLimitError,
        retry_after=3.0,
        code="rate_limit_exceeded",
    )


def test_bad_request_keeps_param_and_code() -> None:
    cell.check_error(
        "error_unsupported_parameter",
        status=400,
        error_type="invalid_request_error",
        exc=openai.BadRequestError,
        code="unsupported_parameter",
        param="max_tokens",
    )
