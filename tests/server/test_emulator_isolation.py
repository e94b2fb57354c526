"""The vendor emulator is never reachable on the gateway's port: it runs on its own, local one."""

from __future__ import annotations

import httpx

from gateway_support import RunningGateway


def test_emulator_is_not_served_on_the_gateway_port(gateway: RunningGateway) -> None:
    stats = httpx.get(gateway.url + "/emulator/_stats")
    completion = httpx.post(
        gateway.url + "/emulator/openai/v1/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "free?"}]},
    )
    for r in (stats, completion):
        assert r.status_code == 404
        assert r.json()["error"]["type"] == "not_found_error"


def test_emulator_runs_locally_on_its_own_port(gateway: RunningGateway, api_key: str) -> None:
    emulator = httpx.URL(gateway.emulator_url)
    assert emulator.host == "127.0.0.1"
    assert emulator.port != httpx.URL(gateway.url).port
    before = httpx.get(gateway.emulator_url + "/_stats").json()
    r = httpx.post(
        gateway.proxy + "/v1/chat/completions",
        headers={"authorization": f"Bearer {api_key}"},
        json={"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 200, r.text
    assert "data: [DONE]" in r.text
    after = httpx.get(gateway.emulator_url + "/_stats").json()
    assert after["streams_completed"] > before["streams_completed"]
