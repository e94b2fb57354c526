"""Upstream pools: several deployments of a vendor (`[[deployments.<vendor>]]`), spread by
least in-flight, cooled down when they fail, taken out when their key is refused, drained and
restored by the admin API; retries before the first byte; fallbacks to another model (and
vendor) billed at its price; session affinity for the vendors' prompt caches.

Driven with the official SDKs against the emulator's deployment paths (`/_d/<name>/...`, with
fault triggers `~503`, `~429r1`, `~401` and POST /_faults) and a port nothing listens on (a
killed deployment). `pytest -s` prints the figures of the mixed-fault run and the cache-read
share with and without affinity.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from gateway_support import (
    ADMIN_TOKEN,
    RunningGateway,
    free_port,
    metric_samples,
    refused_port,
    start_gateway,
)

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
MODEL = "claude-haiku-4-5"
FALLBACK = "gpt-4o-mini"


def _deployments(emulator: str, dead: str, names: dict[str, str]) -> str:
    """`names`: deployment name -> path under the emulator ("" for a dead one)."""
    out = []
    for name, path in names.items():
        base = f"{emulator}{path}" if path else dead
        env = f"POOL_KEY_{name.upper().replace('-', '_')}"
        out.append(
            f'[[deployments.anthropic]]\nname = "{name}"\nbase_url = "{base}"\n'
            f'api_key_env = "{env}"\nregion = "r-{name}"\n'
        )
    return "\n".join(out)


@pytest.fixture
def pooled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A gateway factory: `make(names, fallbacks=..., keys=...)` -> RunningGateway."""
    started: list[tuple[RunningGateway, Any]] = []
    refused = contextlib.ExitStack()

    def make(
        names: dict[str, str],
        *,
        fallbacks: bool = False,
        keys: dict[str, str] | None = None,
        **settings: object,
    ) -> RunningGateway:
        # The refused port first: free_port() cannot then hand out the same one.
        dead = f"http://127.0.0.1:{refused.enter_context(refused_port())}/anthropic"
        port = free_port()
        emulator = f"http://127.0.0.1:{port}"
        text = _deployments(emulator, dead, names)
        if fallbacks:
            text += f'\n[fallbacks]\n"{MODEL}" = ["{FALLBACK}"]\n'
        path = tmp_path / f"catalog-{port}.toml"
        path.write_text(text)
        for name in names:
            env = f"POOL_KEY_{name.upper().replace('-', '_')}"
            monkeypatch.setenv(env, (keys or {}).get(name, f"sk-pool-{name}"))
        (tmp_path / str(port)).mkdir()
        gw, thread = start_gateway(
            tmp_path / str(port),
            emulate="auto",
            emulator_port=port,
            catalog_path=str(path),
            upstream_cooldown_s=0.5,
            **settings,
        )
        started.append((gw, thread))
        return gw

    with refused:
        yield make
        for gw, thread in started:
            gw.server.should_exit = True
            thread.join(timeout=10)


def _client(gw: RunningGateway, key: str, **headers: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key=key, base_url=gw.proxy, max_retries=0, default_headers=headers or None
    )


def _deployment_states(gw: RunningGateway) -> dict[str, dict[str, Any]]:
    r = httpx.get(gw.url + "/admin/v1/deployments", headers=ADMIN)
    assert r.status_code == 200, r.text
    return {d["id"]: d for d in r.json()["data"]}


def _usage(gw: RunningGateway, want: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        r = httpx.get(gw.url + "/admin/v1/usage", headers=ADMIN, params={"limit": 1000})
        rows = r.json()["data"]
        if len(rows) >= want or time.monotonic() > deadline:
            return list(rows)
        time.sleep(0.1)


def _served_by(gw: RunningGateway) -> list[str | None]:
    r = httpx.get(gw.emulator_url + "/_requests")
    return [q.get("deployment") for q in r.json()["data"] if q["method"] == "POST"]


def _prompt(u: Any) -> int:
    """Every prompt token an Anthropic usage block reports (fresh, cache read, cache write)."""
    return int(
        u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0)
    )


def _ask(client: anthropic.Anthropic, text: str, stream: bool = False) -> tuple[Any, Any]:
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": text}],
    }
    if stream:
        with client.messages.stream(**kwargs) as s:
            msg = s.get_final_message()
        return msg, None
    raw = client.messages.with_raw_response.create(**kwargs)
    return raw.parse(), raw.headers


# ------------------------------------------------------------------------------------------


