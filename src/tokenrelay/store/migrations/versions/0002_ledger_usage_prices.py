"""ledger, usage_records, price_versions; opening-balance credits for existing keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ledger",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_nano", sa.BigInteger(), nullable=False),
        sa.Column("request_id", sa.String(100), nullable=True),
        sa.Column("note", sa.String(500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"], name=op.f("fk_ledger_key_id_api_keys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger")),
        sa.UniqueConstraint("request_id", name=op.f("uq_ledger_request_id")),
    )
    op.create_index("ix_ledger_key_id", "ledger", ["key_id"])

    op.create_table(
        "usage_records",
        sa.Column("request_id", sa.String(100), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("model_asked", sa.String(200), nullable=False),
        sa.Column("vendor", sa.String(32), nullable=False),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("fast_path", sa.Boolean(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_1h_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
        sa.Column("usage_source", sa.String(16), nullable=False),
        sa.Column("cost_nano", sa.BigInteger(), nullable=False),
        sa.Column("price_version_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("ttft_ms", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"], name=op.f("fk_usage_records_key_id_api_keys")
        ),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_usage_records")),
    )
    op.create_index("ix_usage_records_key_id_started_at", "usage_records", ["key_id", "started_at"])

    op.create_table(
        "price_versions",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("model_id", sa.String(200), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("input", sa.String(40), nullable=False),
        sa.Column("output", sa.String(40), nullable=False),
        sa.Column("cache_read", sa.String(40), nullable=False),
        sa.Column("cache_write", sa.String(40), nullable=False),
        sa.Column("cache_write_1h", sa.String(40), nullable=False),
        sa.Column("tiers", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_price_versions")),
    )
    op.create_index("ix_price_versions_model_id", "price_versions", ["model_id"])

    # Balances from before the ledger existed become opening credits, so that every balance is
    # the sum of its ledger from here on.
    op.execute(
        "INSERT INTO ledger (key_id, kind, amount_nano, note, created_at) "
        "SELECT id, 'credit', balance_nano, 'opening balance (migration 0002)', created_at "
        "FROM api_keys WHERE balance_nano <> 0"
    )


def downgrade() -> None:
    op.drop_index("ix_price_versions_model_id", table_name="price_versions")
    op.drop_table("price_versions")
    op.drop_index("ix_usage_records_key_id_started_at", table_name="usage_records")
    op.drop_table("usage_records")
    op.drop_index("ix_ledger_key_id", table_name="ledger")
    op.drop_table("ledger")
