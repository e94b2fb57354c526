"""Errors reach each client in its own format, status and SDK exception class."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

PROMPT = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def claude(gateway, api_key) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=api_key, base_url=gateway.proxy, max_retries=0)


@pytest.fixture(scope="module")
def gpt(gateway, api_key) -> openai.OpenAI:
    return openai.OpenAI(api_key=api_key, base_url=gateway.proxy + "/v1", max_retries=0)


def test_bad_key_is_401_in_both_formats(gateway) -> None:
    bad_claude = anthropic.Anthropic(api_key="sk-aic-nope", base_url=gateway.proxy, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as a:
        bad_claude.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=PROMPT)
    assert a.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    bad_gpt = openai.OpenAI(api_key="sk-aic-nope", base_url=gateway.proxy + "/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_gpt.chat.completions.create(model="gpt-4o", messages=PROMPT)


def test_unknown_model_is_404(claude, gpt) -> None:
    with pytest.raises(anthropic.NotFoundError) as a:
        claude.messages.create(model="no-such-model", max_tokens=10, messages=PROMPT)
    assert "no-such-model" in a.value.message
    with pytest.raises(openai.NotFoundError) as o:
        gpt.chat.completions.create(model="no-such-model", messages=PROMPT)
    assert o.value.code == "model_not_found"


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "gpt-4o", "gemini-2.5-flash"])
def test_missing_and_mistyped_fields_are_400_naming_the_field(gateway, api_key, model) -> None:
    url = gateway.proxy + "/v1/messages"
    headers = {"x-api-key": api_key, "anthropic-version": "2023-06-01"}
    r = httpx.post(url, headers=headers, json={"model": model, "messages": PROMPT})
    assert r.status_code == 400
    assert r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in r.json()["error"]["message"]

    url = gateway.proxy + "/v1/chat/completions"
    headers = {"authorization": f"Bearer {api_key}"}
    r = httpx.post(url, headers=headers, json={"model": model, "messages": "hi"})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "messages" in r.json()["error"]["message"]

    r = httpx.post(url, headers=headers, content=b"{not json")
    assert r.status_code == 400
    assert "JSON" in r.json()["error"]["message"]


def test_oversized_body_is_413(gateway, api_key) -> None:
    limit = gateway.settings.max_body_bytes
    big = "x" * (limit + 10)
    r = httpx.post(
        gateway.proxy + "/v1/chat/completions",
        headers={"authorization": f"Bearer {api_key}"},
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": big}]},
        timeout=60,
    )
    assert r.status_code == 413
    assert r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("status", "anthropic_exc", "openai_exc"),
    [
        (429, anthropic.RateLimitError, openai.RateLimitError),
        (500, anthropic.InternalServerError, openai.InternalServerError),
        (503, anthropic.InternalServerError, openai.InternalServerError),
    ],
)
@pytest.mark.parametrize(
    "model", ["claude-sonnet-4-6", "gpt-4o", "gemini-2.5-flash", "grok-4.3", "deepseek-chat"]
)
def test_upstream_errors_are_mapped(claude, gpt, model, status, anthropic_exc, openai_exc) -> None:
    prompt = [{"role": "user", "content": f"[[error:{status}]]"}]
    with pytest.raises(anthropic_exc):
        claude.messages.create(model=model, max_tokens=50, messages=prompt)
    with pytest.raises(openai_exc):
        gpt.chat.completions.create(model=model, messages=prompt)


def test_anthropic_overloaded_529(claude, gpt) -> None:
    prompt = [{"role": "user", "content": "[[error:529]]"}]
    with pytest.raises(anthropic.OverloadedError):
        claude.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=prompt)
    with pytest.raises(openai.InternalServerError) as o:
        gpt.chat.completions.create(model="claude-sonnet-4-6", messages=prompt)
    assert o.value.status_code == 503


@pytest.mark.parametrize(
    "model", ["claude-sonnet-4-6", "gpt-4o", "gemini-2.5-flash", "grok-4.3", "deepseek-chat"]
)
def test_midstream_error_is_an_error_event_not_a_truncation(claude, gpt, model) -> None:
    prompt = [{"role": "user", "content": "[[midstream-error]]"}]
    with (
        pytest.raises(anthropic.APIStatusError),
        claude.messages.stream(model=model, max_tokens=200, messages=prompt) as stream,
    ):
        for _ in stream.text_stream:
            pass
    with pytest.raises(openai.APIError):
        for _ in gpt.chat.completions.create(model=model, messages=prompt, stream=True):
            pass


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "gpt-4o", "gemini-2.5-flash"])
def test_no_fake_terminator_after_midstream_error(gateway, api_key, model) -> None:
    body = {
        "model": model,
        "stream": True,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "[[midstream-error]]"}],
    }
    r = httpx.post(
        gateway.proxy + "/v1/messages",
        json=body,
        headers={"x-api-key": api_key, "anthropic-version": "2023-06-01"},
    )
    assert "event: error" in r.text
    assert "message_stop" not in r.text
    r = httpx.post(
        gateway.proxy + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {api_key}"},
    )
    assert '"error"' in r.text
    assert "[DONE]" not in r.text


def test_upstream_cut_becomes_error_event(gateway, api_key) -> None:
    body = {
        "model": "gemini-2.5-flash",
        "stream": True,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "[[cut]]"}],
    }
    r = httpx.post(
        gateway.proxy + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {api_key}"},
    )
    assert '"error"' in r.text and "[DONE]" not in r.text
    r = httpx.post(
        gateway.proxy + "/v1/messages",
        json=body,
        headers={"x-api-key": api_key, "anthropic-version": "2023-06-01"},
    )
    assert "event: error" in r.text and "message_stop" not in r.text


def test_errors_never_leak_vendor_or_customer_keys(gateway, api_key) -> None:
    r = httpx.post(
        gateway.proxy + "/v1/chat/completions",
        headers={"authorization": f"Bearer {api_key}"},
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "[[error:401]]"}]},
    )
    assert r.status_code == 502  # the vendor rejected the gateway's key: not the client's fault
    assert api_key not in r.text and "emulated-vendor-key" not in r.text


@pytest.mark.parametrize(
    "model", ["claude-sonnet-4-6", "gpt-4o", "gemini-2.5-flash", "grok-4.3", "deepseek-chat"]
)
def test_vendor_refusing_the_gateway_key_is_a_502_the_sdks_do_not_retry(gateway, model) -> None:
    """The operator's vendor key or account failing is not the client's fault (502) and not
    transient: SDKs with retries on must give up after one attempt, not hammer the vendor."""
    import time

    key = gateway.create_key("refused")
    prompt = [{"role": "user", "content": "[[error:401]]"}]
    claude = anthropic.Anthropic(api_key=key, base_url=gateway.proxy, max_retries=2)
    gpt = openai.OpenAI(api_key=key, base_url=gateway.proxy + "/v1", max_retries=2)
    with pytest.raises(anthropic.APIStatusError) as a:
        claude.messages.create(model=model, max_tokens=50, messages=prompt)
    with pytest.raises(openai.APIStatusError) as o:
        gpt.chat.completions.create(model=model, messages=prompt)
    for exc in (a.value, o.value):
        assert exc.status_code == 502
        assert exc.response.headers["x-should-retry"] == "false"
        assert key not in str(exc.body)
    deadline = time.monotonic() + 5
    while True:  # error records land just after the response
        account = httpx.get(
            f"{gateway.proxy}/v1/account", headers={"authorization": f"Bearer {key}"}
        ).json()
        if account["requests"] >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert account["requests"] == 2, account  # one attempt per SDK call, not three
    assert all(r["status"] == "error" for r in account["recent_usage"])
    assert account["spent_usd"] == "0.00"


@pytest.mark.parametrize("status", [503, 529])
@pytest.mark.parametrize(
    "model", ["claude-sonnet-4-6", "gpt-4o", "gemini-2.5-flash", "grok-4.3", "deepseek-chat"]
)
def test_vendor_overload_keeps_its_class_and_status(claude, gpt, model, status) -> None:
    """A vendor 503 or 529 is an overload, not a 500: Anthropic clients get `overloaded_error`
    with the vendor's own status (their SDKs and dashboards tell 529 from 503), OpenAI clients
    a 503."""
    prompt = [{"role": "user", "content": f"[[error:{status}]]"}]
    with pytest.raises(anthropic.APIStatusError) as a:
        claude.messages.create(model=model, max_tokens=50, messages=prompt)
    assert a.value.status_code == status
    assert a.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    if status == 529:
        assert isinstance(a.value, anthropic.OverloadedError)
    with pytest.raises(openai.InternalServerError) as o:
        gpt.chat.completions.create(model=model, messages=prompt)
    assert o.value.status_code == 503
    assert o.value.type == "server_error"


@pytest.mark.parametrize(
    ("model", "limit"),
    [("gpt-4o", "requests"), ("claude-sonnet-4-6", "tokens"), ("deepseek-chat", None)],
)
def test_vendor_429_says_which_limit_to_openai_clients(gpt, model, limit) -> None:
    """OpenAI's 429 `type` tells a tokens-per-minute limit from a requests-per-minute one; a
    vendor that says which (OpenAI's own type, Anthropic's wording) is passed on."""
    prompt = [{"role": "user", "content": "[[error:429]]"}]
    with pytest.raises(openai.RateLimitError) as o:
        gpt.chat.completions.create(model=model, messages=prompt)
    assert o.value.code == "rate_limit_exceeded"
    assert o.value.type == (limit or "requests")
