"""Fixtures the hold tests share."""

from __future__ import annotations

import httpx
import pytest

from gateway_support import ADMIN_TOKEN, RunningGateway


@pytest.fixture(scope="module")
def broke_key(gateway: RunningGateway) -> str:
    """A key without credit: the gateway shows its hold in the 402 and calls no vendor."""
    r = httpx.post(
        gateway.url + "/admin/v1/keys",
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        json={"name": "broke", "credits_usd": "0"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["key"])