def test_mixed_faults_run_prints_figures(pooled: Any, tmp_path: Path) -> None:
    """3 deployments: `a` healthy, `b` answers 429 (retry-after 1), `c` killed. Every request
    is served (no client-visible error), failed attempts are retried on another deployment and
    never billed; with `a` drained too, requests fall back to another vendor's model, billed at
    its price. Prints the figures."""
    gw = pooled(
        {"a": "/_d/a/anthropic", "b": "/_d/b~429r1/anthropic", "c": ""},
        fallbacks=True,
        upstream_retries=3,
    )
    key = gw.create_key("pools")
    client = _client(gw, key)
    results: list[tuple[bool, Any]] = []

    def one(i: int) -> tuple[bool, Any]:
        try:
            msg, _ = _ask(client, f"[[words:{5 + i % 7}]] request {i}", stream=i % 4 == 3)
            return True, msg
        except anthropic.APIError as exc:
            return False, exc

    with ThreadPoolExecutor(8) as pool:
        results += list(pool.map(one, range(60)))
    states = _deployment_states(gw)
    assert states["anthropic/c"]["failures"] >= 1
    assert states["anthropic/b"]["failures"] >= 1
    assert states["anthropic/a"]["served"] >= 50

    # Phase 2: the last healthy deployment drained -> the fallback model answers.
    r = httpx.post(gw.url + "/admin/v1/deployments/anthropic/a/drain", headers=ADMIN)
    assert r.status_code == 200 and r.json()["state"] == "drained"
    raw = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=32, messages=[{"role": "user", "content": "[[words:4]] hi"}]
    )
    assert raw.headers["x-tokenrelay-model"] == FALLBACK
    assert raw.headers["x-tokenrelay-fallback-from"] == MODEL
    assert raw.parse().model == FALLBACK
    with ThreadPoolExecutor(4) as pool:
        results += list(pool.map(one, range(60, 80)))
    # Monitoring sees it: the drained deployment down, the fallbacks counted by the model asked.
    metrics = metric_samples(gw.url)
    up = "tokenrelay_deployment_up"
    assert metrics[(up, (("deployment", "a"), ("state", "drained"), ("vendor", "anthropic")))] == 0
    assert metrics[("tokenrelay_fallbacks_total", (("model", MODEL),))] >= 21
    assert (
        metrics[
            ("tokenrelay_deployment_failures_total", (("deployment", "c"), ("vendor", "anthropic")))
        ]
        >= 1
    )
    # The client may opt out: it then hears the deployments' own failure.
    with pytest.raises(anthropic.APIStatusError) as info:
        _client(gw, key, **{"x-tokenrelay-no-fallback": "1"}).messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "no fallback"}]
        )
    assert info.value.status_code in (429, 502, 503)
    r = httpx.post(gw.url + "/admin/v1/deployments/anthropic/a/restore", headers=ADMIN)
    assert r.json()["state"] == "healthy"

    ok = [m for good, m in results if good]
    errors = [m for good, m in results if not good]
    rows = _usage(gw, len(results) + 2)
    billed = [u for u in rows if Decimal(u["cost_usd"]) > 0]
    fallbacks = [u for u in rows if u["model"] == FALLBACK]
    retries = sum(u["attempts"] - 1 for u in rows)
    answers = [*ok, raw.parse()]
    delivered_in = sum(_prompt(m.usage) for m in answers)
    delivered_out = sum(m.usage.output_tokens for m in answers)
    billed_in = sum(
        u["input_tokens"] + u["cache_read_tokens"] + u["cache_write_tokens"] for u in billed
    )
    billed_out = sum(u["output_tokens"] for u in billed)
    print(
        f"\npools run: requests={len(results) + 1} served={len(ok) + 1} "
        f"client_errors={len(errors)} retries={retries} fallbacks={len(fallbacks)} "
        f"billed_records={len(billed)} billed_tokens=({billed_in},{billed_out}) "
        f"delivered_tokens=({delivered_in},{delivered_out})"
    )
    print("deployments:", {k: (v["state"], v["served"], v["failures"]) for k, v in states.items()})
    assert not errors, errors[:3]
    assert len(billed) == len(ok) + 1  # one billed record per answer; failed attempts free
    assert (billed_in, billed_out) == (delivered_in, delivered_out)
    assert retries > 0 and fallbacks
    # The fallback is billed at its own price.
    fb = fallbacks[0]
    assert fb["model_asked"] == MODEL and fb["vendor"] == "openai"


