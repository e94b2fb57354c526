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

from sqlalchemy import bindparam, insert, select, union_all, update

from tokenrelay.customers.accounts import DEFAULT_PRICE_GROUP
from tokenrelay.money import parse_nano, usd
from tokenrelay.single_flight import SingleFlight
from tokenrelay.store.async_core import AsyncEngine
from tokenrelay.store.tables import accounts, api_keys, ledger, price_groups

log = logging.getLogger("tokenrelay.customers.keys")

_REVOCATION_POLL_S = 0.5
_REVOCATION_WINDOW_S = 600
# The keys revoked lately, and those of accounts the console disabled lately (indexed columns):
# one statement, built once, for a poll twice a second.
_REVOKED_SINCE = union_all(
    select(api_keys.c.key_hash).where(api_keys.c.revoked_at > bindparam("since")),
    select(api_keys.c.key_hash)
    .join(accounts, accounts.c.id == api_keys.c.account_id)
    .where(accounts.c.disabled_at > bindparam("since")),
)
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
    balance_nano: int  # the account's, a snapshot when read; live balances belong to billing
    rpm: int | None
    tpm: int | None
    # Needed to invalidate the cache; useless for authenticating, still kept out of the API.
    key_hash: str = field(repr=False)
    # The account the key spends from, read with the key (one cached lookup on the hot path):
    # its price group's multiplier over list prices, in parts per million.
    account_id: str = ""
    multiplier_ppm: int = 1_000_000
    price_group: str = DEFAULT_PRICE_GROUP  # for the console's per-model overrides
    allowed_models: frozenset[str] | None = None  # None: every model
    expires_at: dt.datetime | None = None
    daily_cap_nano: int | None = None
    monthly_cap_nano: int | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def expired(self, now: dt.datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or dt.datetime.now(dt.UTC))

    def allows(self, model_id: str) -> bool:
        return self.allowed_models is None or model_id in self.allowed_models

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
            "account_id": self.account_id,
            "allowed_models": sorted(self.allowed_models) if self.allowed_models else None,
            "daily_cap_usd": usd(self.daily_cap_nano) if self.daily_cap_nano is not None else None,
            "monthly_cap_usd": (
                usd(self.monthly_cap_nano) if self.monthly_cap_nano is not None else None
            ),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
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
        *,
        account_id: str | None = None,
        allowed_models: list[str] | None = None,
        expires_at: dt.datetime | None = None,
        daily_cap_nano: int | None = None,
        monthly_cap_nano: int | None = None,
    ) -> tuple[ApiKeyInfo, str]:
        """Create a key; returns (record, plaintext). The plaintext exists only in this return.
        Without `account_id` the key gets an account of its own holding `credits_usd`; with
        one it spends that account's balance (credits then go to the account, not here).
        MoneyError (a ValueError) if `credits_usd` is negative, too large or below a nano;
        KeyError if `account_id` names no account."""
        balance = parse_nano(credits_usd) if credits_usd is not None else 0
        if account_id is not None and balance:
            raise ValueError("credits go to the account, not to one of its keys")
        plaintext, key_hash, hint = generate_key(self.prefix)
        key_id = f"key_{secrets.token_hex(6)}"
        now = dt.datetime.now(dt.UTC)
        row = {
            "id": key_id,
            "name": name,
            "key_hash": key_hash,
            "key_hint": hint,
            "created_at": now,
            "revoked_at": None,
            "rpm": rpm,
            "tpm": tpm,
            "account_id": account_id or f"acct_{key_id}",
            "allowed_models": sorted(set(allowed_models)) if allowed_models else None,
            "expires_at": expires_at,
            "daily_cap_nano": daily_cap_nano,
            "monthly_cap_nano": monthly_cap_nano,
        }
        async with self.engine.begin() as conn:
            if account_id is None:
                await conn.execute(
                    insert(accounts).values(
                        id=row["account_id"],
                        name=name,
                        balance_nano=balance,
                        price_group=DEFAULT_PRICE_GROUP,
                        created_at=now,
                    )
                )
            else:
                found = await conn.scalar(select(accounts.c.id).where(accounts.c.id == account_id))
                if found is None:
                    raise KeyError(account_id)
            await conn.execute(insert(api_keys).values(**row))
            if balance:
                # Same transaction: the balance is the sum of the ledger from the first cent.
                await conn.execute(
                    insert(ledger).values(
                        key_id=key_id,
                        account_id=row["account_id"],
                        kind="credit",
                        amount_nano=balance,
                        note="initial credits",
                        created_at=now,
                    )
                )
            info_row = (await conn.execute(_KEY_SELECT.where(api_keys.c.id == key_id))).one()
        self._cache.pop(key_hash, None)
        return _info(info_row._mapping), plaintext

    async def list_for_account(self, account_id: str) -> list[ApiKeyInfo]:
        async with self.engine.connect() as conn:
            result = await conn.execute(
                _KEY_SELECT.where(api_keys.c.account_id == account_id).order_by(
                    api_keys.c.created_at.desc(), api_keys.c.id
                )
            )
            return [_info(r._mapping) for r in result]

    async def list(self) -> list[ApiKeyInfo]:
        async with self.engine.connect() as conn:
            result = await conn.execute(_KEY_SELECT.order_by(api_keys.c.created_at, api_keys.c.id))
            return [_info(r._mapping) for r in result]

    async def get(self, key_id: str) -> ApiKeyInfo | None:
        async with self.engine.connect() as conn:
            result = await conn.execute(_KEY_SELECT.where(api_keys.c.id == key_id))
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
            row = (await conn.execute(_KEY_SELECT.where(api_keys.c.id == key_id))).first()
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
            info = cached[1]
            # An expiry is rare: a None check per request, a clock read only for those keys.
            if info is not None and info.expires_at is not None and info.expired():
                return None
            return info

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
                    result = await conn.execute(_REVOKED_SINCE, {"since": since})
                    revoked = [row[0] for row in result]
                for key_hash in revoked:
                    cached = self._cache.get(key_hash)
                    if cached is not None and cached[1] is not None:
                        del self._cache[key_hash]
            except Exception as exc:  # the next round tries again; cache entries expire anyway
                log.warning("revocation check failed: %s", type(exc).__name__)

    async def _lookup(self, key_hash: str) -> ApiKeyInfo | None:
        async with self.engine.connect() as conn:
            # The account (balance snapshot, price group) comes in the same query: the cache
            # then serves key and account together, no second lookup per request.
            result = await conn.execute(_KEY_SELECT.where(api_keys.c.key_hash == key_hash))
            row = result.first()
        if row is None:
            return None
        info = _info(row._mapping)
        # The index lookup already matched; compare again in constant time so that no code
        # path ever decides on a secret-derived value with an early-exit comparison.
        if not hmac.compare_digest(info.key_hash, key_hash) or info.revoked or info.expired():
            return None
        if row._mapping["disabled_at"] is not None:
            return None
        return info

    def _remember(self, key_hash: str, info: ApiKeyInfo | None, now: float) -> None:
        if len(self._cache) >= self._max_entries:
            # Bounded memory under a flood of random keys: evict the oldest entry.
            self._cache.pop(next(iter(self._cache)))
        ttl = self._ttl if info is not None else self._negative_ttl
        self._cache[key_hash] = (now + ttl, info)


_KEY_SELECT = select(
    api_keys,
    accounts.c.balance_nano,
    accounts.c.disabled_at,
    accounts.c.price_group,
    price_groups.c.multiplier_ppm,
).select_from(
    api_keys.join(accounts, accounts.c.id == api_keys.c.account_id).join(
        price_groups, price_groups.c.name == accounts.c.price_group
    )
)


def _info(row: Any) -> ApiKeyInfo:
    models = row["allowed_models"]
    expires = row["expires_at"]
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
        account_id=row["account_id"],
        multiplier_ppm=int(row["multiplier_ppm"]),
        price_group=row["price_group"],
        allowed_models=frozenset(models) if models else None,
        expires_at=_utc(expires) if expires is not None else None,
        daily_cap_nano=row["daily_cap_nano"],
        monthly_cap_nano=row["monthly_cap_nano"],
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
