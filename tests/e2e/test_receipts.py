"""Issue 25, item 3: every request has a receipt signed with the gateway's Ed25519 key — on the
answer when the request asks (`x-tokenrelay-receipt: 1`), and at GET /v1/receipts/{id} — that
the README's snippet alone verifies, that fails after any change, and whose charge
`tokenrelay receipts verify` recomputes from the published prices."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any
from unittest import mock

import anthropic
import httpx
import openai
import pytest
from click.testing import CliRunner
from cryptography.exceptions import InvalidSignature

from backends import BACKENDS, _run, backend
from tokenrelay.billing.receipts import load_signer
from tokenrelay.server.cli import main as cli
from tokenrelay.store.db import create_engine, migrate_sync

README = Path(__file__).resolve().parents[2] / "README.md"
ASK = {"x-tokenrelay-receipt": "1"}  # this answer carries its receipt


@pytest.fixture(scope="module")
def other_api_key(gateway: Any) -> str:
    return str(gateway.create_key("another customer"))


def readme_snippet(gateway: Any, api_key: str) -> Any:
    """The README's receipt example run as written against `gateway` (it makes a call, checks
    that answer's receipt and prints the charge); returns its `verify_receipt`."""
    section = README.read_text().split("### Usage receipts (signed)", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    scope: dict[str, Any] = {}
    env = {"TOKENRELAY_URL": gateway.url, "TOKENRELAY_API_KEY": api_key}
    out = io.StringIO()
    with mock.patch.dict(os.environ, env), contextlib.redirect_stdout(out):
        exec(code.group(1), scope)  # the documented code, nothing of ours
    assert out.getvalue().startswith("charged USD: "), out.getvalue()
    return scope["verify_receipt"]


def public_key(gateway) -> str:
    doc = httpx.get(gateway.url + "/.well-known/tokenrelay-receipts.json").json()
    jwk = doc["keys"][0]
    assert (jwk["kty"], jwk["crv"]) == ("OKP", "Ed25519")
    raw = base64.urlsafe_b64decode(jwk["x"] + "==")
    assert base64.b64decode(doc["public_key_base64"]) == raw
    return str(doc["public_key_base64"])


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def changed_copies(receipt: str) -> list[tuple[str, str]]:
    """The receipt with each claim (and each usage count) changed, its signature kept."""
    payload, signature = receipt.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    out = []
    paths = [(k,) for k in claims if k != "usage"] + [("usage", k) for k in claims["usage"]]
    for path in paths:
        copy = json.loads(json.dumps(claims))
        holder = copy if len(path) == 1 else copy["usage"]
        value = holder[path[-1]]
        holder[path[-1]] = value + 1 if isinstance(value, int) else str(value) + "x"
        body = json.dumps(copy, separators=(",", ":"), sort_keys=True).encode()
        out.append(("/".join(path), b64u(body) + "." + signature))
    return out


def test_a_receipt_verifies_with_the_readme_snippet_and_fails_when_changed(
    gateway, api_key
) -> None:
    client = openai.OpenAI(api_key=api_key, base_url=gateway.proxy + "/v1", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gemini-2.5-flash",
        max_tokens=50,
        messages=[{"role": "user", "content": "Hello"}],
        extra_headers=ASK,
    )
    completion = raw.parse()
    receipt = raw.headers["x-tokenrelay-receipt"]
    # Translated: the body's usage has it too (a pass-through body stays the vendor's own).
    assert (completion.usage.model_extra or {})["receipt"] == receipt
    verify_receipt = readme_snippet(gateway, api_key)
    key = public_key(gateway)
    claims = verify_receipt(receipt, key)
    assert claims["request_id"] == raw.headers["x-request-id"]
    assert claims["model_asked"] == "gemini-2.5-flash" and claims["vendor"] == "gemini"
    assert claims["upstream_request_id"] is None  # Gemini sends no request id header
    assert claims["usage"]["input_tokens"] == completion.usage.prompt_tokens
    assert claims["usage"]["output_tokens"] == completion.usage.completion_tokens
    assert claims["charged_usd"] == raw.headers["x-tokenrelay-cost-usd"]
    copies = changed_copies(receipt)
    assert len(copies) >= 15
    for field, forged in copies:
        with pytest.raises(InvalidSignature):
            verify_receipt(forged, key)
            pytest.fail(f"a receipt with {field} changed verified")
    payload, signature = receipt.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    with pytest.raises(InvalidSignature):
        verify_receipt(payload + "." + flipped, key)


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "claude-sonnet-4-6"])
def test_a_stream_ends_with_its_receipt(gateway, api_key, model: str) -> None:
    client = anthropic.Anthropic(api_key=api_key, base_url=gateway.proxy, max_retries=0)
    with client.messages.stream(
        model=model, max_tokens=50, messages=[{"role": "user", "content": "Hi"}], extra_headers=ASK
    ) as stream:
        deltas = [e for e in stream if e.type == "message_delta"]
    usage = deltas[-1].usage.model_extra or {}
    claims = readme_snippet(gateway, api_key)(usage["receipt"], public_key(gateway))
    assert claims["model_asked"] == model and claims["charged_usd"] == usage["cost_usd"]
    assert claims["usage"]["output_tokens"] == deltas[-1].usage.output_tokens


