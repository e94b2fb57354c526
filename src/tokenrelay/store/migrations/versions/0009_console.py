"""The operator console: operator roles, TOTP and server-side sessions; models hidden from
customers; per-model price overrides per group; customers' low-balance alert threshold; sent
alerts (so one condition pages once).

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("admin_users") as batch:
        # Operators made before roles existed ran everything: they stay owners.
        batch.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="owner"))
        batch.add_column(sa.Column("totp_secret", sa.String(64), nullable=True))
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("low_balance_nano", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("low_balance_alerted_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.create_index("ix_accounts_disabled_at", ["disabled_at"])
    op.create_table(
        "operator_sessions",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_operator_sessions")),
    )
    op.create_index("ix_operator_sessions_email", "operator_sessions", ["email"])
    op.create_table(
        "model_settings",
        sa.Column("model_id", sa.String(200), nullable=False),
        sa.Column("hidden", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model_id", name=op.f("pk_model_settings")),
    )
    op.create_table(
        "price_overrides",
        sa.Column("group_name", sa.String(64), nullable=False),
        sa.Column("model_id", sa.String(200), nullable=False),
        sa.Column("multiplier_ppm", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("group_name", "model_id", name=op.f("pk_price_overrides")),
    )
    op.create_table(
        "alerts_sent",
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_alerts_sent")),
    )
    op.create_index("ix_usage_records_status_started_at", "usage_records", ["status", "started_at"])
    op.create_index("ix_audit_log_account_id", "audit_log", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_account_id", "audit_log")
    op.drop_index("ix_usage_records_status_started_at", "usage_records")
    op.drop_table("alerts_sent")
    op.drop_table("price_overrides")
    op.drop_table("model_settings")
    op.drop_index("ix_operator_sessions_email", "operator_sessions")
    op.drop_table("operator_sessions")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_index("ix_accounts_disabled_at")
        batch.drop_column("low_balance_alerted_at")
        batch.drop_column("low_balance_nano")
    with op.batch_alter_table("admin_users") as batch:
        batch.drop_column("totp_secret")
        batch.drop_column("role")
