"""Prompt triggers and usage semantics, across the five vendors."""

from __future__ import annotations

import hashlib
import time

import httpx
import pytest
from emu_helpers import AUTH, PATHS, gemini_path, gemini_user, user
from emu_structure import sse_events

from tokenrelay.emulator.app import AbruptClose

OPENAI_LIKE = ["openai", "xai", "deepseek", "compat"]
MODELS = {
    "anthropic": "claude-sonnet-4-5",
    "openai": "gpt-4o",
    "xai": "grok-4.20-non-reasoning",
    "deepseek": "deepseek-chat",
    "compat": "acme/chat-1",
    "gemini": "gemini-2.5-flash",
}


async def call(
    emu: httpx.AsyncClient, vendor: str, text: str, stream: bool = False, **extra: object
) -> httpx.Response:
    if vendor == "gemini":
        action = "streamGenerateContent" if stream else "generateContent"
        return await emu.post(
            gemini_path(MODELS[vendor], action),
            headers=AUTH[vendor],
            json={"contents": [gemini_user(text)], **extra},
        )
    body: dict = {"model": MODELS[vendor], "messages": [user(text)], "stream": stream, **extra}
    if vendor == "anthropic":
        body.setdefault("max_tokens", 1024)
    if stream and vendor != "anthropic":
        body["stream_options"] = {"include_usage": True}
    return await emu.post(PATHS[vendor], headers=AUTH[vendor], json=body)


def text_of(vendor: str, body: dict) -> str:
    if vendor == "anthropic":
        return "".join(b.get("text", "") for b in body["content"])
    if vendor == "gemini":
        return "".join(p.get("text", "") for p in body["candidates"][0]["content"]["parts"])
    return body["choices"][0]["message"]["content"] or ""


def stream_text(vendor: str, raw: bytes) -> str:
    out = []
    for _, data in sse_events(raw):
        if vendor == "anthropic" and data.get("type") == "content_block_delta":
            out.append(data["delta"].get("text", ""))
        elif vendor == "gemini" and "candidates" in data:
            out += [p.get("text", "") for p in data["candidates"][0]["content"]["parts"]]
        elif vendor in OPENAI_LIKE and isinstance(data, dict) and data.get("choices"):
            out.append(data["choices"][0]["delta"].get("content") or "")
    return "".join(out)


def finish_of(vendor: str, body: dict) -> str:
    if vendor == "anthropic":
        return body["stop_reason"]
    if vendor == "gemini":
        return body["candidates"][0]["finishReason"]
    return body["choices"][0]["finish_reason"]


@pytest.mark.parametrize("vendor", list(MODELS))
async def test_words_and_stream_equals_non_stream(emu: httpx.AsyncClient, vendor: str) -> None:
    plain = await call(emu, vendor, "Count [[words:7]]")
    assert plain.status_code == 200, plain.text
    assert text_of(vendor, plain.json()).split() == [f"w{i}" for i in range(1, 8)]
    streamed = await call(emu, vendor, "Count [[words:7]]", stream=True)
    assert stream_text(vendor, streamed.content) == text_of(vendor, plain.json())
    again = await call(emu, vendor, "Count [[words:7]]")
    assert again.content == plain.content, "same request, same bytes"


@pytest.mark.parametrize("vendor", list(MODELS))
async def test_default_reply_depends_on_prompt(emu: httpx.AsyncClient, vendor: str) -> None:
    a = text_of(vendor, (await call(emu, vendor, "Tell me about lighthouses")).json())
    b = text_of(vendor, (await call(emu, vendor, "Explain volcanoes")).json())
    assert a != b and "lighthouses" in a
    assert 15 <= len(a.split()) <= 25


