"""The OpenAI Responses API (`POST /api/proxy/v1/responses`) in front of every vendor, driven
with the openai SDK's `responses.create` / `responses.stream` against the in-process gateway
and its emulator: the five built-in vendors and one added by configuration alone.

OpenAI models take the fast path (OpenAI's own /v1/responses, bytes passed through); the
others are translated. Every streamed event is checked against the SDK's typed models, with a
contiguous `sequence_number`.
"""

from __future__ import annotations

import copy
import typing
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from gateway_support import ADMIN_TOKEN, RunningGateway, served

FIXTURE = Path(__file__).parents[1] / "fixtures" / "codex" / "request_stream.json"
TOOL_TURN = FIXTURE.with_name("request_tool_turn.json")
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
# One model per vendor; the last is the operator's OpenAI-compatible upstream.
MODELS = [
    "gpt-4o",
    "claude-sonnet-4-6",
    "gemini-2.5-flash",
    "grok-4.3",
    "deepseek-chat",
    "acme-chat-1",
]
TRANSLATED = MODELS[1:]
# Models that reason, and whose reasoning comes back to the client as reasoning items.
REASONING = ["o4-mini", "claude-sonnet-4-6", "deepseek-reasoner"]
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
CATALOG = """
[upstreams.acme-llm]
base_url = "https://api.acme-llm.example/v1"
api_key_env = "ACME_LLM_API_KEY"
format = "openai"

[models."acme-chat-1"]
vendor = "acme-llm"
upstream = "acme/chat-1"
input = 0.40
output = 1.60
cache_read = 0.10
context_window = 131072
max_output = 16384
capabilities = { tools = true }
"""

_MEMBERS = typing.get_args(typing.get_args(ResponseStreamEvent)[0])
EVENT_TYPES = {typing.get_args(m.model_fields["type"].annotation)[0]: m for m in _MEMBERS}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("responses")
    catalog = tmp / "catalog.toml"
    catalog.write_text(CATALOG, "utf-8")
    yield from served(tmp, catalog_path=str(catalog), emulate="auto")


def new_key(gw: RunningGateway, credits: str = "100.00") -> tuple[str, str]:
    r = httpx.post(
        f"{gw.url}/admin/v1/keys", headers=ADMIN, json={"name": "resp", "credits_usd": credits}
    )
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["key"]


@pytest.fixture(scope="module")
def key(gw: RunningGateway) -> str:
    return new_key(gw)[1]


@pytest.fixture(scope="module")
def client(gw: RunningGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)


