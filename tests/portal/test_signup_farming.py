"""Sign-up farming (issue 20, items 3 and 11): no starting credit and no key before the address
is verified; one account per mailbox however the address is dressed up; sign-ups per address
and in all are capped, across replicas when Redis is configured; the operator sees where each
account signed up."""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from portal_support import Browser, form_error
from sqlalchemy import text

from backends import backend
from gateway_support import RunningGateway, served
from mail_outbox import last_link, links
from tokenrelay.store.db import create_engine

PASSWORD = "correct horse battery"


def _gateway(tmp: Path, **overrides: object) -> Iterator[RunningGateway]:
    values: dict[str, object] = {
        "session_secret": "farming-secret-0123456789",
        "signup_credit_usd": Decimal("1.00"),
        **overrides,
    }
    yield from served(tmp, **values)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    yield from _gateway(tmp_path_factory.mktemp("farming"))


def at(b: Browser, ip: str) -> Browser:
    b.http.headers["x-forwarded-for"] = ip
    return b


def test_no_credit_and_no_key_before_the_address_is_verified(gw: RunningGateway) -> None:
    b = Browser(gw.url)
    b.sign_up("unverified@example.com", verify=False)
    assert b.balance() == "0.000000"
    page = b.http.get("/dashboard").text
    assert "Confirm your email address" in page and 'action="/dashboard/keys"' not in page
    r = b.post("/dashboard/keys", {"name": "farmed"}, page="/dashboard")
    assert r.status_code == 403 and "Confirm your email" in (form_error(r) or "")
    assert 'data-key-id="' not in b.http.get("/dashboard").text

    link = last_link("email verification", "unverified@example.com")
    assert b.http.get(link).url.path == "/dashboard"
    assert b.http.get(link).url.path == "/dashboard"  # opened twice: credited once
    assert b.balance() == "1.000000"
    assert b.create_key("after").startswith("sk-aic-")
    # A link for someone else's account, or a forged one, verifies nothing.
    assert b.http.get(link[:-3] + "abc").status_code == 400


def test_one_account_per_mailbox(gw: RunningGateway) -> None:
    Browser(gw.url).sign_up("alice@gmail.com")
    for alias in (
        "alice+farm1@gmail.com",
        "a.lice@gmail.com",
        "ALICE@gmail.com.",
        "\uff41lice@gmail.com",  # fullwidth a: NFKC makes it a
        "alice@GMAIL.COM",
    ):
        r = Browser(gw.url).post("/signup", {"email": alias, "password": PASSWORD})
        assert r.status_code == 400 and "exists" in (form_error(r) or ""), alias
    # A look-alike letter from another script is not an address we take.
    r = Browser(gw.url).post("/signup", {"email": "\u0430lice@gmail.com", "password": PASSWORD})
    assert r.status_code == 400 and "valid email" in (form_error(r) or "")
    # Dots matter where the provider says they do.
    Browser(gw.url).sign_up("a.lice@example.com")
    Browser(gw.url).sign_up("alice@example.com")


def test_sign_ups_per_address_are_capped_and_the_operator_sees_the_address(
    gw: RunningGateway,
) -> None:
    codes = [
        at(Browser(gw.url), "203.0.113.7")
        .post("/signup", {"email": f"farm{i}@example.com", "password": PASSWORD})
        .status_code
        for i in range(10)
    ]
    assert codes == [200] * 3 + [429] * 7, codes
    assert not links("email verification", "farm3@example.com")  # no account, no mail
    Browser(gw.url).sign_up("honest@example.com")  # another address is not held up

    async def signup_ips() -> set[str]:
        engine = create_engine(gw.settings.database_url)
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT signup_ip FROM accounts WHERE email LIKE 'farm%'")
            )
            found = {r[0] for r in rows}
        await engine.dispose()
        return found

    assert asyncio.run(signup_ips()) == {"203.0.113.7"}


def test_sign_ups_in_all_are_capped(tmp_path: Path) -> None:
    for gw in _gateway(tmp_path, signup_per_hour=4):
        codes = [
            Browser(gw.url)
            .post("/signup", {"email": f"bot{i}@example.com", "password": PASSWORD})
            .status_code
            for i in range(6)
        ]
        assert codes == [200] * 4 + [429] * 2, codes


def test_two_replicas_share_the_sign_up_quota() -> None:
    with tempfile.TemporaryDirectory() as tmp, backend("postgres+redis", tmp) as store:
        shared = {"database_url": store.database_url, "redis_url": store.redis_url}
        for name in ("a", "b"):
            (Path(tmp) / name).mkdir()
        first = _gateway(Path(tmp) / "a", **shared)
        second = _gateway(Path(tmp) / "b", **shared)
        a, b = next(first), next(second)
        codes = [
            at(Browser(gw.url), "203.0.113.8")
            .post("/signup", {"email": f"rep{i}@example.com", "password": PASSWORD})
            .status_code
            for i, gw in enumerate((a, b) * 3)
        ]
        assert codes == [200] * 3 + [429] * 3, codes
        for gen in (first, second):
            next(gen, None)


def test_the_verification_link_is_for_the_address_it_was_sent_to(gw: RunningGateway) -> None:
    b = Browser(gw.url)
    b.sign_up("first@example.com", verify=False)
    link = last_link("email verification", "first@example.com")
    assert re.search(r"/verify\?t=[\w.-]+$", link)
    assert link.startswith(gw.url)