@pytest.mark.parametrize("vendor", list(MODELS))
async def test_usage_identical_stream_and_non_stream(emu: httpx.AsyncClient, vendor: str) -> None:
    prompt = "Usage check [[words:5]] [[cache]]"
    plain = (await call(emu, vendor, prompt)).json()
    events = [d for _, d in sse_events((await call(emu, vendor, prompt, stream=True)).content)]
    if vendor == "anthropic":
        final = next(d for d in events if d.get("type") == "message_delta")["usage"]
        start = events[0]["message"]["usage"]
        assert start["output_tokens"] == 1
        assert final["output_tokens"] == plain["usage"]["output_tokens"] == 5
        assert start["cache_read_input_tokens"] == plain["usage"]["cache_read_input_tokens"] > 0
    elif vendor == "gemini":
        usages = [d["usageMetadata"] for d in events]
        counts = [u.get("candidatesTokenCount", 0) for u in usages]
        assert counts == sorted(counts), "cumulative"
        assert usages[-1] == plain["usageMetadata"]
        assert plain["usageMetadata"]["cachedContentTokenCount"] > 0
        u = usages[-1]
        assert u["totalTokenCount"] == (
            u["promptTokenCount"] + u["candidatesTokenCount"] + u.get("thoughtsTokenCount", 0)
        )
    else:
        chunks = [d for d in events if isinstance(d, dict)]
        with_usage = [d for d in chunks if d.get("usage")]
        assert len(with_usage) == 1 and with_usage[0] is chunks[-1]
        if vendor == "deepseek":  # usage rides on the finish chunk
            assert with_usage[0]["choices"][0]["finish_reason"] == "stop"
            assert plain["usage"]["prompt_cache_hit_tokens"] > 0
        else:
            assert with_usage[0]["choices"] == []
            assert plain["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
        assert with_usage[0]["usage"] == plain["usage"]


@pytest.mark.parametrize("vendor", ["openai", "xai"])
async def test_no_usage_without_include_usage(emu: httpx.AsyncClient, vendor: str) -> None:
    body = {"model": MODELS[vendor], "messages": [user("hi")], "stream": True}
    raw = (await emu.post(PATHS[vendor], headers=AUTH[vendor], json=body)).content
    assert b'"usage"' not in raw and raw.endswith(b"data: [DONE]\n\n")


ERRORS = [(v, s) for v in MODELS for s in (400, 401, 429, 500, 503)] + [
    ("anthropic", 529),
    ("deepseek", 402),
]


@pytest.mark.parametrize(("vendor", "status"), ERRORS)
async def test_error_trigger(emu: httpx.AsyncClient, vendor: str, status: int) -> None:
    for stream in (False, True):
        resp = await call(emu, vendor, f"fail [[error:{status}]]", stream=stream)
        assert resp.status_code == status
        body = resp.json()
        if vendor == "anthropic":
            assert body["type"] == "error" and body["error"]["type"]
        elif vendor == "gemini":
            assert body["error"]["code"] == status and body["error"]["status"]
        elif vendor == "xai":
            assert set(body) == {"code", "error"}
        else:
            assert set(body["error"]) == {"message", "type", "param", "code"}
        if status == 429:
            assert resp.headers["retry-after"]
            if vendor == "gemini":
                assert any("RetryInfo" in d["@type"] for d in body["error"]["details"])
    if vendor == "anthropic" and status == 529:
        assert body["error"]["type"] == "overloaded_error"


@pytest.mark.parametrize("vendor", list(MODELS))
async def test_midstream_error(emu: httpx.AsyncClient, vendor: str) -> None:
    resp = await call(emu, vendor, "story [[words:10]] [[midstream-error]]", stream=True)
    assert resp.status_code == 200
    events = sse_events(resp.content)
    name, last = events[-1]
    if vendor == "anthropic":
        assert name == "error" and last["error"]["type"] == "overloaded_error"
        assert not any(n in ("message_delta", "message_stop") for n, _ in events)
    elif vendor == "gemini":
        assert last["error"]["status"] == "UNAVAILABLE" and last["error"]["code"] == 503
    else:
        assert set(last) == {"error"} and b"[DONE]" not in resp.content
    assert stream_text(vendor, resp.content).split() == ["w1", "w2", "w3"]
    plain = await call(emu, vendor, "story [[midstream-error]]")
    assert plain.status_code >= 500


@pytest.mark.parametrize("vendor", list(MODELS))
async def test_cut_drops_connection(emu: httpx.AsyncClient, vendor: str) -> None:
    with pytest.raises(AbruptClose):
        await call(emu, vendor, "story [[words:10]] [[cut]]", stream=True)


@pytest.mark.parametrize("vendor", list(MODELS))
async def test_max_tokens(emu: httpx.AsyncClient, vendor: str) -> None:
    limit = {
        "anthropic": {"max_tokens": 4},
        "openai": {"max_completion_tokens": 4},
        "xai": {"max_tokens": 4},
        "deepseek": {"max_tokens": 4},
        "compat": {"max_tokens": 4},
        "gemini": {"generationConfig": {"maxOutputTokens": 4}},
    }[vendor]
    body = (await call(emu, vendor, "long [[words:9]]", **limit)).json()
    assert text_of(vendor, body).split() == ["w1", "w2", "w3", "w4"]
    assert finish_of(vendor, body) in ("max_tokens", "length", "MAX_TOKENS")
    forced = (await call(emu, vendor, "long [[max]]", **limit)).json()
    assert len(text_of(vendor, forced).split()) == 4
    assert finish_of(vendor, forced) == finish_of(vendor, body)


@pytest.mark.parametrize("vendor", ["anthropic", "openai", "deepseek", "compat", "gemini"])
async def test_stop_sequence(emu: httpx.AsyncClient, vendor: str) -> None:
    stop = {
        "anthropic": {"stop_sequences": ["w3"]},
        "openai": {"stop": ["w3"]},
        "deepseek": {"stop": "w3"},
        "compat": {"stop": ["w3"]},
        "gemini": {"generationConfig": {"stopSequences": ["w3"]}},
    }[vendor]
    body = (await call(emu, vendor, "go [[words:6]]", **stop)).json()
    assert text_of(vendor, body).split() == ["w1", "w2"]
    assert finish_of(vendor, body) in ("stop_sequence", "stop", "STOP")
    if vendor == "anthropic":
        assert body["stop_sequence"] == "w3"


async def test_refusal(emu: httpx.AsyncClient) -> None:
    a = (await call(emu, "anthropic", "[[refuse]]")).json()
    assert a["stop_reason"] == "refusal" and a["content"] == []
    o = (await call(emu, "openai", "[[refuse]]")).json()
    assert o["choices"][0]["finish_reason"] == "content_filter"
    g = (await call(emu, "gemini", "[[refuse]]")).json()
    assert g["promptFeedback"]["blockReason"] == "SAFETY" and "candidates" not in g
    gs = sse_events((await call(emu, "gemini", "[[refuse]]", stream=True)).content)
    assert len(gs) == 1 and "promptFeedback" in gs[0][1]


async def test_delays(emu: httpx.AsyncClient) -> None:
    start = time.perf_counter()
    await call(emu, "openai", "[[words:4]] [[delay:40]]", stream=True)
    assert time.perf_counter() - start >= 0.2  # role + 4 words + finish + usage + DONE frames
    start = time.perf_counter()
    await call(emu, "anthropic", "[[words:1]] [[first-delay:150]]")
    assert time.perf_counter() - start >= 0.15


TOOLS_OA = [
    {
        "type": "function",
        "function": {
            "name": n,
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer"},
                    "metric": {"type": "boolean"},
                },
                "required": ["city", "days", "metric"],
            },
        },
    }
    for n in ("get_weather", "get_forecast")
]


