"""A fallback passes the admission a direct request for its model would (issue 20, hole 2):
a key allowed one model never gets another through a fallback, on any client API, and a spend
cap holds when the fallback is dearer. The asked model's vendor is down (its one deployment is a
port nothing listens on), so the catalog's fallback is the only way to an answer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from gateway_support import ADMIN_TOKEN, RunningGateway, free_port, refused_port, served

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningGateway]:
    """claude-haiku-4-5 (Anthropic, down) falls back to gpt-4o; gpt-4o-mini (OpenAI, down)
    falls back to claude-opus-4-1 (100x its price). Both down vendors are single dead
    deployments; the fallbacks' vendors are served by the emulator."""
    refused = contextlib.ExitStack()  # first: free_port() cannot then hand out the same port
    dead = f"http://127.0.0.1:{refused.enter_context(refused_port())}"
    port = free_port()
    monkeypatch.setenv("DEAD_KEY", "sk-dead")
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        f'[[deployments.anthropic]]\nname = "down"\nbase_url = "{dead}/anthropic"\n'
        'api_key_env = "DEAD_KEY"\nmodels = ["claude-haiku-4-5"]\n'
        f'[[deployments.anthropic]]\nname = "up"\nbase_url = "http://127.0.0.1:{port}/anthropic"\n'
        'api_key_env = "DEAD_KEY"\nmodels = ["claude-opus-4-1"]\n'
        f'[[deployments.openai]]\nname = "down"\nbase_url = "{dead}/openai/v1"\n'
        'api_key_env = "DEAD_KEY"\nmodels = ["gpt-4o-mini"]\n'
        f'[[deployments.openai]]\nname = "up"\nbase_url = "http://127.0.0.1:{port}/openai/v1"\n'
        'api_key_env = "DEAD_KEY"\nmodels = ["gpt-4o"]\n'
        '[fallbacks]\n"claude-haiku-4-5" = ["gpt-4o"]\n"gpt-4o-mini" = ["claude-opus-4-1"]\n'
    )
    with refused:
        yield from served(
            tmp_path,
            emulate="auto",
            emulator_port=port,
            catalog_path=str(catalog),
            upstream_retries=0,
        )


def _vendor_posts(gw: RunningGateway) -> list[str]:
    r = httpx.get(gw.emulator_url + "/_requests")
    return [q["path"] for q in r.json()["data"] if q["method"] == "POST"]


def _usage(gw: RunningGateway, key_id: str) -> list[dict[str, Any]]:
    r = httpx.get(gw.url + "/admin/v1/usage", headers=ADMIN, params={"key_id": key_id})
    return [u for u in r.json()["data"] if u.get("key_id") == key_id]


def _key(gw: RunningGateway, **fields: object) -> tuple[str, str]:
    r = httpx.post(
        gw.url + "/admin/v1/keys",
        json={"name": "fb", "credits_usd": "100.00", **fields},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["key"]), str(r.json()["id"])


def _ask_all_apis(gw: RunningGateway, key: str, model: str) -> list[tuple[str, int]]:
    """One request for `model` through each client API: (api, HTTP status)."""
    out: list[tuple[str, int]] = []
    a = anthropic.Anthropic(api_key=key, base_url=gw.proxy, max_retries=0)
    try:
        a.messages.create(model=model, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
        out.append(("messages", 200))
    except anthropic.APIStatusError as exc:
        out.append(("messages", exc.status_code))
    o = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
    try:
        o.chat.completions.create(
            model=model, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
        out.append(("chat", 200))
    except openai.APIStatusError as exc:
        out.append(("chat", exc.status_code))
    try:
        o.responses.create(model=model, max_output_tokens=16, input="hi")
        out.append(("responses", 200))
    except openai.APIStatusError as exc:
        out.append(("responses", exc.status_code))
    g = genai.Client(
        api_key=key,
        http_options=genai_types.HttpOptions(
            base_url=gw.proxy, retry_options=genai_types.HttpRetryOptions(attempts=1)
        ),
    )
    try:
        g.models.generate_content(
            model=model,
            contents="hi",
            config=genai_types.GenerateContentConfig(max_output_tokens=16),
        )
        out.append(("gemini", 200))
    except genai_errors.APIError as exc:
        out.append(("gemini", int(exc.code)))
    return out


def test_a_fallback_the_key_may_not_use_is_skipped_on_every_client_api(
    gateway: RunningGateway,
) -> None:
    only_haiku, key_id = _key(gateway, allowed_models=["claude-haiku-4-5"])
    # Asked directly, gpt-4o is refused.
    direct = _ask_all_apis(gateway, only_haiku, "gpt-4o")
    assert {status for _, status in direct} == {403}, direct
    before = _vendor_posts(gateway)
    results = _ask_all_apis(gateway, only_haiku, "claude-haiku-4-5")
    # The asked model's vendor is down and its fallback is not this key's: no answer.
    assert all(status >= 500 for _, status in results), results
    assert _vendor_posts(gateway) == before  # gpt-4o was never called
    assert sum(Decimal(u["cost_usd"]) for u in _usage(gateway, key_id)) == 0

    # A key that may use both gets the fallback's answer (the same request, the same set-up).
    both, _ = _key(gateway, allowed_models=["claude-haiku-4-5", "gpt-4o"])
    assert {status for _, status in _ask_all_apis(gateway, both, "claude-haiku-4-5")} == {200}


def test_a_spend_cap_holds_when_the_fallback_is_dearer(gateway: RunningGateway) -> None:
    """gpt-4o-mini's worst case at max_tokens 400 fits a $0.01 daily cap; claude-opus-4-1's
    (100x the price) does not: the fallback is skipped, nothing is spent past the cap."""
    capped, key_id = _key(gateway, daily_cap_usd="0.01")
    o = openai.OpenAI(api_key=capped, base_url=gateway.proxy + "/v1", max_retries=0)
    before = _vendor_posts(gateway)
    with pytest.raises(openai.APIStatusError) as refused:
        o.chat.completions.create(
            model="gpt-4o-mini", max_tokens=400, messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.status_code >= 500  # the asked model's own failure, not a 200
    assert sum(Decimal(u["cost_usd"]) for u in _usage(gateway, key_id)) <= Decimal("0.01")
    assert _vendor_posts(gateway) == before  # claude-opus-4-1 was never called

    # With room under the cap for the dearer model, the fallback answers.
    roomy, _ = _key(gateway, daily_cap_usd="1.00")
    o = openai.OpenAI(api_key=roomy, base_url=gateway.proxy + "/v1", max_retries=0)
    done = o.chat.completions.create(
        model="gpt-4o-mini", max_tokens=400, messages=[{"role": "user", "content": "hi"}]
    )
    assert done.model.startswith("claude-opus-4-1")