def raw_stream(
    gw: RunningGateway, key: str, body: dict[str, Any], *, contiguous: bool = True
) -> tuple[httpx.Response, list[dict[str, Any]]]:
    """POST a streaming request; every event checked against the SDK's model for its type."""
    r = httpx.post(
        f"{gw.proxy}/v1/responses",
        headers={"authorization": f"Bearer {key}"},
        json={**body, "stream": True},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    events = []
    for block in r.text.split("\n\n"):
        name = data = None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = orjson.loads(line[6:])
        if data is None:
            continue
        assert name == data["type"]
        EVENT_TYPES[data["type"]].model_validate(data)
        events.append(data)
    if contiguous:
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return r, events


def usage_records(gw: RunningGateway, key_id: str) -> dict[str, dict[str, Any]]:
    r = httpx.get(f"{gw.url}/admin/v1/usage", headers=ADMIN, params={"key_id": key_id})
    assert r.status_code == 200, r.text
    data = r.json()
    return {rec["request_id"]: rec for rec in (data["data"] if isinstance(data, dict) else data)}


def as_input(items: list[Any]) -> list[dict[str, Any]]:
    return [i.model_dump(exclude_none=True) for i in items]


# ------------------------------------------------------------------------------------- text


@pytest.mark.parametrize("model", MODELS)
def test_text_stream_equals_non_stream(
    client: openai.OpenAI, gw: RunningGateway, key: str, model: str
) -> None:
    resp = client.responses.create(
        model=model, instructions="Be brief.", input="Explain recursion in 3 sentences."
    )
    Response.model_validate(resp.model_dump())
    assert resp.id.startswith("resp_") and resp.object == "response"
    assert resp.status == "completed" and resp.output_text.strip()
    assert resp.output[-1].type == "message"
    assert resp.usage is not None and resp.usage.output_tokens > 0
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert resp.instructions == "Be brief."

    with client.responses.stream(
        model=model, instructions="Be brief.", input="Explain recursion in 3 sentences."
    ) as stream:
        deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert deltas == resp.output_text == final.output_text
    assert final.usage is not None
    assert final.usage.output_tokens == resp.usage.output_tokens
    assert final.usage.input_tokens == resp.usage.input_tokens

    _, events = raw_stream(
        gw, key, {"model": model, "input": [{"role": "user", "content": "Explain recursion."}]}
    )
    kinds = [e["type"] for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]


def test_max_output_tokens_ends_incomplete(client: openai.OpenAI) -> None:
    for model in ("gpt-4o", "claude-sonnet-4-6"):
        resp = client.responses.create(model=model, input="[[max]] go", max_output_tokens=20)
        assert resp.status == "incomplete", model
        assert resp.incomplete_details is not None
        assert resp.incomplete_details.reason == "max_output_tokens"
        with client.responses.stream(
            model=model, input="[[max]] go", max_output_tokens=20
        ) as stream:
            kinds = [e.type for e in stream]
        assert kinds[-1] == "response.incomplete", model


# ------------------------------------------------------------------------------------ tools


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", MODELS)
def test_three_turn_function_call_loop(client: openai.OpenAI, model: str, stream: bool) -> None:
    def ask(items: list[dict[str, Any]]) -> Response:
        if not stream:
            return client.responses.create(model=model, input=items, tools=[WEATHER])
        with client.responses.stream(model=model, input=items, tools=[WEATHER]) as s:
            args = "".join(e.delta for e in s if e.type == "response.function_call_arguments.delta")
            final = s.get_final_response()
        calls = [o for o in final.output if o.type == "function_call"]
        assert not calls or args == "".join(c.arguments for c in calls)
        return final

    items: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    for turn in range(3):
        resp = ask(items)
        calls = [o for o in resp.output if o.type == "function_call"]
        assert len(calls) == 1, (turn, resp.output)
        call = calls[0]
        assert call.name == "get_weather" and call.call_id
        assert orjson.loads(call.arguments)["city"]
        items += as_input(resp.output)
        items.append(
            {"type": "function_call_output", "call_id": call.call_id, "output": f"sunny {turn}"}
        )
        answer = ask(items)
        assert f"sunny {turn}" in answer.output_text, answer.output
        items += as_input(answer.output)
        items.append({"role": "user", "content": f"And the weather in Berlin, turn {turn + 2}?"})


def test_namespaced_tools_come_back_with_their_namespace(client: openai.OpenAI) -> None:
    tools: Any = [
        {
            "type": "namespace",
            "name": "crm",
            "description": "Customer records",
            "tools": [{**WEATHER, "name": "lookup"}],
        }
    ]
    for model in MODELS:
        resp = client.responses.create(
            model=model, input="Use the crm lookup for Paris", tools=tools
        )
        call = next(o for o in resp.output if o.type == "function_call")
        assert (call.name, call.namespace) == ("lookup", "crm"), model
        follow = client.responses.create(
            model=model,
            input=[
                {"role": "user", "content": "Use the crm lookup for Paris"},
                *as_input(resp.output),
                {"type": "function_call_output", "call_id": call.call_id, "output": "found"},
            ],
            tools=tools,
        )
        assert "found" in follow.output_text, model


def test_structured_output_follows_the_schema(client: openai.OpenAI) -> None:
    fmt: Any = {
        "format": {
            "type": "json_schema",
            "name": "city",
            "schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
            "strict": True,
        }
    }
    for model in MODELS:
        resp = client.responses.create(model=model, input="Name a city", text=fmt)
        assert resp.status == "completed", model
        assert resp.text.format.type == "json_schema"  # type: ignore[union-attr]


# -------------------------------------------------------------------------------- reasoning


@pytest.mark.parametrize("model", REASONING)
def test_reasoning_summary_streams_and_encrypted_reasoning_round_trips(
    client: openai.OpenAI, model: str
) -> None:
    opts: Any = {
        "reasoning": {"effort": "medium", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "tools": [WEATHER],
    }
    with client.responses.stream(model=model, input="Weather in Paris?", **opts) as stream:
        summary = "".join(
            e.delta for e in stream if e.type == "response.reasoning_summary_text.delta"
        )
        first = stream.get_final_response()
    reasoning = [o for o in first.output if o.type == "reasoning"]
    assert len(reasoning) == 1 and summary, first.output
    assert reasoning[0].summary[0].text == summary
    assert reasoning[0].encrypted_content
    assert first.usage is not None and first.usage.output_tokens_details.reasoning_tokens >= 0
    call = next(o for o in first.output if o.type == "function_call")

    # The next turn under a call id the gateway never saw: only the encrypted reasoning the
    # client sends back can give the vendor what it needs (Anthropic's signed thinking,
    # DeepSeek's reasoning_content; OpenAI checks its own).
    items = as_input(first.output)
    for item in items:
        if item.get("call_id") == call.call_id:
            item["call_id"] = "call_renamed_by_client"
    items = [
        {"role": "user", "content": "Weather in Paris?"},
        *items,
        {"type": "function_call_output", "call_id": "call_renamed_by_client", "output": "rain"},
    ]
    follow = client.responses.create(model=model, input=items, **opts)
    assert "rain" in follow.output_text

    # Without it the turn still goes through, converted as for a turn another vendor made
    # (reasoning/cache.py convert_for: Anthropic reads the tool use as text, DeepSeek a note
    # for its reasoning_content) instead of the vendor's refusal.
    if model != "o4-mini":
        stripped = [i for i in items if i.get("type") != "reasoning"]
        assert client.responses.create(model=model, input=stripped, **opts).status == "completed"


def test_conversation_moving_from_claude_to_openai_drops_claudes_reasoning(
    client: openai.OpenAI,
) -> None:
    opts: Any = {
        "reasoning": {"effort": "medium", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "tools": [WEATHER],
    }
    first = client.responses.create(model="claude-sonnet-4-6", input="Weather?", **opts)
    call = next(o for o in first.output if o.type == "function_call")
    assert any(o.type == "reasoning" and o.encrypted_content for o in first.output)
    items = [
        {"role": "user", "content": "Weather?"},
        *as_input(first.output),
        {"type": "function_call_output", "call_id": call.call_id, "output": "hail"},
    ]
    # OpenAI refuses encrypted content it did not issue; the fast path leaves it out.
    follow = client.responses.create(model="o4-mini", input=items, **opts)
    assert "hail" in follow.output_text


def test_reasoning_without_summary_or_include_shows_neither(client: openai.OpenAI) -> None:
    for model in ("o4-mini", "claude-sonnet-4-6"):
        resp = client.responses.create(
            model=model, input="Think first.", reasoning={"effort": "low"}
        )
        reasoning = [o for o in resp.output if o.type == "reasoning"]
        assert reasoning and all(not r.summary and not r.encrypted_content for r in reasoning)


# ----------------------------------------------------------------------------------- errors


def test_client_errors_in_the_responses_error_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        client.responses.create(model="no-such-model", input="hi")
    assert nf.value.body["param"] == "model"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(
            model="claude-sonnet-4-6", input=[{"role": "robot", "content": "x"}]
        )  # type: ignore[list-item]
    err: Any = bad.value.body
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and err["param"] == "input.0.role"
    with pytest.raises(openai.BadRequestError) as prev:
        client.responses.create(model="gpt-4o", input="hi", previous_response_id="resp_123")
    assert prev.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert "store: false" in prev.value.message


@pytest.mark.parametrize("model", TRANSLATED)
def test_builtin_tools_are_refused_where_the_vendor_lacks_them(
    gw: RunningGateway, client: openai.OpenAI, model: str
) -> None:
    before = len(httpx.get(f"{gw.emulator_url}/_requests").json()["data"])
    for tool in ({"type": "file_search", "vector_store_ids": ["vs_1"]}, {"type": "web_search"}):
        with pytest.raises(openai.BadRequestError) as exc:
            client.responses.create(model=model, input="hi", tools=[WEATHER, tool])  # type: ignore[list-item]
        body: Any = exc.value.body
        assert body["type"] == "invalid_request_error" and body["param"] == "tools.1"
        assert tool["type"] in body["message"]
    assert len(httpx.get(f"{gw.emulator_url}/_requests").json()["data"]) == before


def test_builtin_tools_pass_through_on_openai_models(client: openai.OpenAI) -> None:
    resp = client.responses.create(
        model="gpt-4o", input="hi", tools=[{"type": "web_search"}, WEATHER]
    )
    assert resp.status == "completed"
    assert [t.type for t in resp.tools] == ["web_search", "function"]


@pytest.mark.parametrize("model", MODELS)
def test_midstream_vendor_error_ends_the_stream_with_response_failed(
    gw: RunningGateway, model: str
) -> None:
    key_id, key = new_key(gw, "5.00")
    r, events = raw_stream(gw, key, {"model": model, "input": "[[midstream-error]] go"})
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["status"] == "failed"
    assert events[-1]["response"]["error"]["message"]
    assert any(e["type"] == "response.output_text.delta" for e in events)
    # Billed for what was generated before the failure.
    record = usage_records(gw, key_id)[r.headers["x-request-id"]]
    assert record["status"] == "error" and record["output_tokens"] > 0
    assert Decimal(record["cost_usd"]) > 0

    client = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
    with client.responses.stream(model=model, input="[[midstream-error]] go") as stream:
        kinds = [e.type for e in stream]
        assert kinds[-1] == "response.failed"
        with pytest.raises(RuntimeError):
            stream.get_final_response()


@pytest.mark.parametrize("model", MODELS)
def test_vendor_hanging_up_mid_stream_ends_it_with_an_error_event(
    gw: RunningGateway, key: str, model: str
) -> None:
    # On the fast path the gateway's event follows OpenAI's own, whose numbering it does not
    # continue; translated streams are numbered by the gateway throughout.
    fast = model.startswith("gpt")
    _, events = raw_stream(gw, key, {"model": model, "input": "[[cut]] go"}, contiguous=not fast)
    assert any(e["type"] == "response.output_text.delta" for e in events)
    assert events[-1]["type"] == ("error" if fast else "response.failed")


# ---------------------------------------------------------------------------------- billing


@pytest.mark.parametrize("model", MODELS)
def test_stream_and_non_stream_cost_the_same(gw: RunningGateway, model: str) -> None:
    key_id, key = new_key(gw, "10.00")
    headers = {"authorization": f"Bearer {key}"}
    body = {"model": model, "input": "Explain recursion in 3 sentences."}
    r = httpx.post(f"{gw.proxy}/v1/responses", headers=headers, json=body, timeout=30)
    assert r.status_code == 200, r.text
    unary = Decimal(r.headers["x-tokenrelay-cost-usd"])
    streamed, events = raw_stream(gw, key, body)
    stream_cost = Decimal(events[-1]["response"]["usage"]["cost_usd"])
    assert unary == stream_cost > 0
    records = usage_records(gw, key_id)
    for resp in (r, streamed):
        record = records[resp.headers["x-request-id"]]
        assert record["status"] == "ok" and record["usage_source"] == "vendor"
        assert Decimal(record["cost_usd"]) == unary


def test_no_balance_is_402_before_any_vendor_call(gw: RunningGateway) -> None:
    _, key = new_key(gw, "0.000001")
    client = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
    before = httpx.get(f"{gw.emulator_url}/_requests").json()["data"]
    for model in MODELS:
        with pytest.raises(openai.APIStatusError) as exc:
            client.responses.create(model=model, input="hi", max_output_tokens=4000)
        assert exc.value.status_code == 402 and exc.value.code == "insufficient_quota"
    assert httpx.get(f"{gw.emulator_url}/_requests").json()["data"] == before


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet-4-6", "deepseek-chat"])
def test_interrupted_stream_is_billed_for_what_was_delivered(
    gw: RunningGateway, model: str
) -> None:
    key_id, key = new_key(gw, "5.00")
    body = {"model": model, "input": "[[words:60]] [[delay:50]]", "stream": True}
    seen = 0
    with (
        httpx.Client(timeout=30) as http,
        http.stream(
            "POST",
            f"{gw.proxy}/v1/responses",
            headers={"authorization": f"Bearer {key}"},
            json=body,
        ) as resp,
    ):
        request_id = resp.headers["x-request-id"]
        for line in resp.iter_lines():
            if '"response.output_text.delta"' in line and line.startswith("data:"):
                seen += 1
            if seen >= 5:
                break
    record = None
    for _ in range(100):
        record = usage_records(gw, key_id).get(request_id)
        if record is not None:
            break
        httpx.get(f"{gw.url}/healthz")
    assert record is not None
    assert record["status"] == "cancelled"
    assert 5 <= record["output_tokens"] < 60
    assert Decimal(record["cost_usd"]) > 0


# ------------------------------------------------------------------------------------ codex


def codex_request(model: str) -> dict[str, Any]:
    body = copy.deepcopy(orjson.loads(FIXTURE.read_bytes())["body"])
    body["model"] = model
    body["input"][-1]["content"][0]["text"] = "exec_command: say hi [[words:5]]"
    return body


@pytest.mark.parametrize("model", MODELS)
def test_codex_cli_request_is_accepted_on_every_vendor(
    gw: RunningGateway, key: str, model: str
) -> None:
    body = codex_request(model)
    assert body["stream"] is True and body["store"] is False
    assert {t["type"] for t in body["tools"]} >= {"function", "namespace", "web_search"}
    _, events = raw_stream(gw, key, body)
    final = events[-1]
    assert final["type"] == "response.completed", final
    # The emulated model calls the tool the prompt names: Codex's exec_command.
    call = final["response"]["output"][-1]
    assert (call["type"], call["name"]) == ("function_call", "exec_command")
    # What Codex reads back from the echo.
    assert final["response"]["store"] is False
    assert final["response"]["prompt_cache_key"] == body["prompt_cache_key"]


@pytest.mark.parametrize("rename", [False, True])
@pytest.mark.parametrize("model", MODELS)
def test_codex_tool_turn_with_its_reasoning_is_accepted_on_every_vendor(
    gw: RunningGateway, key: str, model: str, rename: bool
) -> None:
    """Codex's second request (reasoning item it got from Claude, function_call, output): on
    Claude its signed thinking is replayed from encrypted_content alone (the call renamed, so
    the gateway's memory cannot help); elsewhere it is carried over or, on OpenAI, left out."""
    body = orjson.loads(TOOL_TURN.read_bytes())["body"]
    kinds = [i.get("type") for i in body["input"]]
    assert kinds[-4:] == ["reasoning", "message", "function_call", "function_call_output"]
    assert body["input"][-4]["encrypted_content"]
    body["model"] = model
    if rename:
        for item in body["input"][-2:]:
            item["call_id"] = "call_renamed_by_client"
    _, events = raw_stream(gw, key, body)
    assert events[-1]["type"] == "response.completed", events[-1]
    assert "Tool exec_command returned" in "".join(
        e["delta"] for e in events if e["type"] == "response.output_text.delta"
    )


@pytest.mark.parametrize("model", TRANSLATED)
def test_codex_live_web_search_is_refused_on_translated_vendors(
    client: openai.OpenAI, model: str
) -> None:
    body = codex_request(model)
    index = next(i for i, t in enumerate(body["tools"]) if t["type"] == "web_search")
    body["tools"][index]["external_web_access"] = True
    with pytest.raises(openai.BadRequestError) as exc:
        client.post("/responses", body=body, cast_to=dict)
    assert exc.value.body["param"] == f"tools.{index}"  # type: ignore[index]
