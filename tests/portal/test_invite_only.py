"""Invite-only sign-up: no account without a valid redemption code; the code's credit is the
new account's first balance, and a used or wrong code creates nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from portal_support import Browser, form_error
from sqlalchemy import func, select

from backends import _run
from gateway_support import RunningGateway, served
from tokenrelay.portal.topups import create_batch
from tokenrelay.store.db import create_engine
from tokenrelay.store.tables import accounts

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    yield from served(
        tmp_path_factory.mktemp("invite"), signup="invite", session_secret="invite-secret-0123"
    )


def _db(gw: RunningGateway, op: str) -> object:
    async def run() -> object:
        engine = create_engine(gw.settings.database_url)
        try:
            if op == "code":
                _, codes = await create_batch(engine, 1, 2_000_000_000, None)
                return codes[0]
            async with engine.connect() as conn:
                return await conn.scalar(select(func.count()).select_from(accounts))
        finally:
            await engine.dispose()

    return _run(run())


def test_invite_only_sign_up_needs_a_valid_code(gw: RunningGateway) -> None:
    code = str(_db(gw, "code"))
    b = Browser(gw.url)
    assert "Invitation code" in b.http.get("/signup").text
    r = b.post("/signup", {"email": "nocode@example.com", "password": PASSWORD})
    assert r.status_code == 400 and "invitation code" in (form_error(r) or "")
    r = b.post(
        "/signup", {"email": "wrong@example.com", "password": PASSWORD, "code": "TR-" + "B" * 20}
    )
    assert r.status_code == 400 and "unknown code" in (form_error(r) or "")
    assert _db(gw, "count") == 0  # nothing created

    r = b.post("/signup", {"email": "invited@example.com", "password": PASSWORD, "code": code})
    assert r.url.path == "/dashboard"
    assert b.balance() == "2.000000"
    other = Browser(gw.url)
    r = other.post("/signup", {"email": "again@example.com", "password": PASSWORD, "code": code})
    assert r.status_code == 400
    assert _db(gw, "count") == 1
