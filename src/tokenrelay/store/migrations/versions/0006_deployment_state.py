"""deployment_states: drain/restore and refused keys shared by every process and replica.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deployment_states",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("drained", sa.Boolean(), nullable=False),
        sa.Column("removed_reason", sa.String(500), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_states")),
    )


def downgrade() -> None:
    op.drop_table("deployment_states")
