"""The declared billing policy (billing/policy.py), end to end on real servers with the official
SDKs, on SQLite + in-process holds and on PostgreSQL + Redis (issue 21, items 3, 4 and 10):

- a stream that carried only the vendor's error event delivered nothing and costs nothing; what
  the vendor billed for it is the operator's loss;
- a non-stream answer whose client left before it could be sent is not billed;
- every record carries its reason code (the admin API's usage listing shows it);
- every ending, error endings included, is recorded before the client has its last byte (the
  writer here waits 300 ms for more records before each commit, so a record committed after
  the end would be missing when the test reads it);
- README.md's billing section shows the module's table.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from billing_support import ADMIN, running_gateway

from backends import BACKENDS
from gateway_support import RunningGateway
from tokenrelay.billing import policy


@pytest.fixture(scope="module", params=BACKENDS)
def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    with running_gateway(request.param, tmp_path_factory, writer_batch_ms=300) as (gateway, _):
        yield gateway


def create_key(gw: RunningGateway) -> tuple[str, str]:
    r = httpx.post(
        f"{gw.url}/admin/v1/keys", headers=ADMIN, json={"name": "policy", "credits_usd": "5.00"}
    )
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["key"]


def records(gw: RunningGateway, key_id: str) -> dict[str, dict[str, Any]]:
    r = httpx.get(f"{gw.url}/admin/v1/usage", headers=ADMIN, params={"key_id": key_id})
    assert r.status_code == 200, r.text
    return {u["request_id"]: u for u in r.json()["data"]}


def balance(gw: RunningGateway, key_id: str) -> Decimal:
    r = httpx.get(f"{gw.url}/admin/v1/keys/{key_id}", headers=ADMIN)
    return Decimal(r.json()["balance_usd"])


@pytest.mark.parametrize("model", ["gpt-4o", "deepseek-chat", "claude-sonnet-4-6"])
def test_a_stream_that_carried_only_an_error_event_costs_nothing(
    gw: RunningGateway, model: str
) -> None:
    key_id, key = create_key(gw)
    client = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
    stream = client.chat.completions.with_raw_response.create(
        model=model,
        stream=True,
        messages=[{"role": "user", "content": "[[words:0]] [[midstream-error]] hello there"}],
    )
    request_id = stream.headers["x-request-id"]
    with pytest.raises(openai.APIError):
        for _ in stream.parse():
            pass
    record = records(gw, key_id)[request_id]  # there as soon as the stream ended
    assert record["reason"] == "vendor_error_before_output"
    assert record["status"] == "error"
    assert Decimal(record["cost_usd"]) == 0
    # The vendor accepted the prompt: what it bills for it is the operator's, not the client's.
    assert Decimal(record["loss_usd"]) == Decimal(record["upstream_cost_usd"]) > 0
    assert balance(gw, key_id) == Decimal("5.00")


def test_a_stream_error_after_output_is_recorded_before_its_end(gw: RunningGateway) -> None:
    """The flake of test_midstream_failure_bills_what_was_generated: the error ending's record
    was committed after the client had the end of the stream."""
    key_id, key = create_key(gw)
    client = anthropic.Anthropic(api_key=key, base_url=gw.proxy, max_retries=0)
    with (
        pytest.raises(anthropic.APIStatusError),
        client.messages.stream(
            model="deepseek-chat",
            max_tokens=200,
            messages=[{"role": "user", "content": "[[midstream-error]] tell me"}],
        ) as stream,
    ):
        request_id = stream.response.headers["x-request-id"]
        for _ in stream:
            pass
    record = records(gw, key_id)[request_id]
    assert record["reason"] == "vendor_error_after_output"
    assert Decimal(record["cost_usd"]) > 0 and Decimal(record["loss_usd"]) == 0
    assert balance(gw, key_id) == Decimal("5.00") - Decimal(record["cost_usd"])


def only_record(gw: RunningGateway, key_id: str) -> dict[str, Any]:
    """The key's one usage record, once it is there (settled when the vendor answers, after
    the client left)."""
    deadline = time.monotonic() + 15
    found: list[dict[str, Any]] = []
    while not found and time.monotonic() < deadline:
        found = list(records(gw, key_id).values())
        time.sleep(0.1)
    assert len(found) == 1, found
    return found[0]


def test_a_non_stream_answer_whose_client_left_is_not_billed(gw: RunningGateway) -> None:
    key_id, key = create_key(gw)
    client = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0, timeout=1.0)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "[[first-delay:2500]] a slow answer"}],
        )
    record = only_record(gw, key_id)
    assert record["reason"] == "client_cut_before_body"
    assert record["status"] == "cancelled"
    assert record["output_tokens"] > 0  # the vendor's answer, as it billed it
    assert Decimal(record["cost_usd"]) == 0
    assert Decimal(record["loss_usd"]) == Decimal(record["upstream_cost_usd"]) > 0
    assert balance(gw, key_id) == Decimal("5.00")


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet-4-6"])
def test_a_stream_whose_client_left_before_its_first_byte_is_not_billed(
    gw: RunningGateway, model: str
) -> None:
    key_id, key = create_key(gw)
    client = anthropic.Anthropic(api_key=key, base_url=gw.proxy, max_retries=0, timeout=0.6)
    with (
        pytest.raises(anthropic.APITimeoutError),
        client.messages.stream(
            model=model,
            max_tokens=100,
            messages=[{"role": "user", "content": "[[first-delay:1500]] [[words:10]] slow"}],
        ) as stream,
    ):
        for _ in stream:
            pass
    record = only_record(gw, key_id)
    assert record["reason"] == "client_cut_before_output"
    assert record["output_tokens"] == 0
    assert Decimal(record["cost_usd"]) == 0
    assert balance(gw, key_id) == Decimal("5.00")


def test_completed_and_length_answers_carry_their_reason(gw: RunningGateway) -> None:
    key_id, key = create_key(gw)
    client = anthropic.Anthropic(api_key=key, base_url=gw.proxy, max_retries=0)
    done = client.messages.with_raw_response.create(
        model="gpt-4o", max_tokens=200, messages=[{"role": "user", "content": "hi"}]
    )
    cut = client.messages.with_raw_response.create(
        model="gpt-4o", max_tokens=3, messages=[{"role": "user", "content": "[[words:50]] go"}]
    )
    assert cut.parse().stop_reason == "max_tokens"
    by_id = records(gw, key_id)
    assert by_id[done.headers["x-request-id"]]["reason"] == "completed"
    assert by_id[cut.headers["x-request-id"]]["reason"] == "incomplete_length"
    for r in by_id.values():
        assert Decimal(r["cost_usd"]) == Decimal(r["upstream_cost_usd"]) > 0
        assert Decimal(r["loss_usd"]) == 0


def test_readme_shows_the_policy_table_of_the_module() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert policy.render_markdown() in readme
    assert {r.outcome for r in policy.TABLE} == set(policy.Outcome)