@pytest.mark.parametrize(
    ("model", "path", "header"),
    [
        ("claude-sonnet-4-6", "/anthropic/v1/messages", "request-id"),
        ("gpt-4o", "/openai/v1/chat/completions", "x-request-id"),
    ],
)
def test_a_receipt_names_the_vendors_own_request_id(
    gateway, api_key, model: str, path: str, header: str
) -> None:
    """The pass-through body reaches the vendor as sent, so the same body sent to the vendor
    (the emulator: ids derive from the body) gets the id the receipt must quote."""
    body = {"model": model, "max_tokens": 30, "messages": [{"role": "user", "content": "Hi"}]}
    client_path = "/v1/messages" if model.startswith("claude") else "/v1/chat/completions"
    auth = {"authorization": f"Bearer {api_key}", "x-api-key": api_key, **ASK}
    r = httpx.post(gateway.proxy + client_path, json=body, headers=auth)
    assert r.status_code == 200, r.text
    direct = httpx.post(
        gateway.emulator_url + path,
        json=body,
        headers={"authorization": "Bearer k", "x-api-key": "k"},
    )
    vendor_id = direct.headers[header]
    claims = readme_snippet(gateway, api_key)(
        r.headers["x-tokenrelay-receipt"], public_key(gateway)
    )
    assert claims["upstream_request_id"] == vendor_id != claims["request_id"]


def test_the_cli_recomputes_the_charge_from_the_published_prices(gateway, api_key) -> None:
    r = httpx.post(
        gateway.proxy + "/v1/chat/completions",
        headers={"authorization": f"Bearer {api_key}", **ASK},
        json={
            "model": "deepseek-chat",
            "max_tokens": 40,
            "messages": [{"role": "user", "content": "Hi"}],
        },
    )
    receipt = r.headers["x-tokenrelay-receipt"]
    ok = CliRunner().invoke(cli, ["receipts", "verify", receipt, "--url", gateway.url])
    assert ok.exit_code == 0, ok.output
    assert "signature: valid" in ok.output and "matches the published prices" in ok.output
    _, forged = next(c for c in changed_copies(receipt) if c[0] == "charged_nano")
    bad = CliRunner().invoke(cli, ["receipts", "verify", forged, "--url", gateway.url])
    assert bad.exit_code != 0 and "INVALID" in bad.output


@pytest.mark.parametrize("model", ["gpt-4o", "claude-haiku-4-5"])
def test_an_answer_not_asking_carries_no_receipt_and_any_is_fetched_by_its_id(
    gateway, api_key, other_api_key, model: str
) -> None:
    """Signing costs a quarter of a request's CPU: only answers that ask carry one. Every
    request's receipt is at GET /v1/receipts/{request_id}, the same bytes the answer would have
    carried (signatures are deterministic), to the key's account only."""
    client = openai.OpenAI(api_key=api_key, base_url=gateway.proxy + "/v1", max_retries=0)
    ask = {"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]}
    plain = client.chat.completions.with_raw_response.create(**ask)
    assert "x-tokenrelay-receipt" not in plain.headers
    assert "receipt" not in (plain.parse().usage.model_extra or {})
    assert plain.headers["x-tokenrelay-cost-usd"]
    asked = client.chat.completions.with_raw_response.create(**ask, extra_headers=ASK)
    auth = {"authorization": f"Bearer {api_key}"}
    for raw in (plain, asked):
        rid = raw.headers["x-request-id"]
        got = httpx.get(f"{gateway.proxy}/v1/receipts/{rid}", headers=auth)
        assert got.status_code == 200, got.text
        claims = readme_snippet(gateway, api_key)(got.json()["receipt"], public_key(gateway))
        assert claims["request_id"] == rid and claims["model_asked"] == model
        assert claims["charged_usd"] == raw.headers["x-tokenrelay-cost-usd"]
        assert got.json()["claims"]["charged_nano"] == claims["charged_nano"]
    assert got.json()["receipt"] == asked.headers["x-tokenrelay-receipt"]
    # another account's key, an unknown id, no key: nothing said about the request
    other = {"authorization": f"Bearer {other_api_key}"}
    for headers, rid, status in [
        (other, asked.headers["x-request-id"], 404),
        (auth, "req_does_not_exist", 404),
        ({}, asked.headers["x-request-id"], 401),
    ]:
        r = httpx.get(f"{gateway.proxy}/v1/receipts/{rid}", headers=headers)
        assert r.status_code == status and "receipt" not in r.json(), r.text
        assert r.json()["error"]["message"]


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_every_process_signs_with_the_one_key_in_the_database(
    backend_name: str, tmp_path: Path
) -> None:
    with backend(backend_name, tmp_path) as b:
        migrate_sync(b.database_url)

        async def kids() -> list[str]:
            engines = [create_engine(b.database_url) for _ in range(3)]
            try:
                signers = [await load_signer(None, e) for e in engines]
                return [s.kid for s in signers]
            finally:
                for e in engines:
                    await e.dispose()

        first, again = _run(kids()), _run(kids())
        assert len(set(first + again)) == 1
