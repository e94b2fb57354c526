"""Indexes that every settled request wrote into and nothing reads for it, made partial: the
ledger's key and account indexes hold the rows that are not debits (credits, adjustments: what
the console lists by key or account), the usage records' status index the requests that did
not end ok (the console's filter; an ok request is found by time). Three index writes fewer a
request (store/tables.py says why each is safe to leave out).

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
    for name, table, columns, where in _PARTIAL:
        op.drop_index(name, table_name=table)
        op.create_index(
            name,
            table,
            columns,
            sqlite_where=sa.text(where),
            postgresql_where=sa.text(where),
        )


def downgrade() -> None:
    for name, table, columns, _ in _PARTIAL:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns)