@pytest.mark.parametrize("vendor", OPENAI_LIKE)
async def test_openai_like_parallel_tools_stream(emu: httpx.AsyncClient, vendor: str) -> None:
    kwargs = {"tools": TOOLS_OA}
    plain = (await call(emu, vendor, "weather and forecast, both [[parallel]]", **kwargs)).json()
    calls = plain["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_forecast"]
    import json

    assert json.loads(calls[0]["function"]["arguments"]) == {
        "city": "Paris",
        "days": 1,
        "metric": True,
    }
    assert plain["choices"][0]["finish_reason"] == "tool_calls"
    pattern = {
        "openai": r"call_[A-Za-z0-9]{24}",
        "xai": r"call_\d{8}",
        "deepseek": r"call_0\d_[A-Za-z0-9]{24}",
        "compat": r"chatcmpl-tool-[0-9a-f]{32}",
    }[vendor]
    import re

    assert all(re.fullmatch(pattern, c["id"]) for c in calls)
    raw = (
        await call(emu, vendor, "weather and forecast, both [[parallel]]", stream=True, **kwargs)
    ).content
    args: dict[int, str] = {}
    for _, data in sse_events(raw):
        if isinstance(data, dict) and data.get("choices"):
            for tc in data["choices"][0]["delta"].get("tool_calls") or []:
                args[tc["index"]] = args.get(tc["index"], "") + tc["function"]["arguments"]
    assert [args[0], args[1]] == [c["function"]["arguments"] for c in calls]
    forced = (
        await call(
            emu,
            vendor,
            "x",
            tools=TOOLS_OA,
            tool_choice={"type": "function", "function": {"name": "get_forecast"}},
        )
    ).json()
    assert forced["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_forecast"
    none = (await call(emu, vendor, "x", tools=TOOLS_OA, tool_choice="none")).json()
    assert "tool_calls" not in none["choices"][0]["message"]


@pytest.mark.parametrize(
    ("vendor", "body", "status"),
    [
        (
            "anthropic",
            {"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
            400,
        ),
        ("anthropic", {"model": "m", "max_tokens": 5, "messages": [user("")]}, 400),
        (
            "anthropic",
            {"model": "m", "max_tokens": 5, "temperature": 1.5, "messages": [user("a")]},
            400,
        ),
        (
            "anthropic",
            {"model": "m", "max_tokens": 5, "tool_choice": "auto", "messages": [user("a")]},
            400,
        ),
        (
            "anthropic",
            {
                "model": "m",
                "max_tokens": 2000,
                "messages": [user("a")],
                "thinking": {"type": "enabled", "budget_tokens": 512},
            },
            400,
        ),
        (
            "anthropic",
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [
                    user("a"),
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
                    },
                    user("b"),
                ],
            },
            400,
        ),
        ("anthropic", {"model": "x-does-not-exist", "max_tokens": 5, "messages": [user("a")]}, 404),
        ("openai", {"model": "gpt-4o"}, 400),
        ("openai", {"model": "gpt-5", "max_tokens": 5, "messages": [user("a")]}, 400),
        (
            "openai",
            {
                "model": "gpt-4o",
                "messages": [user("a"), {"role": "tool", "tool_call_id": "call_x", "content": "r"}],
            },
            400,
        ),
        ("openai", {"model": "gpt-does-not-exist", "messages": [user("a")]}, 404),
        ("xai", {"model": "grok-3", "messages": [user("a")]}, 404),
        ("xai", {"model": "grok-4-1-fast-reasoning", "messages": [user("a")]}, 404),
        ("deepseek", {"model": "deepseek-does-not-exist", "messages": [user("a")]}, 404),
    ],
)
async def test_validation(emu: httpx.AsyncClient, vendor: str, body: dict, status: int) -> None:
    resp = await emu.post(PATHS[vendor], headers=AUTH[vendor], json=body)
    assert resp.status_code == status, resp.text


