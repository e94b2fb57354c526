"""usage_records.upstream_request_id and multiplier_ppm: what a receipt states that the record
did not keep, so a receipt signed again later (the CSV export) is the one the answer carried.

Revision ID: 0017
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("upstream_request_id", sa.String(200), nullable=True))
        batch.add_column(sa.Column("multiplier_ppm", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("multiplier_ppm")
        batch.drop_column("upstream_request_id")
