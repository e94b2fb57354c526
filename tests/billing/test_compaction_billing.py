"""Compaction's billing and errors (issue 24, item 6), with the openai SDK on every vendor, both
ways a client compacts: `responses.compact` (one JSON answer) and a `compaction_trigger` item in
a streaming `/responses` request (what Codex CLI sends).

- A key whose balance cannot cover the hold gets 402 in the Responses error format before any
  vendor is called.
- A vendor error reaches the client in its format: before the answer, the HTTP error; inside a
  compaction stream, `response.failed`. A compaction stream shows nothing until its one item at
  the end (the summary is sealed whole), so one that fails first delivered nothing and, under
  the default policy, costs nothing: what the vendor billed is the operator's loss.
  Likewise a client that leaves such a stream before the item.
- A compaction that succeeds is one usage record: the model asked, its vendor, the vendor's
  token counts, at the published rates.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from billing_support import (
    create_key,
    expected_cost,
    record_of,
    running_gateway,
    usage_records,
    wait_for_record,
)

from gateway_support import RunningGateway

VENDORS = {
    "gpt-4o": "openai",
    "claude-sonnet-4-6": "anthropic",
    "gemini-2.5-flash": "gemini",
    "grok-4.3": "xai",
    "deepseek-chat": "deepseek",
}
TRANSLATED = [m for m, vendor in VENDORS.items() if vendor != "openai"]  # the gateway compacts
SERVED_BY = {"deepseek-chat": "deepseek-v4-flash"}  # an alias: billed as the model it names
TRIGGER = {"type": "compaction_trigger"}


def conversation(last: str = "Now write a haiku about rivers.") -> list[Any]:
    return [
        {"role": "user", "content": "Remember the code word PLUM-7 and say hello."},
        {"role": "assistant", "content": "Hello! I will remember PLUM-7."},
        {"role": "user", "content": last},
    ]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    # The writer waits for more records before each commit: a record must still be there as
    # soon as the client has its answer (the gateway settles before the last byte).
    with running_gateway("sqlite", tmp_path_factory, writer_batch_ms=300) as (gateway, _):
        yield gateway


def _client(gw: RunningGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)


@pytest.fixture
def funded(gw: RunningGateway) -> tuple[str, openai.OpenAI]:
    """A new funded key of its own for each test: (its id, a client with it)."""
    key_id, key = create_key(gw.url)
    return key_id, _client(gw, key)


def _vendor_calls(gw: RunningGateway) -> int:
    seen = httpx.get(gw.emulator_url + "/_requests").json()["data"]
    return sum(1 for r in seen if r["method"] == "POST")


@pytest.mark.parametrize("model", VENDORS)
def test_compacting_without_credit_for_the_hold_is_402(gw: RunningGateway, model: str) -> None:
    key_id, key = create_key(gw.url, credits="0.001")
    client = _client(gw, key)
    before = _vendor_calls(gw)
    calls = {
        "compact": lambda: client.responses.compact(model=model, input=conversation()),
        "trigger": lambda: client.responses.create(
            model=model, input=[*conversation(), TRIGGER], stream=True
        ),
    }
    for name, call in calls.items():
        with pytest.raises(openai.APIStatusError) as err:
            call()
        assert err.value.status_code == 402, (name, err.value)
        body = err.value.body
        assert isinstance(body, dict) and body["type"] == "insufficient_quota", (name, body)
        assert "may cost up to $" in body["message"], (name, body)
    assert _vendor_calls(gw) == before
    assert usage_records(gw.url, key_id) == []


@pytest.mark.parametrize("model", TRANSLATED)
def test_a_vendor_error_while_compacting_is_the_clients_error(
    gw: RunningGateway, funded: tuple[str, openai.OpenAI], model: str
) -> None:
    key_id, client = funded
    raw = client.responses.with_raw_response
    for call in (
        lambda: raw.compact(model=model, input=conversation("[[error:503]] a haiku")),
        lambda: raw.create(
            model=model, input=[*conversation("[[error:503]] a haiku"), TRIGGER], stream=True
        ),
    ):
        with pytest.raises(openai.InternalServerError) as err:
            call()
        assert err.value.status_code == 503
        body = err.value.body
        assert isinstance(body, dict) and body["type"] == "server_error", body
        record = record_of(gw.url, key_id, err.value.response.headers["x-request-id"])
        assert (record["reason"], Decimal(record["cost_usd"])) == ("not_answered", 0), record


@pytest.mark.parametrize("model", TRANSLATED)
def test_a_compaction_stream_that_fails_before_its_item_costs_nothing(
    gw: RunningGateway, funded: tuple[str, openai.OpenAI], model: str
) -> None:
    key_id, client = funded
    failing = [*conversation("[[words:60]] [[midstream-error]] a haiku"), TRIGGER]
    raw = client.responses.with_raw_response.create(model=model, input=failing, stream=True)
    events = list(raw.parse())
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    assert events[-1].response.error is not None and events[-1].response.output == []
    record = record_of(gw.url, key_id, raw.headers["x-request-id"])
    assert record["status"] == "error" and record["reason"] == "vendor_error_before_output"
    assert Decimal(record["cost_usd"]) == 0
    # The vendor generated (and bills) part of a summary nobody received: the operator's loss.
    assert Decimal(record["loss_usd"]) == Decimal(record["upstream_cost_usd"]) > 0


def test_a_client_that_leaves_a_compaction_stream_before_its_item_pays_nothing(
    gw: RunningGateway,
    funded: tuple[str, openai.OpenAI],
) -> None:
    key_id, client = funded
    # The vendor writes a few words of the summary, then stalls: the client gives up.
    stalling = [*conversation("[[words:60]] [[stall:20000]] a haiku"), TRIGGER]
    raw = client.responses.with_raw_response.create(
        model="claude-sonnet-4-6", input=stalling, stream=True
    )
    stream = raw.parse()
    assert [next(stream).type for _ in range(2)] == ["response.created", "response.in_progress"]
    stream.close()
    record = wait_for_record(gw.url, key_id, raw.headers["x-request-id"], timeout=15)
    assert (record["status"], record["reason"]) == ("cancelled", "client_cut_before_output")
    assert Decimal(record["cost_usd"]) == 0, record


@pytest.mark.parametrize("model", VENDORS)
def test_a_compaction_is_billed_at_its_models_price(
    gw: RunningGateway, funded: tuple[str, openai.OpenAI], model: str
) -> None:
    key_id, client = funded
    served = SERVED_BY.get(model, model)
    listed = httpx.get(gw.proxy + "/v1/models").json()["data"]
    pricing = next(m["pricing"] for m in listed if m["id"] == served)
    raw = client.responses.with_raw_response.compact(model=model, input=conversation())
    answered = {raw.headers["x-request-id"]: (raw.parse().usage, raw.headers)}
    streamed = client.responses.with_raw_response.create(
        model=model, input=[*conversation(), TRIGGER], stream=True
    )
    final = [e for e in streamed.parse() if e.type == "response.completed"]
    assert len(final) == 1 and [i.type for i in final[0].response.output] == ["compaction"]
    answered[streamed.headers["x-request-id"]] = (final[0].response.usage, None)
    for request_id, (usage, headers) in answered.items():
        record = record_of(gw.url, key_id, request_id)
        assert (record["model_asked"], record["model"]) == (model, served), record
        assert record["vendor"] == VENDORS[model], record
        assert (record["status"], record["reason"]) == ("ok", "completed"), record
        assert usage is not None and record["usage_source"] == "vendor"
        assert (record["input_tokens"], record["output_tokens"]) == (
            usage.input_tokens,
            usage.output_tokens,
        )
        cost = expected_cost(record, pricing["input_per_mtok"], pricing["output_per_mtok"])
        assert Decimal(record["cost_usd"]) == cost > 0, record
        if headers is not None:
            assert Decimal(headers["x-tokenrelay-cost-usd"]) == cost
