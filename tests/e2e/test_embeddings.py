"""Embeddings through the official SDKs: openai `client.embeddings.create` (float, and base64,
the SDK's default) on OpenAI, Gemini and a config-defined vendor's models; google-genai
`embed_content`; each billed per input token at the catalog's price; the vectors the vendor
gave (checked against a direct call to the emulator); and `/v1/responses/input_tokens`."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest
from google import genai
from google.genai import types

from gateway_support import RunningGateway, served

NANO = Decimal("1e-9")
CATALOG = """
[upstreams.acme-embed]
base_url = "https://api.acme.example/v1"
api_key_env = "ACME_EMBED_API_KEY"

[models."acme-embed-1"]
vendor = "acme-embed"
kind = "embedding"
upstream = "text-embedding-3-small"
context_window = 8191
input = 0.05
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("embeddings")
    catalog = tmp / "catalog.toml"
    catalog.write_text(CATALOG, "utf-8")
    yield from served(tmp, catalog_path=str(catalog))


@pytest.fixture(scope="module")
def client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(api_key=gw.create_key(), base_url=gw.proxy + "/v1")


def direct(gw: RunningGateway, path: str, body: dict[str, object]) -> dict[str, object]:
    """The emulator's own answer, without the gateway."""
    headers = {"authorization": "Bearer direct", "x-goog-api-key": "direct"}
    r = httpx.post(gw.emulator_url + path, json=body, headers=headers)
    assert r.status_code == 200, r.text
    data: dict[str, object] = r.json()
    return data


@pytest.mark.parametrize(
    ("model", "nano_per_token"),
    [("text-embedding-3-small", 20), ("gemini-embedding-001", 150), ("acme-embed-1", 50)],
)
def test_openai_sdk_float_and_base64_billed_per_input_token(
    gw: RunningGateway, client: openai.OpenAI, model: str, nano_per_token: int
) -> None:
    texts = ["the quick brown fox", "jumps over the lazy dog"]
    as_float = client.embeddings.with_raw_response.create(
        model=model, input=texts, dimensions=64, encoding_format="float"
    )
    floats = as_float.parse()
    as_base64 = client.embeddings.create(model=model, input=texts, dimensions=64)  # SDK default
    assert [len(d.embedding) for d in floats.data] == [64, 64]
    for a, b in zip(floats.data, as_base64.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding, rel=1e-6)  # float32 on the wire
    tokens = floats.usage.prompt_tokens
    assert tokens > 0
    cost = Decimal(as_float.headers["x-tokenrelay-cost-usd"]) / NANO
    assert cost == tokens * nano_per_token
    # The vectors the vendor gave, in order.
    if model.startswith("gemini"):
        path = f"/gemini/v1beta/models/{model}:batchEmbedContents"
        reqs = [
            {
                "model": f"models/{model}",
                "content": {"parts": [{"text": t}]},
                "outputDimensionality": 64,
            }
            for t in texts
        ]
        want = [e["values"] for e in direct(gw, path, {"requests": reqs})["embeddings"]]  # type: ignore[index]
    else:
        body = {"model": "text-embedding-3-small", "input": texts, "dimensions": 64}
        want = [d["embedding"] for d in direct(gw, "/openai/v1/embeddings", body)["data"]]  # type: ignore[index]
    assert [d.embedding for d in floats.data] == want


def test_token_arrays_on_openai_wire_only(client: openai.OpenAI) -> None:
    r = client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4, 5]])
    assert len(r.data) == 2 and r.usage.prompt_tokens == 5
    with pytest.raises(openai.BadRequestError, match="text only"):
        client.embeddings.create(model="gemini-embedding-001", input=[[1, 2, 3]])


def test_wrong_kind_of_model_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="not an embedding model"):
        client.embeddings.create(model="gpt-4o-mini", input="x")
    with pytest.raises(openai.BadRequestError, match="embedding model"):
        client.chat.completions.create(
            model="text-embedding-3-small", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="text-embedding-3-small", input="")


