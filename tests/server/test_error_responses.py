"""Paths and methods the gateway doesn't serve answer JSON in the shape their clients parse."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from gateway_support import ADMIN_TOKEN, RunningGateway


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/proxy/v1/images/generations", {}),
        ("/api/proxy/v1/messages/nothing", {}),
        ("/api/proxy/v2/anything", {"anthropic-version": "2023-06-01"}),
        ("/admin/v1/nothing", {"authorization": f"Bearer {ADMIN_TOKEN}"}),
        ("/no/such/page", {}),
    ],
)
def test_unknown_path_is_a_json_404(
    gateway: RunningGateway, path: str, headers: dict[str, str]
) -> None:
    r = httpx.post(gateway.url + path, headers=headers, json={})
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["error"]["message"]
    anthropic_shape = "anthropic-version" in headers or "/messages" in path
    if anthropic_shape:
        assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    elif path.startswith("/api/proxy/"):
        assert body["error"]["type"] == "invalid_request_error"
        assert body["error"]["code"] == "not_found"
    else:
        assert body["error"]["type"] == "not_found_error"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/api/proxy/v1/chat/completions", "POST"),
        ("PUT", "/api/proxy/v1/messages", "POST"),
        ("DELETE", "/api/proxy/v1/models", "GET, HEAD"),
        ("POST", "/healthz", "GET, HEAD"),
    ],
)
def test_wrong_method_is_a_json_405_with_allow(
    gateway: RunningGateway, method: str, path: str, allow: str
) -> None:
    r = httpx.request(method, gateway.url + path)
    assert r.status_code == 405
    assert set(r.headers["allow"].split(", ")) == set(allow.split(", "))
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]


def test_sdks_raise_not_found(gateway: RunningGateway, api_key: str) -> None:
    oai = openai.OpenAI(api_key=api_key, base_url=gateway.proxy + "/v1", max_retries=0)
    with pytest.raises(openai.NotFoundError) as oai_err:
        oai.images.generate(model="gpt-image-1", prompt="hi")
    assert oai_err.value.code == "not_found"

    claude = anthropic.Anthropic(api_key=api_key, base_url=gateway.proxy, max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as claude_err:
        claude.messages.batches.retrieve("msgbatch_nope")
    assert claude_err.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
