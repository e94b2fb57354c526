"""Persistence: SQLAlchemy tables, the async engine (SQLite or Postgres) and migrations."""

from tokenrelay.store.db import create_engine, migrate, migrate_async, migrate_sync, redacted

__all__ = ["create_engine", "migrate", "migrate_async", "migrate_sync", "redacted"]