def test_key_refused_deployment_is_removed_not_retried(pooled: Any, tmp_path: Path) -> None:
    """A deployment whose key the vendor refuses (401) is taken out after one attempt and
    reported; the requests go on, on the other deployment."""
    gw = pooled({"good": "/_d/good/anthropic", "bad": "/_d/bad/anthropic"}, keys={"bad": "bad-1"})
    client = _client(gw, gw.create_key())
    for i in range(12):
        msg, _ = _ask(client, f"[[words:3]] key {i}")
        assert msg.content
    states = _deployment_states(gw)
    assert states["anthropic/bad"]["state"] == "removed"
    assert "401" in states["anthropic/bad"]["removed_reason"]
    assert states["anthropic/bad"]["failures"] == 1  # never retried in a loop
    assert _served_by(gw).count("bad") == 1
    # Restored by the operator: it is tried again (and refused again, once).
    httpx.post(gw.url + "/admin/v1/deployments/anthropic/bad/restore", headers=ADMIN)
    for i in range(4):
        _ask(client, f"[[words:3]] again {i}")
    assert _deployment_states(gw)["anthropic/bad"]["failures"] == 2


def test_cooldown_then_probed_back_in(pooled: Any, tmp_path: Path) -> None:
    """A deployment that answers 503 is cooled down (requests go elsewhere, none fails), and
    once it recovers a probe brings it back."""
    gw = pooled({"x": "/_d/x/anthropic", "y": "/_d/y/anthropic"})
    client = _client(gw, gw.create_key())
    httpx.post(gw.emulator_url + "/_faults", json={"deployment": "y", "status": 503})
    for i in range(10):
        _ask(client, f"[[words:3]] cool {i}")
    assert _deployment_states(gw)["anthropic/y"]["state"] in ("cooling", "healthy")
    y_attempts = _served_by(gw).count("y")
    assert 1 <= y_attempts <= 3  # cooled down, not hammered
    httpx.post(gw.emulator_url + "/_faults", json={"deployment": "y", "status": 0})
    time.sleep(2.5)  # past the backoff (0.5 s doubling, with jitter)
    for i in range(10):
        _ask(client, f"[[words:3]] back {i}")
    states = _deployment_states(gw)
    assert states["anthropic/y"]["state"] == "healthy"
    assert states["anthropic/y"]["served"] >= 3


def test_weights_spread_sequential_traffic(pooled: Any, tmp_path: Path) -> None:
    """Without a conversation key to follow, light sequential traffic alternates."""
    gw = pooled({"p": "/_d/p/anthropic", "q": "/_d/q/anthropic"}, upstream_affinity=False)
    client = _client(gw, gw.create_key())
    for i in range(20):
        _ask(client, f"[[words:2]] spread {i}")
    served = _deployment_states(gw)
    assert served["anthropic/p"]["served"] == served["anthropic/q"]["served"] == 10


def _conversation_run(gw: RunningGateway, sessions: int, turns: int, header: bool) -> float:
    key = gw.create_key(f"cache-{header}")
    read = total = 0
    for s in range(sessions):
        headers = {"x-claude-code-session-id": f"session-{s}"} if header else {}
        client = _client(gw, key, **headers)
        history: list[dict[str, Any]] = []
        for t in range(turns):
            history.append(
                {"role": "user", "content": f"[[words:20]] session {s} turn {t}: " + "ctx " * 60}
            )
            msg = client.messages.create(
                model=MODEL,
                max_tokens=64,
                system="You are a careful assistant. " * 20,
                messages=history,
            )
            history.append({"role": "assistant", "content": msg.content[0].text})  # type: ignore[union-attr]
            u = msg.usage
            read += u.cache_read_input_tokens or 0
            total += u.input_tokens + (u.cache_read_input_tokens or 0)
            total += u.cache_creation_input_tokens or 0
    return read / total


def test_affinity_keeps_conversations_on_their_cache(pooled: Any, tmp_path: Path) -> None:
    """3 healthy deployments, each with its own prompt cache (the emulator's `/_d/<name>`):
    with affinity a conversation stays where its prefix is cached."""
    names = {"d1": "/_d/d1/anthropic", "d2": "/_d/d2/anthropic", "d3": "/_d/d3/anthropic"}
    with_affinity = _conversation_run(pooled(names), sessions=6, turns=6, header=True)
    names = {"e1": "/_d/e1/anthropic", "e2": "/_d/e2/anthropic", "e3": "/_d/e3/anthropic"}
    without = _conversation_run(
        pooled(names, upstream_affinity=False), sessions=6, turns=6, header=True
    )
    print(f"\ncache-read share: with affinity {with_affinity:.1%}, without {without:.1%}")
    assert with_affinity > without + 0.2