@pytest.mark.parametrize(
    ("contents", "status"),
    [
        ([], 400),
        ([{"role": "system", "parts": [{"text": "a"}]}], 400),
        (
            [
                gemini_user("a"),
                {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": "str"}}]},
            ],
            400,
        ),
    ],
)
async def test_gemini_validation(emu: httpx.AsyncClient, contents: list, status: int) -> None:
    resp = await emu.post(
        gemini_path("gemini-2.5-flash"), headers=AUTH["gemini"], json={"contents": contents}
    )
    assert resp.status_code == status
    assert resp.json()["error"]["status"] == "INVALID_ARGUMENT"
    nf = await emu.post(
        gemini_path("gemini-does-not-exist"),
        headers=AUTH["gemini"],
        json={"contents": [gemini_user("a")]},
    )
    assert nf.status_code == 404 and nf.json()["error"]["status"] == "NOT_FOUND"


async def test_auth(emu: httpx.AsyncClient) -> None:
    a = await emu.post(
        PATHS["anthropic"],
        headers={"x-api-key": "bad-1", "anthropic-version": "2023-06-01"},
        json={},
    )
    assert a.status_code == 401 and a.json()["error"]["type"] == "authentication_error"
    v = await emu.post(PATHS["anthropic"], headers={"x-api-key": "k"}, json={})
    assert v.status_code == 400 and "anthropic-version" in v.json()["error"]["message"]
    bearer = await call(emu, "anthropic", "hi")
    assert bearer.status_code == 200
    o = await emu.post(PATHS["openai"], headers={"authorization": "Bearer invalid"}, json={})
    assert o.status_code == 401 and o.json()["error"]["code"] == "invalid_api_key"
    assert (await emu.post(PATHS["openai"], json={})).status_code == 401
    d = await emu.post(PATHS["deepseek"], headers={"authorization": "Bearer bad-x"}, json={})
    assert d.status_code == 401
    g = await emu.post(gemini_path("gemini-2.5-flash") + "?key=invalid", json={})
    assert g.status_code == 400
    assert g.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    q = await emu.post(
        gemini_path("gemini-2.5-flash") + "?key=good", json={"contents": [gemini_user("a")]}
    )
    assert q.status_code == 200


async def test_count_tokens_match_messages(emu: httpx.AsyncClient) -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "system": "Be brief.",
        "messages": [user("How many tokens is this prompt?")],
    }
    count = await emu.post(
        "/anthropic/v1/messages/count_tokens", headers=AUTH["anthropic"], json=body
    )
    msg = await emu.post(
        PATHS["anthropic"], headers=AUTH["anthropic"], json={**body, "max_tokens": 10}
    )
    assert count.json() == {"input_tokens": msg.json()["usage"]["input_tokens"]}
    gbody = {"contents": [gemini_user("How many tokens is this prompt?")]}
    gc = await emu.post(
        gemini_path("gemini-2.5-flash", "countTokens"), headers=AUTH["gemini"], json=gbody
    )
    gm = await emu.post(gemini_path("gemini-2.5-flash"), headers=AUTH["gemini"], json=gbody)
    assert gc.json()["totalTokens"] == gm.json()["usageMetadata"]["promptTokenCount"]


