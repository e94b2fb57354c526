"""Where state is kept: the database, Redis, and what the gateway keeps in them."""

from __future__ import annotations

from pydantic import Field, SecretStr

from tokenrelay.settings.group import Group


class StoreSettings(Group):
    database_url: str = Field("sqlite:///./tokenrelay.db", alias="TOKENRELAY_DATABASE_URL")
    redis_url: str | None = Field(None, alias="TOKENRELAY_REDIS_URL")
    # Prefix of every Redis key the gateway writes (holds, rate limits, price notices).
    redis_prefix: str = Field("tokenrelay:", alias="TOKENRELAY_REDIS_PREFIX")
    reasoning_cache_ttl_s: int = Field(24 * 3600, alias="TOKENRELAY_REASONING_CACHE_TTL")
    # Encrypts vendor keys an operator stores in the console (Fernet, derived from this
    # string); unset, the console stores only `env:NAME` references.
    secret_key: SecretStr | None = Field(None, alias="TOKENRELAY_SECRET_KEY", min_length=16)

    @property
    def embedded(self) -> bool:
        """The embedded default (SQLite, one process): a demo or a developer's machine."""
        return self.database_url.startswith("sqlite")
