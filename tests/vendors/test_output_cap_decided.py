"""The output cap the vendor receives is the one the hold prices.

Every adapter reports, on the call it builds, the output cap it put in the body
(`UpstreamRequest.max_output`; None: the body sets none and the model's own limit applies); the
relay holds exactly that. Adapters may raise what the client asked (Anthropic: a thinking
budget below the API's floor), so the property is checked on the body itself, for any request.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_support import ADMIN_TOKEN, RunningGateway
from tokenrelay import ir
from tokenrelay.vendors import BUILTIN

thinking = st.one_of(
    st.none(),
    st.builds(
        ir.ThinkingConfig,
        enabled=st.sampled_from([None, True, False]),
        budget_tokens=st.one_of(st.none(), st.integers(1, 100_000)),
        effort=st.sampled_from([None, "none", "minimal", "low", "medium", "high", "xhigh", "max"]),
        adaptive=st.booleans(),
    ),
)


def _cap_in_body(body: dict[str, Any]) -> int | None:
    for key in ("max_tokens", "max_completion_tokens"):
        if key in body:
            return int(body[key])
    gen = body.get("generationConfig", {})
    return gen.get("maxOutputTokens")


@settings(max_examples=400, deadline=None)
@given(
    spec=st.sampled_from(BUILTIN),
    max_tokens=st.one_of(st.none(), st.integers(1, 200_000)),
    cfg=thinking,
    stream=st.booleans(),
)
def test_the_call_reports_the_cap_its_body_carries(
    spec: Any, max_tokens: int | None, cfg: ir.ThinkingConfig | None, stream: bool
) -> None:
    req = ir.Request(
        model="m",
        messages=[ir.Message("user", [ir.Text("hi")])],
        max_tokens=max_tokens,
        thinking=cfg,
        stream=stream,
    )
    spec.adapter.finalize(req, 8192)
    call = spec.adapter.build_request(req, "m", api_key="k", base_url="http://upstream")
    sent = _cap_in_body(orjson.loads(call.body))
    assert sent == call.max_output
    if max_tokens is not None:
        assert sent is not None and sent >= max_tokens  # raised, never lowered


def test_a_thinking_raise_is_held(gateway: RunningGateway) -> None:
    """OpenAI-format client, Claude, reasoning on, max_completion_tokens 100: Anthropic's
    thinking floor (1,024) makes the vendor's max_tokens 1,124; the hold must cover it."""
    r = httpx.post(
        gateway.url + "/admin/v1/keys",
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        json={"name": "raise", "credits_usd": "0"},
    )
    key = r.json()["key"]
    models = httpx.get(
        gateway.proxy + "/v1/models", headers={"authorization": f"Bearer {key}"}
    ).json()
    price = next(m for m in models["data"] if m["id"] == "claude-haiku-4-5")["pricing"]
    r = httpx.post(
        gateway.proxy + "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={
            "model": "claude-haiku-4-5",
            "reasoning_effort": "high",
            "max_completion_tokens": 100,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert r.status_code == 402
    held = float(r.json()["error"]["message"].split("may cost up to $")[1].split(" ")[0])
    assert held >= 1_124 * float(price["output_per_mtok"]) / 1e6