def test_unauthenticated_is_a_401(gw: RunningGateway) -> None:
    bad = openai.OpenAI(api_key="sk-aic-wrong", base_url=gw.proxy + "/v1")
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(model="text-embedding-3-small", input="x")


def test_google_genai_embed_content(gw: RunningGateway) -> None:
    g = genai.Client(api_key=gw.create_key(), http_options={"base_url": gw.proxy})
    one = g.models.embed_content(model="gemini-embedding-001", contents="hello world")
    assert one.embeddings is not None and len(one.embeddings[0].values or []) == 3072
    many = g.models.embed_content(
        model="gemini-embedding-001",
        contents=["hello world", "second"],
        config=types.EmbedContentConfig(output_dimensionality=16, task_type="RETRIEVAL_QUERY"),
    )
    assert many.embeddings is not None
    assert [len(e.values or []) for e in many.embeddings] == [16, 16]
    reqs = [
        {
            "model": "models/gemini-embedding-001",
            "content": {"parts": [{"text": t}]},
            "outputDimensionality": 16,
        }
        for t in ("hello world", "second")
    ]
    path = "/gemini/v1beta/models/gemini-embedding-001:batchEmbedContents"
    want = direct(gw, path, {"requests": reqs})["embeddings"]
    assert [e.values for e in many.embeddings] == [w["values"] for w in want]  # type: ignore[attr-defined]
    with pytest.raises(genai.errors.ClientError):
        g.models.embed_content(model="gemini-2.5-flash", contents="not an embedding model")
    listed = g.models.get(model="gemini-embedding-001")
    assert listed.supported_actions == ["embedContent", "batchEmbedContents"]


def test_embedding_models_listed_with_prices(client: openai.OpenAI) -> None:
    listed = {m.id: m.model_dump() for m in client.models.list().data}
    small = listed["text-embedding-3-small"]
    assert small["kind"] == "embedding"
    assert small["pricing"]["input_per_mtok"] == "0.02"
    assert listed["gemini-embedding-001"]["pricing"]["input_per_mtok"] == "0.15"
    assert listed["gpt-4o-mini"]["kind"] == "chat"


def test_responses_input_tokens(gw: RunningGateway, client: openai.OpenAI) -> None:
    body = {"input": "count the tokens of this sentence please"}
    # OpenAI counts its own (the emulator's count: ceil(chars / 4)); other vendors locally.
    exact = client.responses.input_tokens.count(model="gpt-4o", **body)  # type: ignore[arg-type]
    assert (
        exact.input_tokens
        == direct(gw, "/openai/v1/responses/input_tokens", {"model": "gpt-4o", **body})[
            "input_tokens"
        ]
    )
    for model in ("claude-haiku-4-5", "gemini-2.5-flash", "grok-3-mini", "deepseek-chat"):
        local = client.responses.input_tokens.with_raw_response.count(model=model, **body)  # type: ignore[arg-type]
        assert local.headers["x-tokenrelay-count"] == "estimated"
        assert local.parse().input_tokens > 0
    bad = openai.OpenAI(api_key="sk-aic-wrong", base_url=str(client.base_url))
    with pytest.raises(openai.AuthenticationError):
        bad.responses.input_tokens.count(model="gpt-4o", input="x")


def test_input_tokens_honours_the_allow_list(gw: RunningGateway, tmp_path: Path) -> None:
    limited = openai.OpenAI(
        api_key=gw.create_key(allowed_models=["gpt-4o"]), base_url=gw.proxy + "/v1"
    )
    assert limited.responses.input_tokens.count(model="gpt-4o", input="x").input_tokens > 0
    with pytest.raises(openai.PermissionDeniedError):
        limited.responses.input_tokens.count(model="claude-haiku-4-5", input="x")


def test_input_tokens_is_rate_limited_like_a_request(gw: RunningGateway) -> None:
    limited = openai.OpenAI(api_key=gw.create_key(rpm=2), base_url=gw.proxy + "/v1", max_retries=0)
    for _ in range(2):
        limited.responses.input_tokens.count(model="claude-haiku-4-5", input="x")
    with pytest.raises(openai.RateLimitError):
        limited.responses.input_tokens.count(model="claude-haiku-4-5", input="x")
