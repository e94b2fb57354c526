"""Credential throttles an outsider cannot turn against the owner (issue 20, items 5 and 11):
sign-in failures count per (client IP, account), the client IP comes from X-Forwarded-For only
through a trusted proxy, wrong admin tokens and redemption codes are slowed too, and with Redis
two replicas count as one."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from portal_support import Browser

from backends import backend
from gateway_support import ADMIN_TOKEN, RunningGateway, served

PASSWORD = "correct horse battery"
WRONG = "wrong password!!"


def _gateway(tmp: Path, **overrides: object) -> Iterator[RunningGateway]:
    yield from served(
        tmp, session_secret="throttle-secret-0123456789", signup_per_ip_hour=1000, **overrides
    )


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    yield from _gateway(tmp_path_factory.mktemp("throttle"), signup_credit_usd=Decimal("1.00"))


def from_ip(b: Browser, ip: str) -> Browser:
    """The browser as seen through the trusted proxy (the gateway's peer is 127.0.0.1)."""
    b.http.headers["x-forwarded-for"] = ip
    return b


def test_an_outsider_failing_sign_ins_does_not_lock_the_owner_out(gw: RunningGateway) -> None:
    from_ip(Browser(gw.url), "198.51.100.1").sign_up("owner@example.com")
    attacker = from_ip(Browser(gw.url), "203.0.113.66")
    codes = [
        attacker.post("/login", {"email": "owner@example.com", "password": WRONG}).status_code
        for _ in range(60)
    ]
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}, codes
    # The owner, from their own address, signs in at once; so does everyone else.
    owner = from_ip(Browser(gw.url), "198.51.100.1")
    r = owner.post("/login", {"email": "owner@example.com", "password": PASSWORD})
    assert r.status_code == 200 and r.url.path == "/dashboard"
    from_ip(Browser(gw.url), "198.51.100.2").sign_up("bystander@example.com")
    bystander = from_ip(Browser(gw.url), "198.51.100.2")
    r = bystander.post("/login", {"email": "bystander@example.com", "password": PASSWORD})
    assert r.status_code == 200 and r.url.path == "/dashboard"


def test_one_address_guessing_many_accounts_is_slowed(gw: RunningGateway) -> None:
    stuffer = from_ip(Browser(gw.url), "203.0.113.77")
    codes = [
        stuffer.post("/login", {"email": f"victim{i}@example.com", "password": WRONG}).status_code
        for i in range(60)
    ]
    assert codes[-1] == 429 and 401 in codes, codes


def test_forwarded_for_counts_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    # The gateway's peer (127.0.0.1) is not the configured proxy: X-Forwarded-For is a lie.
    for gw in _gateway(tmp_path, trusted_proxies="192.0.2.10"):
        b = Browser(gw.url)
        codes = []
        for i in range(60):
            b.http.headers["x-forwarded-for"] = f"10.1.{i}.1"
            r = b.post("/login", {"email": f"stuffed{i}@example.com", "password": WRONG})
            codes.append(r.status_code)
        assert codes[-1] == 429, codes


def test_wrong_admin_tokens_are_slowed_per_address(gw: RunningGateway) -> None:
    def keys(token: str, ip: str) -> int:
        headers = {"authorization": f"Bearer {token}", "x-forwarded-for": ip}
        return httpx.get(gw.url + "/admin/v1/keys", headers=headers).status_code

    codes = [keys(f"guess-{i}", "203.0.113.88") for i in range(30)]
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}, codes
    # The right token passes even from the guessing address (a NAT or the proxy every client
    # shares must not lock the operator out); only wrong guesses wait.
    assert keys(ADMIN_TOKEN, "203.0.113.88") == 200
    assert keys(ADMIN_TOKEN, "198.51.100.9") == 200  # the operator's does not


def test_wrong_redemption_codes_are_slowed(gw: RunningGateway) -> None:
    b = from_ip(Browser(gw.url), "203.0.113.99")
    b.sign_up("codes@example.com")
    codes = [
        b.post("/dashboard/redeem", {"code": f"TR-{i:020d}"}, page="/dashboard").status_code
        for i in range(20)
    ]
    assert codes[:5] == [400] * 5 and set(codes[5:]) == {429}, codes


def test_two_replicas_on_redis_count_sign_in_failures_together() -> None:
    with tempfile.TemporaryDirectory() as tmp, backend("postgres+redis", tmp) as store:
        shared = {"database_url": store.database_url, "redis_url": store.redis_url}
        (Path(tmp) / "a").mkdir()
        (Path(tmp) / "b").mkdir()
        first = _gateway(Path(tmp) / "a", **shared)
        second = _gateway(Path(tmp) / "b", **shared)
        a, b = next(first), next(second)
        from_ip(Browser(a.url), "198.51.100.50").sign_up("replicas@example.com")
        tries = [from_ip(Browser(gw.url), "203.0.113.50") for gw in (a, b) * 4]
        codes = [
            t.post("/login", {"email": "replicas@example.com", "password": WRONG}).status_code
            for t in tries
        ]
        assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}, codes
        for gen in (first, second):
            next(gen, None)
