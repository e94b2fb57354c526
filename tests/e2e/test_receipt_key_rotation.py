"""Rotating the receipt key (TOKENRELAY_RECEIPT_KEY, the old seed moved to
TOKENRELAY_RECEIPT_KEY_PREVIOUS): what customers hold from before keeps working — the
`compaction` items the gateway sealed for non-OpenAI models still open, and receipts still
verify against the published keys — and once the old seed is dropped, its items are refused
with a clear 400 in the Responses error format, never a 500.

One database, three gateways one after another, as an operator rolls the key out: under key
A; then B with A as previous; then B alone. Driven with the openai SDK.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from click.testing import CliRunner

from gateway_support import ADMIN_TOKEN, RunningGateway, served
from tokenrelay.server.cli import main as cli

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
KEY_A = base64.b64encode(os.urandom(32)).decode()
KEY_B = base64.b64encode(os.urandom(32)).decode()
CONVERSATION: list[Any] = [
    {"role": "user", "content": "Remember the code word PLUM-7 and say hello."},
    {"role": "assistant", "content": "Hello! I will remember PLUM-7."},
    {"role": "user", "content": "Now write a haiku about rivers."},
]
# Compacted by a model of each non-OpenAI vendor; the item goes on to these.
COMPACTORS = ["claude-sonnet-4-6", "gemini-2.5-flash", "grok-4.3", "deepseek-chat"]
LATER = ["claude-sonnet-4-6", "gpt-4o"]  # translated, and OpenAI's pass-through


def _client(gw: RunningGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.proxy + "/v1", api_key=key, max_retries=0)


def _compacted(client: openai.OpenAI, model: str) -> list[Any]:
    """The new conversation `/responses/compact` answers: the user's messages, one item."""
    output = client.responses.compact(model=model, input=CONVERSATION).model_dump(mode="json")
    assert [i["type"] for i in output["output"]][-1] == "compaction", output
    return list(output["output"])


def _go_on(client: openai.OpenAI, model: str, compacted: list[Any]) -> Any:
    follow = [*compacted, {"role": "user", "content": "What was the code word?"}]
    return client.responses.create(model=model, input=follow)


def _kids(gw: RunningGateway) -> list[str]:
    doc = httpx.get(gw.url + "/.well-known/tokenrelay-receipts.json").json()
    return [k["kid"] for k in doc["keys"]]


@pytest.fixture(scope="module")
def rollout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Each stage's gateway, started after the last one stopped (one database): what the
    customer got under A, and the gateways under B (+A) and B alone, kept running in turn."""
    tmp = tmp_path_factory.mktemp("rotation")
    seen: dict[str, Any] = {"tmp": tmp}
    under_a = served(tmp, receipt_key=KEY_A)
    gw = next(under_a)
    client = _client(gw, gw.create_key("rotation"))
    seen["items"] = {m: _compacted(client, m) for m in COMPACTORS}
    raw = client.chat.completions.with_raw_response.create(
        model="deepseek-chat",
        max_tokens=20,
        messages=[{"role": "user", "content": "Hi"}],
        extra_headers={"x-tokenrelay-receipt": "1"},
    )
    seen["receipt"] = raw.headers["x-tokenrelay-receipt"]
    seen["kids_a"] = _kids(gw)
    under_a.close()
    yield seen


def test_after_a_rotation_old_items_open_and_old_receipts_verify(rollout: dict[str, Any]) -> None:
    stage = served(rollout["tmp"], receipt_key=KEY_B, receipt_key_previous=KEY_A)
    gw = next(stage)
    try:
        key = gw.create_key("after")
        client = _client(gw, key)
        for compactor, items in rollout["items"].items():
            for later in LATER:
                answer = _go_on(client, later, items)
                assert answer.status == "completed" and answer.output_text, (compactor, later)
        # New items are sealed under B, and open here too.
        fresh = _compacted(client, "claude-sonnet-4-6")
        assert _go_on(client, "gemini-2.5-flash", fresh).status == "completed"
        # Only B signs; A stays published, and the receipt signed under A still verifies.
        kids = _kids(gw)
        assert len(kids) == 2 and kids[1:] == rollout["kids_a"] and kids[0] not in kids[1:]
        ok = CliRunner().invoke(cli, ["receipts", "verify", rollout["receipt"], "--url", gw.url])
        assert ok.exit_code == 0 and "signature: valid" in ok.output, ok.output
        r = client.chat.completions.with_raw_response.create(
            model="deepseek-chat",
            max_tokens=20,
            messages=[{"role": "user", "content": "Hi"}],
            extra_headers={"x-tokenrelay-receipt": "1"},
        )
        new = CliRunner().invoke(
            cli, ["receipts", "verify", r.headers["x-tokenrelay-receipt"], "--url", gw.url]
        )
        assert new.exit_code == 0 and f"(key {kids[0]})" in new.output, new.output
    finally:
        stage.close()


def test_once_the_old_key_is_dropped_its_items_get_a_clear_400(rollout: dict[str, Any]) -> None:
    stage = served(rollout["tmp"], receipt_key=KEY_B)
    gw = next(stage)
    try:
        created = httpx.post(
            gw.url + "/admin/v1/keys", json={"name": "dropped", "credits_usd": "10"}, headers=ADMIN
        ).json()
        client = _client(gw, created["key"])
        assert _kids(gw) != [] and rollout["kids_a"][0] not in _kids(gw)
        items = rollout["items"]["claude-sonnet-4-6"]
        where = f"input.{len(items) - 1}.encrypted_content"
        follow = [*items, {"role": "user", "content": "What was the code word?"}]
        calls = {
            "translated": lambda: client.responses.create(model="gemini-2.5-flash", input=follow),
            "openai": lambda: client.responses.create(model="gpt-4o", input=follow),
            "stream": lambda: client.responses.create(
                model="claude-sonnet-4-6", input=follow, stream=True
            ),
            "compact": lambda: client.responses.compact(model="deepseek-chat", input=follow),
        }
        for name, call in calls.items():
            with pytest.raises(openai.BadRequestError) as err:
                call()
            body = err.value.body
            assert isinstance(body, dict), (name, body)
            assert body["type"] == "invalid_request_error" and body["param"] == where, (name, body)
            assert "not a compaction this gateway made" in body["message"], (name, body)
        # Refused as the request came in: nothing reached a vendor, nothing was billed.
        usage = httpx.get(
            gw.url + "/admin/v1/usage", headers=ADMIN, params={"key_id": created["id"]}
        ).json()["data"]
        assert [u for u in usage if u.get("key_id") == created["id"]] == [], usage
    finally:
        stage.close()
