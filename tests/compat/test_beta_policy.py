"""Issue 25, item 5: what each vendor does with `anthropic-beta` flags and fields it has no model
for (vendors/beta_policy.py), as the calls it builds show; unknown flags are handled the same
way every time and logged; `/compatibility.json` publishes the table."""

from __future__ import annotations

import logging

import httpx
import orjson
import pytest

from tokenrelay import ir
from tokenrelay.vendors import BUILTIN, beta_policy

UNKNOWN = "made-up-feature-2099-01-01"
FLAGS = f"claude-code-20250219, interleaved-thinking-2025-05-14,{UNKNOWN}"


def _request(extra_field: str) -> ir.Request:
    return ir.Request(
        "m",
        [ir.Message("user", [ir.Text("hi")])],
        max_tokens=100,
        extras={extra_field: {"x": 1}},
        extras_format="anthropic",
        passthrough_headers={"anthropic-beta": FLAGS, "anthropic-dangerous-x": "1"},
    )


def _call(vendor: str, field: str) -> tuple[dict[str, str], dict[str, object]]:
    spec = next(s for s in BUILTIN if s.name == vendor)
    up = spec.adapter.build_request(_request(field), "m", api_key="k", base_url="http://v")
    return up.headers, orjson.loads(up.body)


def test_anthropic_gets_every_flag_and_field_as_sent_and_unknown_flags_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, beta_policy.log.name)
    headers, body = _call("anthropic", "first_field")
    assert headers["anthropic-beta"] == FLAGS and headers["anthropic-dangerous-x"] == "1"
    assert body["first_field"] == {"x": 1}
    assert [r.getMessage() for r in caplog.records] == [
        f"anthropic: unknown anthropic-beta flags forwarded: {UNKNOWN}"
    ]
    caplog.clear()
    _call("anthropic", "first_field")  # reported once per process, not on every request
    assert caplog.records == []


@pytest.mark.parametrize("vendor", ["openai", "gemini", "xai", "deepseek"])
def test_other_vendors_never_get_anthropic_headers_and_stripping_is_logged(
    vendor: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, beta_policy.log.name)
    field = f"field_for_{vendor}"
    headers, body = _call(vendor, field)
    assert not [h for h in headers if h.startswith("anthropic-")]
    assert field not in orjson.dumps(body).decode()
    logged = [r.getMessage() for r in caplog.records]
    assert f"{vendor}: unknown anthropic-beta flags stripped: {UNKNOWN}" in logged
    assert f"{vendor}: anthropic fields stripped: {field}" in logged
    # The known flags are the table's business, not a warning.
    assert not [m for m in logged if "interleaved" in m or "claude-code" in m]


def test_every_known_flag_has_one_action_per_vendor() -> None:
    doc = beta_policy.document([s.name for s in BUILTIN])
    flags = doc["flags"]
    assert isinstance(flags, dict) and set(flags) == set(beta_policy.FLAGS)
    for flag, row in flags.items():
        actions = {v: cell["action"] for v, cell in row["vendors"].items()}
        assert actions["anthropic"] == "forward", flag
        assert {a for v, a in actions.items() if v != "anthropic"} <= {"strip", "translate"}
    assert beta_policy.action("openai", UNKNOWN) == "strip"
    assert beta_policy.action("anthropic", UNKNOWN) == "forward"


def test_compatibility_json_publishes_the_policy(gateway) -> None:
    doc = httpx.get(gateway.url + "/compatibility.json").json()
    assert doc["anthropic_beta"] == beta_policy.document([s.name for s in BUILTIN])
    page = httpx.get(gateway.url + "/compatibility").text
    assert "interleaved-thinking-2025-05-14" in page and "unknown flags" in page.lower()
