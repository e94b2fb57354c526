"""Where state is kept: the database, Redis, and what the gateway keeps in them."""

from __future__ import annotations

from typing import Annotated

from tokenrelay.settings.group import Check, Group, env
from tokenrelay.settings.secret import SecretStr


class StoreSettings(Group):
    database_url: str = env("TOKENRELAY_DATABASE_URL", "sqlite:///./tokenrelay.db")
    redis_url: str | None = env("TOKENRELAY_REDIS_URL", None)
    # Prefix of every Redis key the gateway writes (holds, rate limits, price notices).
    redis_prefix: str = env("TOKENRELAY_REDIS_PREFIX", "tokenrelay:")
    reasoning_cache_ttl_s: int = env("TOKENRELAY_REASONING_CACHE_TTL", 24 * 3600)
    # Encrypts vendor keys an operator stores in the console (Fernet, derived from this
    # string); unset, the console stores only `env:NAME` references.
    secret_key: Annotated[
        SecretStr | None, Check(lambda s: len(s) >= 16, "at least 16 characters")
    ] = env("TOKENRELAY_SECRET_KEY", None)

    @property
    def embedded(self) -> bool:
        """The embedded default (SQLite, one process): a demo or a developer's machine."""
        return self.database_url.startswith("sqlite")
