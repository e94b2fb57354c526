"""Indexes that every settled request wrote into and nothing reads for it, made partial: the
ledger's key and account indexes hold the rows that are not debits (credits, adjustments: what
the console lists by key or account), the usage records' status index the requests that did
not end ok (the console's filter; an ok request is found by time). Three index writes fewer a
request (store/tables.py says why each is safe to leave out). On PostgreSQL, writes to the two
tables wait while the new indexes are built (a SHARE lock, as any index build in a migration
here): on a ledger of many millions of rows, migrate at a quiet hour.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (index, table, columns, the rows it keeps)
_PARTIAL = [
    ("ix_ledger_key_id", "ledger", ["key_id"], "kind != 'debit'"),
    ("ix_ledger_account_id", "ledger", ["account_id"], "kind != 'debit'"),
    ("ix_usage_records_status_started_at", "usage_records", ["status", "started_at"],
     "status != 'ok'"),
]  # fmt: skip


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":  # one process, before it serves
        for name, table, columns, where in _PARTIAL:
            op.drop_index(name, table_name=table)
            op.create_index(name, table, columns, sqlite_where=sa.text(where))
        return
    # Replicas still serving keep reading through the old index while the new one is built
    # (its SHARE lock holds back their writes to the table, not their reads); the old one goes,
    # and the new takes its name, just before this migration's transaction commits.
    for name, table, columns, where in _PARTIAL:
        op.create_index(f"{name}_partial", table, columns, postgresql_where=sa.text(where))
    for name, table, _, _ in _PARTIAL:
        op.drop_index(name, table_name=table)
        op.execute(f"ALTER INDEX {name}_partial RENAME TO {name}")


def downgrade() -> None:
    for name, table, columns, _ in _PARTIAL:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns)
