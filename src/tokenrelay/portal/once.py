"""One-time tokens, used up in the database: a signed-out session's nonce (the signed cookie
alone would stay valid for its whole life) and a submitted form's token (a form that creates
money or keys does so once, however often it is sent). The primary key decides the first use
on every replica; expired rows are deleted now and then."""

from __future__ import annotations

import datetime as dt
import hashlib
import random

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from tokenrelay.store.async_core import AsyncEngine
from tokenrelay.store.tables import spent_tokens

PURGE_EVERY = 200  # uses, on average, between deletions of expired rows


def _digest(purpose: str, token: str) -> str:
    return hashlib.sha256(f"{purpose}\0{token}".encode()).hexdigest()


class SpentTokens:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def spend(self, purpose: str, token: str, ttl_s: float) -> bool:
        """Use the token up; False when it was used already (or is empty)."""
        if not token:
            return False
        now = dt.datetime.now(dt.UTC)
        row = {
            "digest": _digest(purpose, token),
            "purpose": purpose,
            "expires_at": now + dt.timedelta(seconds=ttl_s),
        }
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(spent_tokens).values(**row))
                if random.random() < 1 / PURGE_EVERY:
                    await conn.execute(delete(spent_tokens).where(spent_tokens.c.expires_at < now))
        except IntegrityError:
            return False
        return True

    async def spent(self, purpose: str, token: str) -> bool:
        async with self.engine.connect() as conn:
            found = await conn.scalar(
                select(spent_tokens.c.digest).where(
                    spent_tokens.c.digest == _digest(purpose, token)
                )
            )
        return found is not None
