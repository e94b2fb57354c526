"""Customer API keys: generate, store hashed, authenticate from an in-process cache.

Keys are `<prefix><43 url-safe chars>` (256 random bits). Only the sha256 of the whole key is
stored. A slow password hash (bcrypt, argon2) defends low-entropy secrets against guessing; a
256-bit random token cannot be guessed, so sha256 is as safe here, and being deterministic it
lets the database find a key by an indexed lookup of its hash in one step.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tokenrelay.money import parse_nano, usd
from tokenrelay.single_flight import SingleFlight
from tokenrelay.store.tables import api_keys, ledger

log = logging.getLogger("tokenrelay.auth")

_REVOCATION_POLL_S = 0.5
_REVOCATION_WINDOW_S = 600
# Longer "keys" are not ours; refusing them early keeps junk from being hashed and cached.
_MAX_KEY_LENGTH = 256


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """One key as the gateway sees it. Never holds the plaintext key."""

    id: str
    name: str
    key_hint: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    balance_nano: int  # snapshot when read; live balances belong to billing
    rpm: int | None
    tpm: int | None
    # Needed to invalidate the cache; useless for authenticating, still kept out of the API.
    key_hash: str = field(repr=False)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def balance_usd(self) -> str:
        return usd(self.balance_nano)

    def public(self) -> dict[str, Any]:
        """JSON-ready view for the admin API and the CLI: no key, no hash."""
        return {
            "id": self.id,
            "name": self.name,
            "key_hint": self.key_hint,
            "balance_usd": self.balance_usd,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def generate_key(prefix: str = "sk-aic-") -> tuple[str, str, str]:
    """A new key as (plaintext, sha256 hex, display hint)."""
    plaintext = prefix + secrets.token_urlsafe(32)
    return plaintext, hash_key(plaintext), f"{prefix}...{plaintext[-4:]}"


class KeyStore:
    """Keys in the database, with a read-through cache for `authenticate` (the hot path).

    The cache is per process: a revoke here takes effect at once in this process, and
    `watch_revocations` carries a revoke made anywhere else (the CLI, another replica) to this
    process within half a second.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        prefix: str = "sk-aic-",
        *,
        cache_ttl: float = 60.0,
        negative_ttl: float = 5.0,
        max_cache_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.prefix = prefix
        self._ttl = cache_ttl
        self._negative_ttl = negative_ttl
        self._max_entries = max_cache_entries
        self._clock = clock
        self._lookups: SingleFlight[str, ApiKeyInfo | None] = SingleFlight()
        # key hash -> (expires at, key or None for "no such key / revoked")
        self._cache: dict[str, tuple[float, ApiKeyInfo | None]] = {}
        self._watch: asyncio.Task[None] | None = None

    async def create(
        self,
        name: str,
        credits_usd: Decimal | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> tuple[ApiKeyInfo, str]:
        """Create a key; returns (record, plaintext). The plaintext exists only in this return.
        MoneyError (a ValueError) if `credits_usd` is negative, too large or below a nano."""
        balance = parse_nano(credits_usd) if credits_usd is not None else 0
        plaintext, key_hash, hint = generate_key(self.prefix)
        row = {
            "id": f"key_{secrets.token_hex(6)}",
            "name": name,
            "key_hash": key_hash,
            "key_hint": hint,
            "created_at": dt.datetime.now(dt.UTC),
            "revoked_at": None,
            "balance_nano": balance,
            "rpm": rpm,
            "tpm": tpm,
        }
        async with self.engine.begin() as conn:
            await conn.execute(insert(api_keys).values(**row))
            if balance:
                # Same transaction: the balance is the sum of the ledger from the first cent.
                await conn.execute(
                    insert(ledger).values(
                        key_id=row["id"],
                        kind="credit",
                        amount_nano=balance,
                        note="initial credits",
                        created_at=row["created_at"],
                    )
                )
        self._cache.pop(key_hash, None)
        return _info(row), plaintext

    async def list(self) -> list[ApiKeyInfo]:
        async with self.engine.connect() as conn:
            result = await conn.execute(
                select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
            )
            return [_info(r._mapping) for r in result]

    async def get(self, key_id: str) -> ApiKeyInfo | None:
        async with self.engine.connect() as conn:
            result = await conn.execute(select(api_keys).where(api_keys.c.id == key_id))
            row = result.first()
        return _info(row._mapping) if row is not None else None

    async def revoke(self, key_id: str) -> ApiKeyInfo | None:
        """Revoke (idempotent: the first revocation time is kept); None if no such key."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=dt.datetime.now(dt.UTC))
            )
            row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
        if row is None:
            return None
        info = _info(row._mapping)
        self.invalidate(info.key_hash)
        return info

    async def authenticate(self, plaintext: str) -> ApiKeyInfo | None:
        """The active key for this plaintext, or None. Served from cache when fresh."""
        if not plaintext or len(plaintext) > _MAX_KEY_LENGTH:
            return None
        key_hash = hash_key(plaintext)
        now = self._clock()
        cached = self._cache.get(key_hash)
        if cached is not None and cached[0] > now:
            return cached[1]

        async def load() -> ApiKeyInfo | None:
            info = await self._lookup(key_hash)
            self._remember(key_hash, info, now)
            return info

        # A burst on a cold (or just expired) key makes one query, not one each.
        return await self._lookups.run(key_hash, load)

    def invalidate(self, key_hash: str) -> None:
        """Drop one key from the cache (after revoke, or on a cross-replica notice)."""
        self._cache.pop(key_hash, None)

    def clear_cache(self) -> None:
        self._cache.clear()

    def start(self) -> None:
        """Start following revocations written by other processes (see `watch_revocations`)."""
        if self._watch is None:
            self._watch = asyncio.create_task(self.watch_revocations())

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None

    async def watch_revocations(self, interval_s: float = _REVOCATION_POLL_S) -> None:
        """Drop cached keys that were revoked lately, by whichever process. One query of a
        small table twice a second is cheaper than any pub/sub to keep, works the
        same on SQLite and PostgreSQL, and needs no Redis. The window is wide so that clock
        skew between replicas cannot hide a revocation."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=_REVOCATION_WINDOW_S)
                async with self.engine.connect() as conn:
                    result = await conn.execute(
                        select(api_keys.c.key_hash).where(api_keys.c.revoked_at > since)
                    )
                    revoked = [row[0] for row in result]
                for key_hash in revoked:
                    cached = self._cache.get(key_hash)
                    if cached is not None and cached[1] is not None:
                        del self._cache[key_hash]
            except Exception as exc:  # the next round tries again; cache entries expire anyway
                log.warning("revocation check failed: %s", type(exc).__name__)

    async def _lookup(self, key_hash: str) -> ApiKeyInfo | None:
        async with self.engine.connect() as conn:
            result = await conn.execute(select(api_keys).where(api_keys.c.key_hash == key_hash))
            row = result.first()
        if row is None:
            return None
        info = _info(row._mapping)
        # The index lookup already matched; compare again in constant time so that no code
        # path ever decides on a secret-derived value with an early-exit comparison.
        if not hmac.compare_digest(info.key_hash, key_hash) or info.revoked:
            return None
        return info

    def _remember(self, key_hash: str, info: ApiKeyInfo | None, now: float) -> None:
        if len(self._cache) >= self._max_entries:
            # Bounded memory under a flood of random keys: evict the oldest entry.
            self._cache.pop(next(iter(self._cache)))
        ttl = self._ttl if info is not None else self._negative_ttl
        self._cache[key_hash] = (now + ttl, info)


def _info(row: Any) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row["id"],
        name=row["name"],
        key_hint=row["key_hint"],
        created_at=_utc(row["created_at"]),
        revoked_at=_utc(row["revoked_at"]) if row["revoked_at"] is not None else None,
        balance_nano=int(row["balance_nano"]),
        rpm=row["rpm"],
        tpm=row["tpm"],
        key_hash=row["key_hash"],
    )


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; everything we write is UTC.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def presented_key(headers: Mapping[str, str]) -> str:
    """The customer key a request presents: `x-api-key` (Anthropic SDK), `x-goog-api-key`
    (Gemini SDKs; the route moves a `?key=` there) or `Authorization: Bearer` (OpenAI SDK);
    "" when there is none."""
    key = headers.get("x-api-key") or headers.get("x-goog-api-key")
    if key:
        return key.strip()
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return ""