async def test_models_and_keepalive(emu: httpx.AsyncClient) -> None:
    assert (await emu.get("/anthropic/v1/models", headers=AUTH["anthropic"])).json()["data"]
    assert (await emu.get("/openai/v1/models", headers=AUTH["openai"])).json()["object"] == "list"
    assert (await emu.get("/xai/v1/models", headers=AUTH["xai"])).json()["data"]
    assert (await emu.get("/deepseek/models", headers=AUTH["deepseek"])).json()["data"]
    assert (await emu.get("/gemini/v1beta/models", headers=AUTH["gemini"])).json()["models"]
    raw = (await call(emu, "deepseek", "hi [[keepalive]]", stream=True)).content
    assert raw.startswith(b": keep-alive\n\ndata: ")
    plain = await call(emu, "deepseek", "hi [[keepalive]]")
    assert plain.content.startswith(b"\n\n{") and plain.json()["choices"]


async def test_compatible_server_under_any_name(emu: httpx.AsyncClient) -> None:
    """/compat/<name>/v1 serves any upstream name; the request log fingerprints the key."""
    listed = (await emu.get("/compat/my-vllm/v1/models", headers=AUTH["compat"])).json()
    assert listed["object"] == "list" and listed["data"][0]["owned_by"] == "my-vllm"
    body = {"model": "any/model-name", "messages": [user("hi [[words:2]]")]}
    r = await emu.post("/compat/my-vllm/v1/chat/completions", headers=AUTH["compat"], json=body)
    assert r.status_code == 200 and r.json()["model"] == "any/model-name"
    for bad in ("/compat/My_VLLM/v1/models", "/compat/my-vllm/v2/models", "/compat/my-vllm/v1"):
        assert (await emu.get(bad, headers=AUTH["compat"])).status_code == 404
    denied = await emu.post("/compat/my-vllm/v1/chat/completions", json=body)
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"
    missing = await emu.post(
        "/compat/my-vllm/v1/chat/completions",
        headers=AUTH["compat"],
        json={**body, "model": "does-not-exist"},
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    log = (await emu.get("/_requests")).json()["data"]
    assert log[-1]["seq"] == log[-2]["seq"] + 1  # numbered, for tests that take a mark
    assert {k: v for k, v in log[-1].items() if k != "seq"} == {
        "method": "POST",
        "path": "/compat/my-vllm/v1/chat/completions",
        "bearer_sha256": hashlib.sha256(b"any-key").hexdigest()[:16],
    }
    assert log[-2]["bearer_sha256"] is None  # the call without a key
    assert "any-key" not in str(log)
