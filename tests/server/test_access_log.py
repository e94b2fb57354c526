"""The access log: one line per finished request, its figures those the request was billed,
key=value in text and fields in JSON; the key named by its id only."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest

from gateway_support import RunningGateway, served
from tokenrelay.ops.log_format import Fields, JsonFormatter
from tokenrelay.ops.log_redaction import RedactSecrets


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    yield from served(tmp_path_factory.mktemp("access"), access_log="on")


def access_lines(caplog: pytest.LogCaptureFixture, request_id: str) -> list[logging.LogRecord]:
    deadline = time.monotonic() + 5  # written when the request's handler returns
    while True:
        found = [
            r
            for r in caplog.records
            if r.name == "tokenrelay.access" and r.msg.get("request_id") == request_id
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def test_one_line_per_request_with_its_billed_figures(
    gw: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    key = gw.create_key("access")
    caplog.set_level(logging.INFO, logger="tokenrelay.access")
    claude = anthropic.Anthropic(api_key=key, base_url=gw.proxy, max_retries=0)
    raw = claude.messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    done = raw.parse()
    [record] = access_lines(caplog, raw.headers["x-request-id"])
    fields = record.msg
    assert isinstance(fields, Fields)
    assert fields["key_id"].startswith("key_") and key not in str(fields)
    assert fields["model"] == "claude-sonnet-4-6" and fields["vendor"] == "anthropic"
    assert fields["http_status"] == 200 and fields["status"] == "ok" and fields["attempts"] == 1
    assert fields["fast_path"] is True and fields["api"] == "anthropic"
    assert fields["input_tokens"] == done.usage.input_tokens
    assert fields["output_tokens"] == done.usage.output_tokens
    assert f"{fields['cost_usd']:.9f}" == f"{float(raw.headers['x-tokenrelay-cost-usd']):.9f}"
    assert fields["ttft_ms"] > 0 and fields["duration_ms"] >= fields["ttft_ms"]
    text = record.getMessage()
    assert text.startswith("request request_id=req_") and " http_status=200 " in text
    assert " fast_path=true " in text and " error=- " in text
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "request" and line["logger"] == "tokenrelay.access"
    assert line["input_tokens"] == done.usage.input_tokens and line["level"] == "info"

    # An error answer is logged too, with its status; a refused key has no key id.
    gpt = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        gpt.chat.completions.create(model="no-such-model", messages=[])
    [record] = access_lines(caplog, caught.value.response.headers["x-request-id"])
    assert record.msg["http_status"] == 404 and record.msg["status"] == "error"
    assert "is not available" in record.msg["error"]


def test_redaction_applies_to_json_lines(tmp_path: Path) -> None:
    """Fields holding a secret, a message, a traceback: the filter blanks them before the
    JSON formatter sees them."""
    secret = "sk-aic-abcdefghijklmnop"
    out = tmp_path / "log"
    handler = logging.FileHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets(["admin-token-123"], "sk-aic-"))
    logger = logging.getLogger("tokenrelay.test_json")
    logger.addHandler(handler)
    try:
        logger.warning(Fields("oops", {"key": secret, "token": "admin-token-123"}))
        logger.warning("key %s", secret)
        try:
            raise ValueError(secret)
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        handler.close()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert (
        len(lines) == 3 and secret not in out.read_text() and "admin-token" not in out.read_text()
    )
    assert lines[0] | {"time": 0} == {
        "time": 0,
        "level": "warning",
        "logger": "tokenrelay.test_json",
        "message": "oops",
        "key": "[redacted]",
        "token": "[redacted]",
    }
    assert lines[1]["message"] == "key [redacted]"
    assert lines[2]["exc"].startswith("Traceback") and "[redacted]" in lines[2]["exc"]


def test_a_short_configured_secret_does_not_blank_ordinary_words() -> None:
    """A one-letter admin token (a demo's, a test's) must not turn every "a" of every log line
    into [redacted]; real secrets are long and still blanked."""
    redactor = RedactSecrets(["a", "admin-token-123"], "sk-aic-")
    line = "sessions are signed with a per-process key; token admin-token-123"
    assert redactor.redact(line) == ("sessions are signed with a per-process key; token [redacted]")
