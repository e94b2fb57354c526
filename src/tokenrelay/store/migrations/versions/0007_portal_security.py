"""Portal security: verified email before credit or keys, one account per mailbox, the
sign-up address the operator sees, and spent one-time tokens (ended sessions, submitted forms).

Accounts that exist already keep working: their email counts as verified from their creation.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("email_key", sa.String(320), nullable=True))
        batch.add_column(sa.Column("email_verified_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("signup_ip", sa.String(64), nullable=True))
    op.execute(
        "UPDATE accounts SET email_key = email, email_verified_at = created_at "
        "WHERE email IS NOT NULL"
    )
    with op.batch_alter_table("accounts") as batch:
        batch.create_unique_constraint(op.f("uq_accounts_email_key"), ["email_key"])
    op.create_table(
        "spent_tokens",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_spent_tokens")),
    )
    op.create_index(op.f("ix_spent_tokens_expires_at"), "spent_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_spent_tokens_expires_at"), table_name="spent_tokens")
    op.drop_table("spent_tokens")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_constraint(op.f("uq_accounts_email_key"), type_="unique")
        batch.drop_column("signup_ip")
        batch.drop_column("email_verified_at")
        batch.drop_column("email_key")
