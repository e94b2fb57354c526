"""A vendor added by configuration alone: an `[upstreams.<name>]` table and a model in the
operator's catalog file make a new OpenAI-compatible upstream servable through both APIs,
listed, priced and billed, with no code change. Driven with the official SDKs.

Without its key the upstream is served by the emulator's generic compatible server
(`/compat/<name>/v1`); with a key the gateway calls the configured base URL with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from gateway_support import ADMIN_TOKEN, RunningGateway, free_port, start_gateway
from tokenrelay.vendors import BUILTIN

KEY_ENV = "ACME_LLM_API_KEY"
BASE_URL_ENV = "TOKENRELAY_ACME_LLM_BASE_URL"
PRICES = {"input": Decimal("0.40"), "output": Decimal("1.60"), "cache_read": Decimal("0.10")}


def catalog_toml(base_url: str = "https://api.acme-llm.example/v1") -> str:
    """The whole of what adding the vendor takes."""
    return f"""
[upstreams.acme-llm]
base_url = "{base_url}"
api_key_env = "{KEY_ENV}"
format = "openai"

[models."acme-chat-1"]
vendor = "acme-llm"
upstream = "acme/chat-1"
display_name = "Acme Chat 1"
input = 0.40
output = 1.60
cache_read = 0.10
context_window = 131072
max_output = 16384
aliases = ["acme-chat"]
capabilities = {{ tools = true }}
"""


WEATHER_OPENAI: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
WEATHER_ANTHROPIC: Any = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": WEATHER_OPENAI["function"]["parameters"],
}
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def _write_catalog(tmp: Path, text: str) -> str:
    path = tmp / "catalog.toml"
    path.write_text(text, "utf-8")
    return str(path)


def _stop(gw: RunningGateway, thread: Any) -> None:
    gw.server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("config-vendor")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(KEY_ENV, raising=False)  # no key: the emulator serves acme-llm
        gateway, thread = start_gateway(
            tmp, catalog_path=_write_catalog(tmp, catalog_toml()), emulate="auto"
        )
        yield gateway
        _stop(gateway, thread)


@pytest.fixture(scope="module")
def account(gw: RunningGateway) -> tuple[str, str]:
    """(key id, key) of a funded key: the id finds its usage records."""
    r = httpx.post(
        gw.url + "/admin/v1/keys", headers=ADMIN, json={"name": "acme", "credits_usd": "100.00"}
    )
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["key"]


@pytest.fixture(scope="module")
def gpt(gw: RunningGateway, account: tuple[str, str]) -> openai.OpenAI:
    return openai.OpenAI(api_key=account[1], base_url=gw.proxy + "/v1", max_retries=0)


@pytest.fixture(scope="module")
def claude(gw: RunningGateway, account: tuple[str, str]) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=account[1], base_url=gw.proxy, max_retries=0)


def expected_cost(input_tokens: int, output_tokens: int, cache_read: int = 0) -> Decimal:
    usd = (
        input_tokens * PRICES["input"]
        + output_tokens * PRICES["output"]
        + cache_read * PRICES["cache_read"]
    ) / Decimal(1_000_000)
    return usd.quantize(Decimal("0.000000001"), rounding=ROUND_HALF_UP)


def record(gw: RunningGateway, key_id: str, request_id: str) -> dict[str, Any]:
    r = httpx.get(
        gw.url + "/admin/v1/usage", headers=ADMIN, params={"key_id": key_id, "limit": 1000}
    )
    assert r.status_code == 200, r.text
    rows = {row["request_id"]: row for row in r.json()["data"]}
    assert request_id in rows, (request_id, sorted(rows))
    return rows[request_id]


def assert_billed_at_toml_prices(
    gw: RunningGateway, key_id: str, headers: Any, cost: str | None = None, *, fast_path: bool
) -> dict[str, Any]:
    """The usage record of the response with these headers costs tokens × the TOML prices,
    as does `cost` (default: the x-tokenrelay-cost-usd header)."""
    row = record(gw, key_id, headers["x-request-id"])
    cost = headers["x-tokenrelay-cost-usd"] if cost is None else cost
    assert row["vendor"] == "acme-llm" and row["model"] == "acme-chat-1"
    assert row["status"] == "ok" and row["usage_source"] == "vendor"
    assert row["fast_path"] is fast_path
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0
    price = expected_cost(row["input_tokens"], row["output_tokens"], row["cache_read_tokens"])
    assert Decimal(row["cost_usd"]) == Decimal(cost) == price
    return row


# ------------------------------------------------------------------ listing and token counts


def test_models_list_shows_the_configured_vendor_and_prices(gpt: openai.OpenAI) -> None:
    listed = {m.id: m for m in gpt.models.list()}
    assert "acme-chat-1" in listed and "gpt-4o" in listed  # joins the built-in catalog
    extra = listed["acme-chat-1"].model_extra or {}
    assert listed["acme-chat-1"].owned_by == "acme-llm"
    assert extra["vendor"] == "acme-llm" and extra["emulated"] is True
    assert extra["aliases"] == ["acme-chat"] and extra["display_name"] == "Acme Chat 1"
    assert extra["pricing"]["input_per_mtok"] == "0.40"
    assert extra["pricing"]["output_per_mtok"] == "1.60"
    assert extra["pricing"]["cache_read_per_mtok"] == "0.10"
    assert extra["context_window"] == 131072 and extra["max_output"] == 16384
    assert extra["capabilities"]["tools"] is True


def test_count_tokens_is_estimated(claude: anthropic.Anthropic) -> None:
    short = claude.messages.with_raw_response.count_tokens(
        model="acme-chat", messages=[{"role": "user", "content": "Hello"}]
    )
    longer = claude.messages.count_tokens(
        model="acme-chat-1",
        system="You are a careful assistant. " * 20,
        messages=[{"role": "user", "content": "Explain recursion in three sentences."}],
        tools=[WEATHER_ANTHROPIC],
    )
    assert short.headers["x-tokenrelay-count"] == "estimated"
    assert 0 < short.parse().input_tokens < longer.input_tokens


# ------------------------------------------------------------------ OpenAI SDK: the fast path


def test_openai_sdk_create_and_stream_billed_at_toml_prices(
    gw: RunningGateway, gpt: openai.OpenAI, account: tuple[str, str]
) -> None:
    create = gpt.chat.completions.with_raw_response.create
    messages: Any = [{"role": "user", "content": "Say something nice. [[words:12]]"}]
    raw = create(model="acme-chat", messages=messages, max_tokens=200)
    done = raw.parse()
    assert done.model == "acme/chat-1"  # the upstream name the TOML gave
    assert done.choices[0].finish_reason == "stop"
    assert len((done.choices[0].message.content or "").split()) == 12
    assert done.usage is not None and done.usage.completion_tokens == 12
    row = assert_billed_at_toml_prices(gw, account[0], raw.headers, fast_path=True)
    assert row["input_tokens"] == done.usage.prompt_tokens
    assert row["model_asked"] == "acme-chat"

    options: Any = {"include_usage": True}
    raw_stream = create(model="acme-chat-1", messages=messages, stream=True, stream_options=options)
    chunks = list(raw_stream.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == done.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage  # the usage chunk closes the stream, with the cost
    assert usage is not None and not chunks[-1].choices
    assert usage.prompt_tokens == done.usage.prompt_tokens
    assert usage.completion_tokens == done.usage.completion_tokens
    cost = (usage.model_extra or {})["cost_usd"]
    streamed = assert_billed_at_toml_prices(
        gw, account[0], raw_stream.headers, cost, fast_path=True
    )
    assert streamed["stream"] is True and streamed["cost_usd"] == row["cost_usd"]


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_openai_sdk_tool_round_trip(gpt: openai.OpenAI, stream: bool) -> None:
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    if stream:
        chunks = list(
            gpt.chat.completions.create(
                model="acme-chat-1", messages=messages, tools=[WEATHER_OPENAI], stream=True
            )
        )
        calls: dict[int, dict[str, str]] = {}
        for chunk in chunks:
            for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.id or ""
                if delta.function is not None:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        (call,) = calls.values()
        call_id, name, arguments = call["id"], call["name"], call["arguments"]
    else:
        done = gpt.chat.completions.create(
            model="acme-chat-1", messages=messages, tools=[WEATHER_OPENAI]
        )
        finish = done.choices[0].finish_reason
        (tool_call,) = done.choices[0].message.tool_calls or []
        assert tool_call.type == "function"
        call_id = tool_call.id
        name, arguments = tool_call.function.name, tool_call.function.arguments
    assert finish == "tool_calls" and name == "get_weather"
    assert arguments == '{"city":"Paris"}' and call_id
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "18°C and sunny"},
    ]
    answer = gpt.chat.completions.create(
        model="acme-chat-1", messages=messages, tools=[WEATHER_OPENAI]
    )
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content
    assert not answer.choices[0].message.tool_calls


def test_openai_sdk_sees_upstream_errors_in_its_own_shape(gpt: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        gpt.chat.completions.create(
            model="acme-chat-1", messages=[{"role": "user", "content": "hi [[error:429]]"}]
        )
    assert info.value.status_code == 429


# ------------------------------------------------------------------ Anthropic SDK: translated


def test_anthropic_sdk_create_and_stream_billed_at_toml_prices(
    gw: RunningGateway, claude: anthropic.Anthropic, account: tuple[str, str]
) -> None:
    kwargs: Any = {
        "model": "acme-chat-1",
        "max_tokens": 300,
        "messages": [{"role": "user", "content": "Describe the sea. [[words:15]]"}],
    }
    raw = claude.messages.with_raw_response.create(**kwargs)
    created = raw.parse()
    # The vendor's own model name comes back, as for every vendor (test_matrix).
    assert created.model == "acme/chat-1" and created.stop_reason == "end_turn"
    assert [b.type for b in created.content] == ["text"]
    assert created.usage.output_tokens == 15
    row = assert_billed_at_toml_prices(gw, account[0], raw.headers, fast_path=False)
    assert row["input_tokens"] == created.usage.input_tokens

    with claude.messages.stream(**kwargs) as stream:
        streamed = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]
    assert [b.text for b in streamed.content if b.type == "text"] == [
        b.text for b in created.content if b.type == "text"
    ]
    assert streamed.usage.output_tokens == created.usage.output_tokens
    streamed_row = record(gw, account[0], request_id)
    assert streamed_row["stream"] is True
    assert streamed_row["cost_usd"] == row["cost_usd"]


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_anthropic_sdk_tool_round_trip(claude: anthropic.Anthropic, stream: bool) -> None:
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    kwargs: Any = {"model": "acme-chat", "max_tokens": 500, "tools": [WEATHER_ANTHROPIC]}
    if stream:
        with claude.messages.stream(messages=messages, **kwargs) as s:
            first = s.get_final_message()
    else:
        first = claude.messages.create(messages=messages, **kwargs)
    assert first.stop_reason == "tool_use"
    (use,) = [b for b in first.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    messages += [
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18°C"}],
        },
    ]
    answer = claude.messages.create(messages=messages, **kwargs)
    assert answer.stop_reason == "end_turn"
    assert [b.type for b in answer.content] == ["text"]


# ------------------------------------------------------------------ a real key: the real URL


@pytest.mark.parametrize("where", ["env", "toml"])
def test_a_key_sends_calls_to_the_configured_base_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """With its key set, acme-llm is no longer emulated: the gateway calls the configured base
    URL (here the emulator's compatible server, on a port fixed in advance) with the operator's
    key as a Bearer token. The URL comes from TOKENRELAY_ACME_LLM_BASE_URL or the TOML."""
    port = free_port()
    compat = f"http://127.0.0.1:{port}/compat/acme-llm/v1"
    for spec in BUILTIN:  # keep the built-in vendors emulated, so the emulator starts
        monkeypatch.delenv(spec.key_env, raising=False)
    monkeypatch.setenv(KEY_ENV, "acme-operator-key-1234")
    if where == "env":
        monkeypatch.setenv(BASE_URL_ENV, compat)
        toml = catalog_toml()
    else:
        monkeypatch.delenv(BASE_URL_ENV, raising=False)
        toml = catalog_toml(compat)
    gateway, thread = start_gateway(
        tmp_path,
        catalog_path=_write_catalog(tmp_path, toml),
        emulate="auto",
        emulator_port=port,
    )
    try:
        assert gateway.emulator_url == f"http://127.0.0.1:{port}"
        client = openai.OpenAI(
            api_key=gateway.create_key(), base_url=gateway.proxy + "/v1", max_retries=0
        )
        listed = {m.id: m.model_extra or {} for m in client.models.list()}
        assert listed["acme-chat-1"]["emulated"] is False
        assert listed["gpt-4o"]["emulated"] is True

        done = client.chat.completions.create(
            model="acme-chat", messages=[{"role": "user", "content": "Hello [[words:5]]"}]
        )
        assert len((done.choices[0].message.content or "").split()) == 5

        seen = httpx.get(gateway.emulator_url + "/_requests").json()["data"]
        calls = [r for r in seen if r["path"] == "/compat/acme-llm/v1/chat/completions"]
        fingerprint = hashlib.sha256(b"acme-operator-key-1234").hexdigest()[:16]
        assert calls and calls[-1]["bearer_sha256"] == fingerprint
    finally:
        _stop(gateway, thread)
