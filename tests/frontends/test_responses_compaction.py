"""Compaction on the Responses API, on every vendor, with the openai SDK against the in-process
gateway and its emulator: `client.responses.compact` (OpenAI's own endpoint for OpenAI models;
the model's own summary, sealed by the gateway, elsewhere), a `compaction_trigger` item (what
Codex sends an OpenAI provider), and the compaction item sent back on a later turn — to the
same vendor or another — expanded for the vendor that answers. A forged or altered item is
refused; a sealed one opens on any gateway that shares the key (replicas).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway_support import RunningGateway
from tokenrelay.reasoning import compaction

MODELS = ["gpt-4o", "claude-sonnet-4-6", "gemini-2.5-flash", "grok-4.3", "deepseek-chat"]
CONVERSATION: list[Any] = [
    {"role": "user", "content": "Remember the code word PLUM-7 and say hello."},
    {"role": "assistant", "content": "Hello! I will remember PLUM-7."},
    {"role": "user", "content": "Now write a haiku about rivers."},
]
SHELL: Any = {
    "type": "function",
    "name": "shell",
    "description": "Run a command",
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
}


@pytest.fixture(scope="module")
def client(gateway: RunningGateway, api_key: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.proxy + "/v1", api_key=api_key, max_retries=0) as c:
        yield c


def _compaction(output: list[Any]) -> dict[str, Any]:
    items = [i for i in output if i["type"] == "compaction"]
    assert len(items) == 1, output
    return dict(items[0])


@pytest.mark.parametrize("model", MODELS)
def test_compact_endpoint_returns_the_new_conversation(client: openai.OpenAI, model: str) -> None:
    done = client.responses.compact(model=model, input=CONVERSATION, instructions="Be brief.")
    body = done.model_dump(mode="json")
    assert body["object"] == "response.compaction", body
    assert body["usage"]["input_tokens"] > 0 and body["usage"]["output_tokens"] > 0
    # The user's messages as they were, then the compaction.
    users = [i for i in body["output"] if i["type"] == "message"]
    assert [u["role"] for u in users] == ["user", "user"], body["output"]
    item = _compaction(body["output"])
    assert item["encrypted_content"]
    # OpenAI's is OpenAI's own; every other vendor's is the gateway's, sealed.
    assert compaction.is_sealed(item["encrypted_content"]) == (model != "gpt-4o")
    if model != "gpt-4o":
        assert compaction.open_sealed(item["encrypted_content"])  # the model's summary


@pytest.mark.parametrize("model", MODELS)
def test_compaction_trigger_streams_one_compaction_item(client: openai.OpenAI, model: str) -> None:
    """What Codex sends a provider it takes for OpenAI: the trigger last, tools offered, a
    stream whose only output item is the compaction."""
    items = [*CONVERSATION, {"type": "compaction_trigger"}]
    with client.responses.stream(model=model, input=items, tools=[SHELL]) as stream:
        events = list(stream)
        final = stream.get_final_response().model_dump(mode="json")
    added = [e for e in events if e.type == "response.output_item.added"]
    assert [e.item.type for e in added] == ["compaction"], [e.type for e in events]
    assert not [e for e in events if e.type == "response.output_text.delta"]
    assert [i["type"] for i in final["output"]] == ["compaction"], final["output"]
    assert final["usage"]["output_tokens"] > 0


@pytest.mark.parametrize("later", MODELS)
@pytest.mark.parametrize("compactor", MODELS)
def test_a_compaction_goes_on_with_any_model(
    client: openai.OpenAI, gateway: RunningGateway, compactor: str, later: str
) -> None:
    """A conversation compacted by one model continues on another: the gateway's sealed item
    becomes its summary for whichever vendor answers; OpenAI's own goes on to OpenAI only (no
    other vendor can read it, so it is left out there)."""
    done = client.responses.compact(model=compactor, input=CONVERSATION)
    output = done.model_dump(mode="json")["output"]
    follow = [*output, {"role": "user", "content": "What was the code word?"}]
    answer = client.responses.create(model=later, input=follow)
    assert answer.status == "completed" and answer.output_text


def test_a_forged_or_altered_compaction_is_refused(client: openai.OpenAI) -> None:
    done = client.responses.compact(model="claude-sonnet-4-6", input=CONVERSATION)
    blob = _compaction(done.model_dump(mode="json")["output"])["encrypted_content"]
    altered = blob[:-6] + ("AAAAAA" if not blob.endswith("AAAAAA") else "BBBBBB")
    forged = compaction.PREFIX + "gAAAAAB" + "x" * 80
    for bad in (altered, forged):
        with pytest.raises(openai.BadRequestError) as err:
            client.responses.create(
                model="gemini-2.5-flash",
                input=[{"type": "compaction", "encrypted_content": bad}, *CONVERSATION[:1]],
            )
        assert "compaction" in str(err.value), err.value


def test_the_summary_reaches_the_next_vendor(
    gateway: RunningGateway, api_key: str, client: openai.OpenAI
) -> None:
    """The expanded summary is what the next vendor reads: the same words the compacting
    model wrote (here the emulator, whose summary the test reads back from the seal)."""
    done = client.responses.compact(model="grok-4.3", input=CONVERSATION)
    blob = _compaction(done.model_dump(mode="json")["output"])["encrypted_content"]
    summary = compaction.open_sealed(blob)
    # Count tokens the way the vendor would see the request: the summary's text is in it.
    headers = {"authorization": f"Bearer {api_key}"}
    item = {"type": "compaction", "encrypted_content": blob}
    body = {"model": "claude-sonnet-4-6", "input": [item]}
    with_item = httpx.post(
        gateway.proxy + "/v1/responses/input_tokens", json=body, headers=headers, timeout=30
    )
    plain = {"model": "claude-sonnet-4-6", "input": compaction.SUMMARY_PREFIX + summary}
    as_text = httpx.post(
        gateway.proxy + "/v1/responses/input_tokens", json=plain, headers=headers, timeout=30
    )
    assert with_item.status_code == 200 and as_text.status_code == 200, with_item.text
    assert with_item.json()["input_tokens"] == as_text.json()["input_tokens"] > 20


async def test_a_sealed_item_opens_while_its_key_is_installed() -> None:
    """Replicas derive the same key from the shared receipt key: one seals, another opens.
    Several gateways in one process (tests) each install a ring: the newest seals, each opens
    while its gateway runs, and a closed gateway's key opens nothing any more."""
    replica = compaction.install([b"replica key"])
    blob = compaction.seal("the summary", "m")
    other = compaction.install([b"another gateway"])
    try:
        sealed_elsewhere = compaction.seal("x", "m")
        assert compaction.open_sealed(blob) == "the summary"
        assert compaction.open_sealed(sealed_elsewhere) == "x"
    finally:
        await replica.close()
    with pytest.raises(ValueError):
        compaction.open_sealed(blob)
    assert compaction.open_sealed(sealed_elsewhere) == "x"
    # Rotated: the old secret listed after the new one still opens what it sealed.
    rotated = compaction.install([b"new key", b"another gateway"])
    await other.close()
    try:
        assert compaction.open_sealed(sealed_elsewhere) == "x"
        assert compaction.open_sealed(compaction.seal("y", "m")) == "y"
    finally:
        await rotated.close()
    with pytest.raises(ValueError):
        compaction.open_sealed(sealed_elsewhere)
