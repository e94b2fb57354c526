"""The customer's sign-ins, server-side: the signed cookie names one row (by the sha256 of its
nonce), so the account page can list them and end one, all the others (a password change) or
all of them, on every replica. A cookie without its row is signed out."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from sqlalchemy import delete, insert, select, update

from tokenrelay.store.async_core import AsyncEngine
from tokenrelay.store.tables import customer_sessions

# How stale "last seen" may get: one write a minute per session, not one per page view.
SEEN_EVERY = dt.timedelta(seconds=60)


def session_id(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


class SignIns:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(self, account_id: str, nonce: str, user_agent: str, ip: str) -> None:
        now = dt.datetime.now(dt.UTC)
        row = {
            "id_hash": session_id(nonce),
            "account_id": account_id,
            "created_at": now,
            "last_seen_at": now,
            "user_agent": user_agent[:200],
            "ip": ip[:64],
        }
        async with self.engine.begin() as conn:
            await conn.execute(insert(customer_sessions).values(**row))

    async def active(self, account_id: str, nonce: str) -> bool:
        """Whether this sign-in is still on (and note that it was seen)."""
        c = customer_sessions.c
        sid = session_id(nonce)
        async with self.engine.connect() as conn:
            seen = await conn.scalar(
                select(c.last_seen_at).where(c.id_hash == sid, c.account_id == account_id)
            )
        if seen is None:
            return False
        now = dt.datetime.now(dt.UTC)
        if _aware(seen) < now - SEEN_EVERY:
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(customer_sessions).where(c.id_hash == sid).values(last_seen_at=now)
                )
        return True

    async def listing(self, account_id: str) -> list[dict[str, Any]]:
        c = customer_sessions.c
        query = (
            select(c.id_hash, c.created_at, c.last_seen_at, c.user_agent, c.ip)
            .where(c.account_id == account_id)
            .order_by(c.last_seen_at.desc())
        )
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def end(self, account_id: str, id_hash: str) -> bool:
        c = customer_sessions.c
        stmt = delete(customer_sessions).where(c.account_id == account_id, c.id_hash == id_hash)
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount > 0

    async def end_all(self, account_id: str, keep_nonce: str | None = None) -> int:
        """End every sign-in of the account, but `keep_nonce`'s when given."""
        c = customer_sessions.c
        stmt = delete(customer_sessions).where(c.account_id == account_id)
        if keep_nonce is not None:
            stmt = stmt.where(c.id_hash != session_id(keep_nonce))
        async with self.engine.begin() as conn:
            return int((await conn.execute(stmt)).rowcount)


def _aware(when: dt.datetime) -> dt.datetime:
    # SQLite gives naive datetimes back (UTC as written).
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


_BROWSERS = (("Edg/", "Edge"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"),
             ("Chromium/", "Chromium"), ("Safari/", "Safari"), ("curl/", "curl"))  # fmt: skip
_SYSTEMS = (("Android", "Android"), ("iPhone", "iPhone"), ("iPad", "iPad"),
            ("Windows", "Windows"), ("Mac OS", "macOS"), ("Linux", "Linux"))  # fmt: skip


def describe(user_agent: str) -> str:
    """ "Chrome on Linux": enough to recognise one's own devices (the order matters: Edge's
    and Chrome's strings also name Safari)."""
    browser = next((name for mark, name in _BROWSERS if mark in user_agent), "")
    system = next((name for mark, name in _SYSTEMS if mark in user_agent), "")
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or (user_agent[:60] or "unknown device")
