"""batch_lines.vendor_job: the vendor batch a line went into ("<vendor>:<vendor batch id>"),
polled until it ends (tokenrelay.batches.vendor).

Revision ID: 0016
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("batch_lines") as table:
        table.add_column(sa.Column("vendor_job", sa.String(160), nullable=True))
    op.create_index("ix_batch_lines_vendor_job", "batch_lines", ["vendor_job"])


def downgrade() -> None:
    op.drop_index("ix_batch_lines_vendor_job", table_name="batch_lines")
    with op.batch_alter_table("batch_lines") as table:
        table.drop_column("vendor_job")
