"""Fuzzing the proxy routes with hypothesis against a live gateway and its emulated vendors.

Property, for every body: never a 5xx; every error is JSON in the client's format with the
type its status calls for; a stream that started ends with its terminator or an error event.
Bodies go through httpx because the official SDKs cannot send malformed ones.
"""

from __future__ import annotations

import orjson
import pytest
from fuzz_strategies import Wire, in_field, raw_bytes, spliced
from fuzz_support import EXAMPLES, ROUTES, Probe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # every run explores afresh; failures print their body
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
pytestmark = pytest.mark.timeout(0 if EXAMPLES > 500 else 300)


@FUZZ
@given(data=st.data())
def test_arbitrary_bytes_and_json(probe, data) -> None:
    route = data.draw(st.sampled_from(sorted(ROUTES)))
    probe.send(route, data.draw(raw_bytes))


def requests(probe: Probe, route: str, *, wild: bool) -> st.SearchStrategy[dict]:
    wire = Wire(probe.models, wild=wild)
    return wire.openai() if route == "chat" else wire.anthropic(counting=route == "count_tokens")


@FUZZ
@given(data=st.data())
def test_plausible_bodies_with_hostile_fragments(probe, data) -> None:
    route = data.draw(st.sampled_from(sorted(ROUTES)))
    how = data.draw(st.sampled_from([spliced, in_field]))
    probe.send(route, data.draw(how(requests(probe, route, wild=False))))


# wild: any field may hold any JSON value; tame: well-typed, so most reach a vendor.
@pytest.mark.parametrize("wild", [True, False], ids=["wild", "tame"])
@pytest.mark.parametrize("route", sorted(ROUTES))
@FUZZ
@given(data=st.data())
def test_requests(probe, route, wild, data) -> None:
    probe.send(route, orjson.dumps(data.draw(requests(probe, route, wild=wild))))
