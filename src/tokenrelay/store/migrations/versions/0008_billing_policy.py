"""Billing policy: usage_records.reason (how the request ended, billing/policy.py) and
loss_nano (the vendor's cost of work the customer was not billed for) on usage records and
the daily roll-up.

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        # Records from before the policy say so rather than guess an outcome.
        batch.add_column(
            sa.Column("reason", sa.String(40), nullable=False, server_default="unrecorded")
        )
        batch.add_column(
            sa.Column("loss_nano", sa.BigInteger(), nullable=False, server_default=sa.text("0"))
        )
    with op.batch_alter_table("usage_daily") as batch:
        batch.add_column(
            sa.Column("loss_nano", sa.BigInteger(), nullable=False, server_default=sa.text("0"))
        )


def downgrade() -> None:
    with op.batch_alter_table("usage_daily") as batch:
        batch.drop_column("loss_nano")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("loss_nano")
        batch.drop_column("reason")
