"""Top-ups by redemption code: the operator creates a batch (amount, expiry), a customer
redeems a code once.

Codes are `TR-` + 20 base32 characters (100 random bits), stored as sha256 like API keys.
Redemption claims the code with one conditional UPDATE (`redeemed_by IS NULL`, not expired):
of any number of concurrent attempts exactly one changes the row, on SQLite and PostgreSQL.
The credit then goes through billing with the code as its idempotency key, so a claim whose
credit failed (the database went away in between) is completed by the same account's retry,
and never credited twice.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets

from sqlalchemy import insert, select, update

from tokenrelay.billing.engine import BillingEngine
from tokenrelay.store.async_core import AsyncEngine
from tokenrelay.store.tables import redemption_codes

MAX_BATCH = 10_000


class RedeemError(ValueError):
    """The code cannot be redeemed; the message is fit for the customer."""


def new_code() -> str:
    return "TR-" + base64.b32encode(secrets.token_bytes(15)).decode()[:20]


def code_hash(code: str) -> str:
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


async def create_batch(
    engine: AsyncEngine, count: int, amount_nano: int, expires_at: dt.datetime | None
) -> tuple[str, list[str]]:
    """(batch id, the plaintext codes): shown once, never stored."""
    if not 0 < count <= MAX_BATCH:
        raise ValueError(f"count: 1 to {MAX_BATCH}")
    if amount_nano <= 0:
        raise ValueError("amount: more than zero")
    batch_id = f"batch_{secrets.token_hex(6)}"
    codes = [new_code() for _ in range(count)]
    now = dt.datetime.now(dt.UTC)
    async with engine.begin() as conn:
        await conn.execute(
            insert(redemption_codes),
            [
                {
                    "code_hash": code_hash(c),
                    "batch_id": batch_id,
                    "amount_nano": amount_nano,
                    "expires_at": expires_at,
                    "created_at": now,
                }
                for c in codes
            ],
        )
    return batch_id, codes


async def redeem(billing: BillingEngine, account_id: str, code: str) -> int:
    """Credit the code's amount to the account; returns the amount. RedeemError otherwise."""
    code = code.strip().upper()
    if not code.startswith("TR-") or len(code) != 23:
        raise RedeemError("this is not a redemption code (TR- and 20 letters and digits)")
    digest = code_hash(code)
    now = dt.datetime.now(dt.UTC)
    table = redemption_codes
    async with billing.engine.begin() as conn:
        claimed = await conn.execute(
            update(table)
            .where(
                table.c.code_hash == digest,
                table.c.redeemed_by.is_(None),
                (table.c.expires_at.is_(None)) | (table.c.expires_at > now),
            )
            .values(redeemed_by=account_id, redeemed_at=now)
            .returning(table.c.amount_nano)
        )
        amount = claimed.scalar()
        if amount is None:
            row = (
                await conn.execute(
                    select(table.c.redeemed_by, table.c.amount_nano).where(
                        table.c.code_hash == digest
                    )
                )
            ).first()
    if amount is None:
        if row is None:
            raise RedeemError("unknown code")
        if row.redeemed_by != account_id:
            raise RedeemError("this code was redeemed already, or it has expired")
        # Ours already: complete a credit that a failure may have cut off (a no-op if done).
        await _credit(billing, account_id, int(row.amount_nano), digest)
        raise RedeemError("you redeemed this code already")
    await _credit(billing, account_id, int(amount), digest)
    return int(amount)


async def _credit(billing: BillingEngine, account_id: str, amount: int, digest: str) -> None:
    # Idempotent by code: however often this runs for one code, it credits once.
    await billing.credit_account(
        account_id, amount, f"redemption code {digest[:8]}", f"redeem:{digest}"
    )
