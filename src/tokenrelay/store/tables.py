"""Table definitions (SQLAlchemy Core). Schema changes go through an Alembic migration.

Money is integer nano-USD (1e-9 USD) in BIGINT columns: exact, and 2^63 nano-USD is 9.2 billion
dollars. `api_keys.balance_nano` is the key's spendable balance; when the append-only ledger
arrives it becomes the running total of that key's ledger rows, updated in the same transaction
as each insert, so reading a balance never sums the ledger.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, text

# Explicit constraint names: identical on SQLite and Postgres, so later migrations can drop or
# alter them by name on both.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

api_keys = Table(
    "api_keys",
    metadata,
    # `key_<12 hex>`: a stable, shareable handle (ledger and usage rows will reference it);
    # never derived from the secret.
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    # sha256 hex of the whole key (prefix included); the plaintext is never stored.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("key_hint", String(32), nullable=False),  # prefix + last 4 chars, for display
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("balance_nano", BigInteger, nullable=False, server_default=text("0")),
    Column("rpm", Integer, nullable=True),  # requests per minute; NULL = no limit
    Column("tpm", Integer, nullable=True),  # tokens per minute; NULL = no limit
)
