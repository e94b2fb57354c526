"""Keys in price groups, for the tests of what a group's multiplier (and an operator's
override of it for one model) holds and bills: tests/billing and tests/portal."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tokenrelay.customers.keys import ApiKeyInfo, KeyStore
from tokenrelay.store.tables import accounts, price_groups


async def key_in_group(
    engine: AsyncEngine, name: str, credits: Decimal, group: str, ppm: int | None = None
) -> ApiKeyInfo:
    """A new key with `credits` whose account is in price group `group` (the group created at
    `ppm` first, when given), as the key store reads it afterwards."""
    store = KeyStore(engine)
    created, _ = await store.create(name, credits)
    async with engine.begin() as conn:
        if ppm is not None:
            await conn.execute(insert(price_groups).values(name=group, multiplier_ppm=ppm))
        await conn.execute(
            update(accounts).where(accounts.c.id == created.account_id).values(price_group=group)
        )
    key = await store.get(created.id)
    assert key is not None
    return key
