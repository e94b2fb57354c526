"""Operators of the console: roles, TOTP two-factor sign-in and server-side sessions.

Roles: `owner` (everything, manages operators), `support` (reads everything, adjusts credit
up to SUPPORT_CREDIT_MAX_NANO per adjustment), `viewer` (reads). A signed cookie names one
`operator_sessions` row by the sha256 of a random id: every request checks the row, so signing
out everywhere, removing an operator or changing a role takes effect at once on every replica.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from tokenrelay.customers.accounts import (
    SignupError,
    check_password,
    hash_password,
    normalize_email,
    valid_email,
    verify_password,
)
from tokenrelay.store.async_core import AsyncEngine
from tokenrelay.store.tables import admin_users, operator_sessions

if TYPE_CHECKING:
    from pyotp import TOTP

ROLES = ("owner", "support", "viewer")
SUPPORT_CREDIT_MAX_NANO = 50 * 10**9  # $50 per adjustment
ISSUER = "tokenrelay console"


@dataclass(frozen=True, slots=True)
class Operator:
    email: str
    role: str
    totp: bool  # enrolled in two-factor sign-in
    created_at: dt.datetime

    def can(self, need: str) -> bool:
        """`need` is the least role: owner > support > viewer."""
        return ROLES.index(self.role) <= ROLES.index(need)


class OperatorStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, email: str, password: str, role: str = "owner") -> str:
        email = normalize_email(email)
        if not valid_email(email):
            raise SignupError("enter a valid email address")
        if role not in ROLES:
            raise SignupError(f"role: one of {', '.join(ROLES)}")
        check_password(password)
        user_id = f"adm_{secrets.token_hex(6)}"
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(admin_users).values(
                        id=user_id,
                        email=email,
                        password_hash=hash_password(password),
                        created_at=dt.datetime.now(dt.UTC),
                        role=role,
                    )
                )
        except IntegrityError:
            raise SignupError("an operator with this email exists") from None
        return user_id

    async def authenticate(self, email: str, password: str, code: str) -> Operator | None:
        """The operator when the password (and, once enrolled, the TOTP code) match."""
        email = normalize_email(email)
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(admin_users).where(admin_users.c.email == email))
            ).first()
        stored = row.password_hash if row else None
        if not verify_password(stored, password) or row is None:
            return None
        if row.totp_secret and not _totp(row.totp_secret).verify(code.strip(), valid_window=1):
            return None
        return _operator(row)

    async def needs_code(self, email: str) -> bool:
        async with self.engine.connect() as conn:
            secret = await conn.scalar(
                select(admin_users.c.totp_secret).where(
                    admin_users.c.email == normalize_email(email)
                )
            )
        return bool(secret)

    async def get(self, email: str) -> Operator | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(admin_users).where(admin_users.c.email == email))
            ).first()
        return _operator(row) if row else None

    async def list(self) -> list[Operator]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(admin_users).order_by(admin_users.c.created_at))
            return [_operator(r) for r in rows]

    async def remove(self, email: str) -> bool:
        async with self.engine.begin() as conn:
            await conn.execute(delete(operator_sessions).where(operator_sessions.c.email == email))
            gone = await conn.execute(delete(admin_users).where(admin_users.c.email == email))
        return bool(gone.rowcount)

    async def owners(self) -> int:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(admin_users.c.email).where(admin_users.c.role == "owner")
            )
            return len(rows.all())

    # ------------------------------------------------------------------ two-factor

    @staticmethod
    def new_secret() -> str:
        from pyotp import random_base32  # at an operator's enrolment, not at start

        return random_base32()

    @staticmethod
    def valid_secret(secret: str) -> bool:
        """A secret as new_secret makes them (the form sends it back: anything may come)."""
        return re.fullmatch(r"[A-Z2-7]{32}", secret) is not None

    @staticmethod
    def provisioning_uri(email: str, secret: str) -> str:
        return _totp(secret).provisioning_uri(name=email, issuer_name=ISSUER)

    async def enroll(self, email: str, secret: str, code: str) -> bool:
        """Turn two-factor on once the operator's app shows a matching code."""
        if not self.valid_secret(secret):
            return False
        if not _totp(secret).verify(code.strip()[:12], valid_window=1):
            return False
        async with self.engine.begin() as conn:
            await conn.execute(
                update(admin_users).where(admin_users.c.email == email).values(totp_secret=secret)
            )
        return True

    # ------------------------------------------------------------------ sessions

    async def start_session(self, email: str, ttl_s: float) -> str:
        """A new session id for the cookie; only its hash is stored. Rows older than the
        cookie's lifetime go (their cookies no longer verify)."""
        session_id = secrets.token_urlsafe(24)
        expired = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ttl_s)
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(operator_sessions).where(operator_sessions.c.created_at < expired)
            )
            await conn.execute(
                insert(operator_sessions).values(
                    id_hash=_hash(session_id), email=email, created_at=dt.datetime.now(dt.UTC)
                )
            )
        return session_id

    async def session_operator(self, email: str, session_id: str) -> Operator | None:
        """The operator of a live session (one indexed lookup), else None."""
        query = (
            select(admin_users)
            .join(operator_sessions, operator_sessions.c.email == admin_users.c.email)
            .where(operator_sessions.c.id_hash == _hash(session_id), admin_users.c.email == email)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _operator(row) if row else None

    async def end_session(self, session_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(operator_sessions).where(operator_sessions.c.id_hash == _hash(session_id))
            )

    async def change_password(
        self, email: str, current: str, new: str, keep_session: str | None = None
    ) -> bool:
        """A new password when `current` is right; every other session of the operator ends
        (whoever may have had the old one is signed out), `keep_session` (this one) stays.
        False when `current` is wrong; SignupError when `new` is too weak."""
        check_password(new)
        async with self.engine.begin() as conn:
            stored = await conn.scalar(
                select(admin_users.c.password_hash).where(admin_users.c.email == email)
            )
            if not verify_password(stored, current):
                return False
            await conn.execute(
                update(admin_users)
                .where(admin_users.c.email == email)
                .values(password_hash=hash_password(new))
            )
            others = operator_sessions.c.email == email
            if keep_session is not None:
                others &= operator_sessions.c.id_hash != _hash(keep_session)
            await conn.execute(delete(operator_sessions).where(others))
        return True

    async def end_all_sessions(self, email: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(operator_sessions).where(operator_sessions.c.email == email))


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _operator(row: object) -> Operator:
    m = row._mapping  # type: ignore[attr-defined]
    created = m["created_at"]
    return Operator(
        email=m["email"],
        role=m["role"] if m["role"] in ROLES else "viewer",
        totp=bool(m["totp_secret"]),
        created_at=created if created.tzinfo else created.replace(tzinfo=dt.UTC),
    )


def _totp(secret: str) -> TOTP:
    """pyotp loaded at the first two-factor step, not at start (the API never needs it)."""
    from pyotp import TOTP

    return TOTP(secret)
