"""What a customer must never see (issue 20, holes 8 and 9): the business's metrics, the
reseller's upstream cost, and — with a production database — emulated replies passed off as a
vendor's when an operator forgot a vendor key."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

from backends import _pg, _run
from gateway_support import ADMIN_TOKEN, RunningGateway, start_gateway


def test_metrics_need_the_metrics_or_admin_token(gateway: RunningGateway, api_key: str) -> None:
    assert httpx.get(gateway.url + "/metrics").status_code == 401
    # A customer's own key is no metrics token.
    r = httpx.get(gateway.url + "/metrics", headers={"authorization": f"Bearer {api_key}"})
    assert r.status_code == 401 and "tokenrelay_cost" not in r.text
    r = httpx.get(gateway.url + "/metrics", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 200 and "tokenrelay_requests_total" in r.text


def test_metrics_token_of_its_own_and_off_without_any(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    gw, thread = start_gateway(tmp_path / "a", metrics_token="scrape-secret")
    off, off_thread = start_gateway(tmp_path / "b", admin_token=None)
    try:
        ok = httpx.get(gw.url + "/metrics", headers={"authorization": "Bearer scrape-secret"})
        assert ok.status_code == 200
        assert httpx.get(off.url + "/metrics").status_code == 404
        bearer = {"authorization": "Bearer anything"}
        assert httpx.get(off.url + "/metrics", headers=bearer).status_code == 404
    finally:
        for g, t in ((gw, thread), (off, off_thread)):
            g.server.should_exit = True
            t.join(timeout=10)


def test_the_account_endpoint_shows_no_upstream_cost(gateway: RunningGateway, api_key: str) -> None:
    claude = anthropic.Anthropic(api_key=api_key, base_url=gateway.proxy, max_retries=0)
    claude.messages.create(
        model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    r = httpx.get(gateway.proxy + "/v1/account", headers={"x-api-key": api_key})
    assert r.status_code == 200
    text = r.text
    assert r.json()["recent_usage"], text
    for private in ("upstream_cost", "price_version", "fast_path", "deployment", "account_id"):
        assert private not in text, private


@pytest.fixture
def production_db() -> Iterator[str]:
    name = "tokenrelay_prod_" + uuid.uuid4().hex[:10]
    _run(_pg(f'CREATE DATABASE "{name}"'))
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    _run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_a_production_database_never_serves_emulated_replies(
    tmp_path: Path, production_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default (emulate=auto) with PostgreSQL: a vendor without a key is unavailable, its
    models answer 503 and /readyz names it; only an explicit opt-in emulates."""
    for var in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "XAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-real-looking")  # one vendor has a key
    gw, thread = start_gateway(tmp_path, database_url=production_db, emulate="auto")
    try:
        key = gw.create_key("prod")
        claude = anthropic.Anthropic(api_key=key, base_url=gw.proxy, max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as refused:
            claude.messages.create(
                model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "x"}]
            )
        assert refused.value.status_code == 503
        assert "emulat" not in str(refused.value).lower()
        ready = httpx.get(gw.url + "/readyz").json()
        assert ready["checks"]["vendors"]["anthropic"] == "unavailable: no API key"
        assert ready["checks"]["vendors"]["deepseek"] == "ok"
        assert "emulated" not in httpx.get(gw.url + "/docs").text.lower()
    finally:
        gw.server.should_exit = True
        thread.join(timeout=10)
