"""Console: the deployment that answered each request (usage_records.deployment), upstream
deployments added or edited by operators (keys encrypted), each process's deployment health,
price multiplier versions, sign-up IP blocks.

Revision ID: 0014
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("deployment", sa.String(200), nullable=True))
    op.create_table(
        "upstream_deployments",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("vendor", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("base_url", sa.String(500), nullable=True),
        sa.Column("key_ciphertext", sa.Text(), nullable=True),
        sa.Column("key_env", sa.String(200), nullable=True),
        sa.Column("key_last4", sa.String(8), nullable=True),
        sa.Column("weight", sa.Integer(), nullable=True),
        sa.Column("region", sa.String(64), nullable=True),
        sa.Column("models", sa.JSON(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_by", sa.String(320), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upstream_deployments")),
    )
    op.create_table(
        "deployment_health",
        sa.Column("process", sa.String(80), nullable=False),
        sa.Column("deployment_id", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("in_flight", sa.Integer(), nullable=False),
        sa.Column("served", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("process", "deployment_id", name=op.f("pk_deployment_health")),
    )
    op.create_table(
        "price_multiplier_versions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("group_name", sa.String(64), nullable=False),
        sa.Column("model_id", sa.String(200), nullable=True),
        sa.Column("old_ppm", sa.BigInteger(), nullable=True),
        sa.Column("new_ppm", sa.BigInteger(), nullable=True),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_price_multiplier_versions")),
    )
    op.create_index(
        "ix_price_multiplier_versions_group_name", "price_multiplier_versions", ["group_name"]
    )
    op.create_table(
        "signup_blocks",
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ip", name=op.f("pk_signup_blocks")),
    )


def downgrade() -> None:
    op.drop_table("signup_blocks")
    op.drop_index("ix_price_multiplier_versions_group_name", "price_multiplier_versions")
    op.drop_table("price_multiplier_versions")
    op.drop_table("deployment_health")
    op.drop_table("upstream_deployments")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("deployment")
