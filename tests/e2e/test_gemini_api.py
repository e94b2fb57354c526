"""Gemini's generateContent API in front of every vendor, driven by the google-genai SDK.

Gemini models take the fast path (the client's body goes to Gemini as it came); every other
vendor, and an OpenAI-compatible one defined in config, is translated. Text, tool loops,
thinking, countTokens, errors and billing must hold on each, stream and non-stream alike.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors, types

from gateway_support import ADMIN_TOKEN, RunningGateway, served

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
FIXTURES = Path(__file__).parent.parent / "fixtures" / "gemini_cli"
ACME = """
[upstreams.acme-llm]
base_url = "https://api.acme-llm.example/v1"
api_key_env = "ACME_LLM_API_KEY"
format = "openai"

[models."acme-chat-1"]
vendor = "acme-llm"
upstream = "acme/chat-1"
input = 0.40
output = 1.60
context_window = 131072
max_output = 16384
capabilities = { tools = true }
"""
# One model per vendor: Gemini (fast path), the four others and a config-defined vendor.
MODELS = ["gemini-2.5-flash", "claude-sonnet-4-6", "gpt-4o", "deepseek-chat", "grok-4.3"]
MODELS += ["acme-chat-1"]
PROMPT = "Explain recursion in 3 sentences."
WEATHER = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="get_weather",
            description="Weather for a city",
            parameters_json_schema={
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        )
    ]
)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("gemini-api")
    catalog = tmp / "catalog.toml"
    catalog.write_text(ACME, "utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("ACME_LLM_API_KEY", raising=False)
        yield from served(tmp, catalog_path=str(catalog), emulate="auto", access_log="on")


def new_key(gw: RunningGateway, credits: str = "100.00") -> tuple[str, str]:
    r = httpx.post(
        gw.url + "/admin/v1/keys", headers=ADMIN, json={"name": "gemini", "credits_usd": credits}
    )
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["key"]


@pytest.fixture(scope="module")
def account(gw: RunningGateway) -> tuple[str, str]:
    return new_key(gw)


@pytest.fixture(scope="module")
def client(gw: RunningGateway, account: tuple[str, str]) -> genai.Client:
    return sdk(gw, account[1])


def sdk(gw: RunningGateway, key: str) -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=gw.proxy))


def usage_records(gw: RunningGateway, key_id: str) -> dict[str, dict[str, Any]]:
    r = httpx.get(
        gw.url + "/admin/v1/usage", headers=ADMIN, params={"key_id": key_id, "limit": 1000}
    )
    assert r.status_code == 200, r.text
    return {row["request_id"]: row for row in r.json()["data"]}


def sse_chunks(text: str) -> list[dict[str, Any]]:
    return [
        json.loads(line[5:])
        for block in text.replace("\r\n", "\n").split("\n\n")
        for line in block.splitlines()
        if line.startswith("data:")
    ]


def streamed(chunks: list[types.GenerateContentResponse]) -> types.Content:
    """The model turn a stream adds to the history: every part of every chunk, in order (what
    Gemini CLI does)."""
    parts = [p for c in chunks if c.candidates for p in (c.candidates[0].content.parts or [])]
    return types.Content(role="model", parts=parts)


def call_of(content: types.Content) -> types.FunctionCall:
    calls = [p.function_call for p in content.parts or [] if p.function_call]
    assert len(calls) == 1, content
    return calls[0]


# ---------------------------------------------------------------------------------- text


@pytest.mark.parametrize("model", MODELS)
def test_text_stream_equals_non_stream(client: genai.Client, model: str) -> None:
    resp = client.models.generate_content(model=model, contents=PROMPT)
    assert resp.text and resp.text.strip()
    cand = resp.candidates[0]
    assert cand.finish_reason == types.FinishReason.STOP
    u = resp.usage_metadata
    assert u.prompt_token_count > 0 and u.candidates_token_count > 0
    assert u.total_token_count == u.prompt_token_count + u.candidates_token_count + (
        u.thoughts_token_count or 0
    )
    assert resp.model_version and resp.response_id

    chunks = list(client.models.generate_content_stream(model=f"models/{model}", contents=PROMPT))
    assert "".join(c.text or "" for c in chunks) == resp.text
    last = chunks[-1]
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata.prompt_token_count == u.prompt_token_count
    assert last.usage_metadata.candidates_token_count == u.candidates_token_count
    assert last.usage_metadata.total_token_count == u.total_token_count
    assert len({c.response_id for c in chunks}) == 1


def test_generation_config_reaches_the_vendor(client: genai.Client) -> None:
    """maxOutputTokens caps the answer (MAX_TOKENS), stopSequences and a JSON response format
    are accepted on every vendor."""
    for model in MODELS:
        resp = client.models.generate_content(
            model=model,
            contents="[[words:200]] go",
            config=types.GenerateContentConfig(
                max_output_tokens=5,
                temperature=0.2,
                top_p=0.9,
                stop_sequences=["zzz-never"],
                system_instruction="Be brief.",
            ),
        )
        assert resp.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS, model
        assert resp.usage_metadata.candidates_token_count <= 5, model
        resp = client.models.generate_content(
            model=model,
            contents="Reply in JSON",
            config=types.GenerateContentConfig(
                response_mime_type="application/json",
                response_schema=types.Schema(
                    type=types.Type.OBJECT, properties={"a": types.Schema(type=types.Type.STRING)}
                ),
            ),
        )
        assert resp.text, model


# ---------------------------------------------------------------------------------- tools


def _tool_turns(client: genai.Client, model: str, stream: bool, thinking: bool = False) -> None:
    """Three model turns that call get_weather, each answered with a functionResponse, the
    history sent back as the SDK holds it (ids, signatures, thought parts)."""
    config = types.GenerateContentConfig(tools=[WEATHER])
    if thinking:
        config.thinking_config = types.ThinkingConfig(thinking_budget=2048, include_thoughts=True)
    history: list[types.Content] = []
    for turn, city in enumerate(("Paris", "Oslo", "Lima")):
        history.append(types.Content(role="user", parts=[types.Part(text=f"Weather in {city}?")]))

        def ask() -> types.Content:
            if stream:
                return streamed(
                    list(
                        client.models.generate_content_stream(
                            model=model, contents=history, config=config
                        )
                    )
                )
            resp = client.models.generate_content(model=model, contents=history, config=config)
            return resp.candidates[0].content

        content = ask()
        call = call_of(content)
        assert call.name == "get_weather" and isinstance(call.args, dict), (model, turn)
        assert "city" in call.args
        if thinking:
            assert any(p.thought for p in content.parts or []), (model, turn)
        history.append(content)
        result = f"sunny-{turn}-{city.lower()}"
        history.append(
            types.Content(
                role="user",
                parts=[
                    types.Part(
                        function_response=types.FunctionResponse(
                            id=call.id, name=call.name, response={"output": result}
                        )
                    )
                ],
            )
        )
        answer = ask()
        text = "".join(p.text or "" for p in answer.parts or [] if not p.thought)
        assert result in text, (model, turn, text)
        history.append(answer)


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize("model", [*MODELS, "gemini-3-pro-preview"])
def test_three_turn_function_call_loop(client: genai.Client, model: str, stream: bool) -> None:
    _tool_turns(client, model, stream)


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize(
    "model", ["claude-sonnet-4-6", "gemini-2.5-flash", "gemini-3-pro-preview", "deepseek-reasoner"]
)
def test_thinking_tool_loop_round_trips_signatures(
    client: genai.Client, model: str, stream: bool
) -> None:
    """Anthropic checks its thinking signatures, Gemini 3 its functionCall signatures, DeepSeek
    wants its reasoning back on tool turns: the loop only continues if they come back."""
    _tool_turns(client, model, stream, thinking=True)


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "claude-sonnet-4-6", "deepseek-reasoner"])
def test_thought_parts_and_thoughts_token_count(client: genai.Client, model: str) -> None:
    config = types.GenerateContentConfig(
        thinking_config=types.ThinkingConfig(thinking_budget=2048, include_thoughts=True)
    )
    resp = client.models.generate_content(model=model, contents=PROMPT, config=config)
    thoughts = [p for p in resp.candidates[0].content.parts if p.thought]
    assert thoughts and thoughts[0].text
    assert resp.text and "".join(p.text for p in thoughts) not in resp.text
    u = resp.usage_metadata
    if model != "claude-sonnet-4-6":  # Anthropic does not count thinking apart
        assert u.thoughts_token_count and u.thoughts_token_count > 0
    chunks = list(
        client.models.generate_content_stream(model=model, contents=PROMPT, config=config)
    )
    streamed_thoughts = "".join(
        p.text or "" for c in chunks for p in c.candidates[0].content.parts or [] if p.thought
    )
    assert streamed_thoughts == "".join(p.text for p in thoughts)
    assert chunks[-1].usage_metadata.total_token_count == u.total_token_count


# ----------------------------------------------------------------------------- countTokens


@pytest.mark.parametrize("model", MODELS)
def test_count_tokens(client: genai.Client, model: str) -> None:
    small = client.models.count_tokens(model=model, contents="hello there")
    big = client.models.count_tokens(model=model, contents="hello there " * 50)
    assert 0 < small.total_tokens < big.total_tokens


# ---------------------------------------------------------------------------------- models


def test_model_list_and_get_in_gemini_shape(client: genai.Client, gw: RunningGateway) -> None:
    names = [m.name for m in client.models.list()]
    assert "models/gemini-2.5-flash" in names and "models/claude-sonnet-4-6" in names
    model = client.models.get(model="claude-sonnet-4-6")
    assert model.name == "models/claude-sonnet-4-6" and model.input_token_limit
    r = httpx.get(gw.proxy + "/v1beta/models")  # Gemini CLI's API version
    assert "models/acme-chat-1" in [m["name"] for m in r.json()["models"]]
    r = httpx.get(gw.proxy + "/v1beta/models/no-such-model")
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"


# ---------------------------------------------------------------------------------- errors


def test_bad_body_is_invalid_argument_in_gemini_shape(gw: RunningGateway, account: Any) -> None:
    url = gw.proxy + "/v1beta/models/claude-sonnet-4-6:generateContent"
    for body in ({"contents": "nope"}, {}, {"contents": [{"role": "x", "parts": []}]}):
        r = httpx.post(url, json=body, headers={"x-goog-api-key": account[1]})
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["status"] == "INVALID_ARGUMENT" and err["code"] == 400 and err["message"]
    r = httpx.post(url, content=b"{not json", headers={"x-goog-api-key": account[1]})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    r = httpx.post(url + "?alt=proto", json=body, headers={"x-goog-api-key": account[1]})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "claude-sonnet-4-6"])
def test_stream_without_alt_sse_is_one_json_array(
    gw: RunningGateway, account: Any, model: str
) -> None:
    url = f"{gw.proxy}/v1beta/models/{model}:streamGenerateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
    headers = {"x-goog-api-key": account[1]}
    sse = sse_chunks(httpx.post(url + "?alt=sse", json=body, headers=headers).text)
    r = httpx.post(url, json=body, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    chunks = r.json()
    assert isinstance(chunks, list) and len(chunks) == len(sse)
    text = "".join(
        p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"]
    )
    assert text == "".join(
        p.get("text", "") for c in sse for p in c["candidates"][0]["content"]["parts"]
    )
    assert chunks[-1]["usageMetadata"]["costUsd"]
    # The vendor's error event, or the gateway's own for a stream cut short: the last item,
    # then the array closes.
    for trigger in ("[[midstream-error]]", "[[cut]]"):
        r = httpx.post(
            url,
            json={"contents": [{"role": "user", "parts": [{"text": f"{trigger} go"}]}]},
            headers=headers,
        )
        chunks = r.json()
        assert len(chunks) > 1 and chunks[-1]["error"]["status"] == "UNAVAILABLE", trigger


def test_sdk_raises_client_error_for_bad_requests(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as exc:
        client.models.generate_content(
            model="gpt-4o",
            contents=PROMPT,
            config=types.GenerateContentConfig(temperature=5),
        )
    assert exc.value.code == 400 and exc.value.status == "INVALID_ARGUMENT"
    with pytest.raises(errors.ClientError) as exc:
        client.models.generate_content(model="no-such-model", contents=PROMPT)
    assert exc.value.code == 404 and exc.value.status == "NOT_FOUND"


def test_bad_key_is_unauthenticated(gw: RunningGateway) -> None:
    client = sdk(gw, "sk-aic-wrong")
    with pytest.raises(errors.ClientError) as exc:
        client.models.generate_content(model="gpt-4o", contents=PROMPT)
    assert exc.value.code == 401 and exc.value.status == "UNAUTHENTICATED"
    r = httpx.post(
        gw.proxy + "/v1beta/models/gpt-4o:countTokens",
        json={"contents": [{"parts": [{"text": "hi"}]}]},
    )
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"


def test_key_in_query_or_bearer_is_accepted_and_never_logged(
    gw: RunningGateway, account: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, key = account
    body = {"contents": [{"parts": [{"text": "hi"}]}]}
    with caplog.at_level(logging.DEBUG):
        for model in ("gemini-2.5-flash", "claude-sonnet-4-6"):
            r = httpx.post(f"{gw.proxy}/v1beta/models/{model}:generateContent?key={key}", json=body)
            assert r.status_code == 200, r.text
            r = httpx.post(
                f"{gw.proxy}/v1beta/models/{model}:streamGenerateContent?alt=sse&key={key}",
                json=body,
            )
            assert r.status_code == 200 and sse_chunks(r.text)
        r = httpx.post(
            f"{gw.proxy}/v1beta/models/gpt-4o:generateContent",
            json=body,
            headers={"authorization": f"Bearer {key}"},
        )
        assert r.status_code == 200
        # A refused key in the query: the error names no key either.
        r = httpx.post(f"{gw.proxy}/v1beta/models/gpt-4o:generateContent?key=sk-aic-x1", json=body)
        assert r.status_code == 401 and "sk-aic-x1" not in r.text
        r = httpx.post(f"{gw.proxy}/v1beta/models/nope:generateContent?key={key}", json=body)
        assert r.status_code == 404 and key not in r.text
    # The gateway's own log lines (the test's HTTP client logs its URLs at DEBUG).
    mine = [r for r in caplog.records if r.name.startswith(("tokenrelay", "uvicorn"))]
    assert mine  # the access log did write
    logged = "\n".join(rec.getMessage() + str(rec.__dict__) for rec in mine)
    assert key not in logged and "sk-aic-x1" not in logged
    requests = httpx.get(gw.emulator_url + "/_requests").json()["data"]
    assert not any(key in json.dumps(row) for row in requests)  # nor in a vendor URL


@pytest.mark.parametrize("model", MODELS)
def test_midstream_vendor_error_is_a_gemini_error_chunk(
    gw: RunningGateway, client: genai.Client, model: str
) -> None:
    with pytest.raises(errors.APIError) as exc:
        for _ in client.models.generate_content_stream(
            model=model, contents="[[midstream-error]] go"
        ):
            pass
    assert exc.value.code >= 500 and exc.value.status in ("UNAVAILABLE", "INTERNAL")


# ---------------------------------------------------------------------------------- billing


@pytest.mark.parametrize("model", MODELS)
def test_stream_costs_what_non_stream_costs(gw: RunningGateway, model: str) -> None:
    key_id, key = new_key(gw, "10.00")
    headers = {"x-goog-api-key": key}
    body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
    base = f"{gw.proxy}/v1beta/models/{model}"
    unary = httpx.post(base + ":generateContent", json=body, headers=headers)
    assert unary.status_code == 200, unary.text
    stream = httpx.post(base + ":streamGenerateContent?alt=sse", json=body, headers=headers)
    assert stream.status_code == 200, stream.text
    unary_cost = Decimal(unary.headers["x-tokenrelay-cost-usd"])
    last = sse_chunks(stream.text)[-1]
    stream_cost = Decimal(str(last["usageMetadata"]["costUsd"]))
    assert unary_cost == stream_cost > 0
    records = usage_records(gw, key_id)
    for r, cost in ((unary, unary_cost), (stream, stream_cost)):
        row = records[r.headers["x-request-id"]]
        assert Decimal(row["cost_usd"]) == cost and row["status"] == "ok"
        assert row["usage_source"] == "vendor"
    assert records[unary.headers["x-request-id"]]["fast_path"] is (model.startswith("gemini"))


def test_no_balance_is_refused_before_any_vendor_call(gw: RunningGateway) -> None:
    _, key = new_key(gw, "0.000001")
    before = httpx.get(gw.emulator_url + "/_requests").json()["data"]
    client = sdk(gw, key)
    for model in ("gemini-2.5-pro", "claude-sonnet-4-6"):
        with pytest.raises(errors.ClientError) as exc:
            client.models.generate_content(model=model, contents=PROMPT)
        assert exc.value.code == 402 and exc.value.status == "FAILED_PRECONDITION"
        with pytest.raises(errors.ClientError):
            for _ in client.models.generate_content_stream(model=model, contents=PROMPT):
                pass
    after = httpx.get(gw.emulator_url + "/_requests").json()["data"]
    assert after == before


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "claude-sonnet-4-6", "gpt-4o"])
def test_interrupted_stream_is_billed_for_what_was_delivered(
    gw: RunningGateway, model: str
) -> None:
    key_id, key = new_key(gw, "5.00")
    body = {"contents": [{"role": "user", "parts": [{"text": "[[words:60]] [[delay:50]]"}]}]}
    url = f"{gw.proxy}/v1beta/models/{model}:streamGenerateContent?alt=sse"
    seen = 0
    with (
        httpx.Client(timeout=30) as http,
        http.stream("POST", url, json=body, headers={"x-goog-api-key": key}) as resp,
    ):
        request_id = resp.headers["x-request-id"]
        for line in resp.iter_lines():
            if line.startswith("data:"):
                seen += 1
            if seen >= 5:
                break
    row = None
    for _ in range(100):
        row = usage_records(gw, key_id).get(request_id)
        if row is not None:
            break
        time.sleep(0.05)
    assert row is not None
    assert row["status"] == "cancelled"
    assert 5 <= row["output_tokens"] < 60
    assert Decimal(row["cost_usd"]) > 0


# ----------------------------------------------------------------------------- Gemini CLI


def cli_stream(gw: RunningGateway, key: str, model: str, body: Any) -> list[dict[str, Any]]:
    r = httpx.post(
        f"{gw.proxy}/v1beta/models/{model}:streamGenerateContent?alt=sse",
        json=body,
        headers={"x-goog-api-key": key, "user-agent": "GeminiCLI/0.61.0"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    chunks = sse_chunks(r.text)
    assert chunks and all("error" not in c for c in chunks), r.text
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["promptTokenCount"] > 1000  # the CLI's whole context
    return chunks


@pytest.mark.parametrize("model", [*MODELS, "gemini-3-pro-preview", "deepseek-reasoner"])
def test_gemini_cli_conversation_is_served_by_every_vendor(
    gw: RunningGateway, account: Any, model: str
) -> None:
    """The CLI's captured first turn, then its tool turn built the way the CLI builds it (see
    fixtures/gemini_cli/tool_turn.json): thought parts dropped from the model turn, the call id
    prefixed with `{name}__`, a functionResponse `{output}` with that id. Its thinkingConfig
    enables thinking, so Anthropic and DeepSeek need their reasoning state restored by the
    gateway."""
    first = json.loads((FIXTURES / "first_turn.json").read_text("utf-8"))
    captured = json.loads((FIXTURES / "tool_turn.json").read_text("utf-8"))
    assert captured["contents"][0] == first["contents"][0]
    chunks = cli_stream(gw, account[1], model, first)
    parts = [
        p for c in chunks for p in c["candidates"][0]["content"]["parts"] if not p.get("thought")
    ]
    calls = [p["functionCall"] for p in parts if "functionCall" in p]
    assert calls, parts  # the emulator calls the first of the CLI's tools
    for call in calls:
        call["id"] = f"{call['name']}__{call.get('id') or 'synth_1'}"
    responses = [
        {"functionResponse": {"name": c["name"], "id": c["id"], "response": {"output": "done-42"}}}
        for c in calls
    ]
    second = {
        **first,
        "contents": [
            *first["contents"],
            {"role": "model", "parts": parts},
            {"role": "user", "parts": responses},
        ],
    }
    chunks = cli_stream(gw, account[1], model, second)
    text = "".join(
        p.get("text", "")
        for c in chunks
        for p in c["candidates"][0]["content"]["parts"]
        if not p.get("thought")
    )
    assert "done-42" in text


@pytest.mark.parametrize(
    "model", [m for m in MODELS if m not in ("claude-sonnet-4-6", "deepseek-chat")]
)
def test_gemini_cli_captured_tool_turn_is_accepted(
    gw: RunningGateway, account: Any, model: str
) -> None:
    """The captured tool turn as sent (ids the CLI made up against a capture server). Anthropic
    and DeepSeek, thinking, refuse a tool turn without the reasoning that led to it, as they
    do directly: that case is the conversation test above."""
    body = json.loads((FIXTURES / "tool_turn.json").read_text("utf-8"))
    chunks = cli_stream(gw, account[1], model, body)
    text = "".join(
        p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"]
    )
    assert "Directory /tmp/gemini/work is empty." in text


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_several_candidates_are_billed_for_all_of_them(gw: RunningGateway, stream: bool) -> None:
    """candidateCount > 1 on the fast path: the vendor's usage counts every candidate, and so
    does the bill (a stream's candidates interleave; the last one's finish ends it)."""
    model = "gemini-2.5-flash"

    def ask(count: int) -> tuple[dict[str, Any], types.GenerateContentResponseUsageMetadata]:
        key_id, key = new_key(gw, "10.00")
        client = sdk(gw, key)
        config = types.GenerateContentConfig(candidate_count=count)
        if stream:
            chunks = list(
                client.models.generate_content_stream(model=model, contents=PROMPT, config=config)
            )
            candidates = [c for chunk in chunks for c in chunk.candidates or []]
            usage = chunks[-1].usage_metadata
        else:
            resp = client.models.generate_content(model=model, contents=PROMPT, config=config)
            candidates, usage = resp.candidates or [], resp.usage_metadata
        assert {c.index or 0 for c in candidates} == set(range(count))
        assert sum(1 for c in candidates if c.finish_reason) == count
        (row,) = usage_records(gw, key_id).values()
        assert row["status"] == "ok" and row["fast_path"] is True
        assert usage is not None
        return row, usage

    one, _ = ask(1)
    three, usage = ask(3)
    thoughts = usage.thoughts_token_count or 0
    assert three["output_tokens"] == (usage.candidates_token_count or 0) + thoughts
    assert three["output_tokens"] == 3 * one["output_tokens"] > 0  # three alike answers
    assert three["input_tokens"] == one["input_tokens"]
    assert Decimal(three["cost_usd"]) > 2 * Decimal(one["cost_usd"])
