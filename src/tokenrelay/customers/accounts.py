"""Customer accounts: sign-up, sign-in and password reset against the `accounts` table.

Passwords are hashed with argon2id (argon2-cffi's defaults): unlike API keys (256 random bits,
sha256 is enough), a password is a low-entropy secret that must be slow to guess offline.
Operator console users (`admin_users`, admin/operators.py) use the same hashing.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from tokenrelay.store.async_core import AsyncEngine
from tokenrelay.store.tables import accounts

if TYPE_CHECKING:
    from argon2 import PasswordHasher

DEFAULT_PRICE_GROUP = "default"
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 hashes any length; a cap keeps a 10 MB "password" out


@functools.cache
def _argon2() -> tuple[PasswordHasher, str, tuple[type[Exception], ...]]:
    """The hasher, a hash verified against when the email is unknown (so that a miss costs what
    a hit costs) and what a failed verification raises: made at the first sign-in or sign-up,
    not at start (argon2-cffi, and a 64 MiB hash a gateway that serves only its API never
    needs)."""
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    hasher = PasswordHasher()
    return hasher, hasher.hash(secrets.token_urlsafe(16)), (VerificationError, InvalidHashError)


class SignupError(ValueError):
    """The sign-up cannot proceed; the message is fit for the form."""


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    email: str | None
    balance_nano: int
    price_group: str
    created_at: dt.datetime
    disabled: bool
    # A fingerprint of the password hash: a reset link is only good until the password changes.
    password_tag: str
    # No starting credit and no key before the owner proves they read the address.
    email_verified: bool = False


def normalize_email(email: str) -> str:
    """The address as mail delivers it: NFKC, lower case, the domain without a trailing dot
    and in its ASCII (IDNA) form, so `ALICE@Example.COM.` and `alice@example.com` are one."""
    email = unicodedata.normalize("NFKC", email).strip().lower()
    local, _, domain = email.rpartition("@")
    try:
        domain = domain.rstrip(".").encode("idna").decode("ascii")
    except UnicodeError:
        return email  # not a domain: valid_email refuses it
    return f"{local}@{domain}"


def valid_email(email: str) -> bool:
    """A normalized address with a plain ASCII local part: letters from other scripts that
    look like Latin ones (Cyrillic а) would otherwise make look-alike accounts."""
    local, _, domain = email.rpartition("@")
    return (
        bool(local)
        and local.isascii()
        and local.isprintable()
        and "@" not in local
        and "." in domain.strip(".")
        and len(email) <= 320
        and " " not in email
    )


def mailbox_key(email: str, strip_plus: bool, dotless_domains: frozenset[str]) -> str:
    """One key per inbox, for a normalized address: `a+x@` is `a@` when plus-tags are
    stripped; at domains that ignore dots in the local part, `a.lice@` is `alice@`."""
    local, _, domain = email.rpartition("@")
    if strip_plus:
        local = local.split("+", 1)[0]
    if domain in dotless_domains:
        local = local.replace(".", "")
    return f"{local}@{domain}"


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise SignupError(f"the password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise SignupError(f"the password may have at most {MAX_PASSWORD} characters")


def check_sign_up(email: str, password: str) -> str:
    """The normalized email, when both would make an account; SignupError otherwise."""
    email = normalize_email(email)
    if not valid_email(email):
        raise SignupError("enter a valid email address")
    check_password(password)
    return email


def hash_password(password: str) -> str:
    return _argon2()[0].hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Constant work whether or not there is a stored hash."""
    if len(password) > MAX_PASSWORD:
        return False
    hasher, dummy, failed = _argon2()
    try:
        return hasher.verify(stored or dummy, password) and stored is not None
    except failed:
        return False


class AccountStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def sign_up(
        self,
        email: str,
        password: str,
        name: str | None = None,
        *,
        mailbox: Callable[[str], str] = lambda email: email,
        ip: str | None = None,
    ) -> Account:
        """A new account with no balance and its email not yet verified (the caller credits
        any starting credit through billing once it is, so that the ledger has it).
        SignupError for a bad email or one whose mailbox (`mailbox` of the normalized email)
        has an account already."""
        email = check_sign_up(email, password)
        if await self._mailbox_taken(mailbox(email)):
            raise SignupError("an account with this email exists; sign in instead")
        now = dt.datetime.now(dt.UTC)
        row = {
            "id": f"acct_{secrets.token_hex(6)}",
            "name": (name or email)[:200],
            "email": email,
            "password_hash": hash_password(password),
            "balance_nano": 0,
            "price_group": DEFAULT_PRICE_GROUP,
            "created_at": now,
            "email_key": mailbox(email),
            "signup_ip": (ip or "")[:64] or None,
        }
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(accounts).values(**row))
        except IntegrityError:
            raise SignupError("an account with this email exists; sign in instead") from None
        return _account({**row, "disabled_at": None, "email_verified_at": None})

    async def _mailbox_taken(self, key: str) -> bool:
        async with self.engine.connect() as conn:
            found = await conn.scalar(select(accounts.c.id).where(accounts.c.email_key == key))
        return found is not None

    async def mark_verified(self, account_id: str, email: str) -> bool:
        """Record that the owner reads `email` (still the account's); True the first time."""
        async with self.engine.begin() as conn:
            done = await conn.execute(
                update(accounts)
                .where(
                    accounts.c.id == account_id,
                    accounts.c.email == email,
                    accounts.c.email_verified_at.is_(None),
                )
                .values(email_verified_at=dt.datetime.now(dt.UTC))
            )
        return bool(done.rowcount)

    async def authenticate(self, email: str, password: str) -> Account | None:
        account = await self.by_email(email)
        stored = await self._password_hash(account.id) if account else None
        if not verify_password(stored, password) or account is None or account.disabled:
            return None
        return account

    async def get(self, account_id: str) -> Account | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(accounts).where(accounts.c.id == account_id))).first()
        return _account(row._mapping) if row else None

    async def by_email(self, email: str) -> Account | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(accounts).where(accounts.c.email == normalize_email(email))
                )
            ).first()
        return _account(row._mapping) if row else None

    async def set_password(self, account_id: str, password: str) -> None:
        check_password(password)
        async with self.engine.begin() as conn:
            await conn.execute(
                update(accounts)
                .where(accounts.c.id == account_id)
                .values(password_hash=hash_password(password))
            )

    async def delete_unused(self, account_id: str) -> None:
        """Remove an account created a moment ago that nothing references yet (a refused
        invitation); the foreign keys refuse it otherwise."""
        async with self.engine.begin() as conn:
            await conn.execute(delete(accounts).where(accounts.c.id == account_id))

    async def set_low_balance(self, account_id: str, threshold_nano: int | None) -> None:
        """The customer's low-balance email threshold (None: no email). The storefront's form
        calls this; admin/alerts.py sends the email once the balance falls below it."""
        if threshold_nano is not None and threshold_nano < 0:
            raise SignupError("the threshold is an amount of at least $0")
        async with self.engine.begin() as conn:
            await conn.execute(
                update(accounts)
                .where(accounts.c.id == account_id)
                .values(low_balance_nano=threshold_nano, low_balance_alerted_at=None)
            )

    async def _password_hash(self, account_id: str) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.scalar(
                select(accounts.c.password_hash).where(accounts.c.id == account_id)
            )


def _account(row: Any) -> Account:
    created = row["created_at"]
    pw = row.get("password_hash") if hasattr(row, "get") else row["password_hash"]
    return Account(
        id=row["id"],
        name=row["name"],
        email=row["email"],
        balance_nano=int(row["balance_nano"]),
        price_group=row["price_group"],
        created_at=created if created.tzinfo else created.replace(tzinfo=dt.UTC),
        disabled=row["disabled_at"] is not None,
        # One-way (the hash's salt stays secret): it goes into cookies and reset links.
        password_tag=hashlib.sha256((pw or "").encode()).hexdigest()[:16],
        email_verified=_get(row, "email_verified_at") is not None,
    )


def _get(row: Any, column: str) -> Any:
    return row.get(column) if hasattr(row, "get") else row[column]
