"""Fuzzing the Responses API and the Gemini API through the live gateway: arbitrary JSON, and
real client bodies (Codex CLI's and Gemini CLI's captured requests) with one field replaced by
any JSON value. Whatever comes in, the answer is never a 5xx, and an error is in the client
format's own shape (Responses: OpenAI's `{"error": {"message", "type"}}`; Gemini:
`{"error": {"code", "message", "status"}}`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from fuzz_support import EXAMPLES, TALLY, Probe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FIXTURES = Path(__file__).parents[1] / "fixtures"
CODEX = orjson.loads((FIXTURES / "codex" / "request_tool_turn.json").read_bytes())
GEMINI_CLI = orjson.loads((FIXTURES / "gemini_cli" / "tool_turn.json").read_bytes())

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
pytestmark = pytest.mark.timeout(0 if EXAMPLES > 500 else 300)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what orjson writes
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON body a value sits (dict keys and list indexes)."""
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _replaced(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    body = orjson.loads(orjson.dumps(body))
    target = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return body


def _send(probe: Probe, api: str, model: str, body: bytes) -> None:
    if api == "responses":
        r = probe.client.post("/api/proxy/v1/responses", content=body)
    else:
        path = f"/api/proxy/v1beta/models/{model}:streamGenerateContent?alt=sse"
        r = probe.client.post(path, content=body, headers={"x-goog-api-key": _key(probe)})
    TALLY.bodies += 1
    TALLY.statuses[r.status_code] += 1
    if r.status_code >= 500:
        TALLY.server_errors.append(f"{api} {r.status_code} {body[:200]!r} → {r.text[:200]}")
    assert r.status_code < 500, (api, body[:500], r.text[:500])
    if r.status_code >= 400:
        err = r.json()["error"]
        if api == "responses":
            assert isinstance(err["message"], str) and isinstance(err["type"], str), err
        else:
            assert err["code"] == r.status_code and isinstance(err["status"], str), err


def _key(probe: Probe) -> str:
    return str(probe.client.headers["x-api-key"])


@pytest.mark.parametrize("api", ["responses", "gemini"])
@FUZZ
@given(data=st.data())
def test_arbitrary_json(probe: Probe, api: str, data: st.DataObject) -> None:
    model = data.draw(st.sampled_from(probe.models))
    _send(probe, api, model, orjson.dumps(data.draw(json_values)))


@pytest.mark.parametrize("api", ["responses", "gemini"])
@FUZZ
@given(data=st.data())
def test_real_client_body_with_one_field_replaced(
    probe: Probe, api: str, data: st.DataObject
) -> None:
    model = data.draw(st.sampled_from(probe.models))
    body = {**CODEX, "model": model} if api == "responses" else GEMINI_CLI
    path = data.draw(st.sampled_from(_paths(body)))
    _send(probe, api, model, orjson.dumps(_replaced(body, path, data.draw(json_values))))
