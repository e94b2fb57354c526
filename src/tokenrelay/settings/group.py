"""What every group of settings shares: read from the environment by each field's alias (the
variable's public name), unknown variables ignored, and constructible by field name in code."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class Group(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)
