"""accounts and price groups: a customer account owns the balance, its keys draw on it;
redemption codes, operator console users and the operator audit log.

Every existing key becomes the only key of its own account (`acct_<key id>`), which takes the
key's balance; ledger rows and usage records name the account too. Usage records gain the
upstream (list-price) cost beside the customer's cost; for rows from before, in the `default`
price group (multiplier 1), the two are equal.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    _foreign_keys_off()
    op.create_table(
        "price_groups",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("multiplier_ppm", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_price_groups")),
    )
    op.execute(
        "INSERT INTO price_groups (name, multiplier_ppm, note) "
        "VALUES ('default', 1000000, 'catalog list price')"
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("password_hash", sa.String(200), nullable=True),
        sa.Column("balance_nano", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("price_group", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["price_group"],
            ["price_groups.name"],
            name=op.f("fk_accounts_price_group_price_groups"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("email", name=op.f("uq_accounts_email")),
    )
    # One account per existing key, holding the key's balance: nothing moves but the owner.
    op.execute(
        "INSERT INTO accounts (id, name, balance_nano, price_group, created_at) "
        "SELECT 'acct_' || id, name, balance_nano, 'default', created_at FROM api_keys"
    )

    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("account_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("allowed_models", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("daily_cap_nano", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("monthly_cap_nano", sa.BigInteger(), nullable=True))
    op.execute("UPDATE api_keys SET account_id = 'acct_' || id")
    with op.batch_alter_table("api_keys") as batch:
        batch.alter_column("account_id", existing_type=sa.String(40), nullable=False)
        batch.create_foreign_key(
            op.f("fk_api_keys_account_id_accounts"), "accounts", ["account_id"], ["id"]
        )
        batch.create_index("ix_api_keys_account_id", ["account_id"])
        batch.drop_column("balance_nano")

    with op.batch_alter_table("ledger") as batch:
        batch.add_column(sa.Column("account_id", sa.String(40), nullable=True))
    op.execute(
        "UPDATE ledger SET account_id = "
        "(SELECT account_id FROM api_keys WHERE api_keys.id = ledger.key_id)"
    )
    with op.batch_alter_table("ledger") as batch:
        batch.alter_column("account_id", existing_type=sa.String(40), nullable=False)
        batch.alter_column("key_id", existing_type=sa.String(32), nullable=True)
        batch.create_foreign_key(
            op.f("fk_ledger_account_id_accounts"), "accounts", ["account_id"], ["id"]
        )
        batch.create_index("ix_ledger_account_id", ["account_id"])

    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("account_id", sa.String(40), nullable=True))
        batch.add_column(
            sa.Column(
                "upstream_cost_nano", sa.BigInteger(), server_default=sa.text("0"), nullable=False
            )
        )
    op.execute(
        "UPDATE usage_records SET upstream_cost_nano = cost_nano, account_id = "
        "(SELECT account_id FROM api_keys WHERE api_keys.id = usage_records.key_id)"
    )
    with op.batch_alter_table("usage_records") as batch:
        batch.alter_column("account_id", existing_type=sa.String(40), nullable=False)
        batch.create_index("ix_usage_records_account_id_started_at", ["account_id", "started_at"])
        batch.create_index("ix_usage_records_started_at", ["started_at"])
    op.create_table(
        "redemption_codes",
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("batch_id", sa.String(40), nullable=False),
        sa.Column("amount_nano", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("redeemed_by", sa.String(40), nullable=True),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["redeemed_by"], ["accounts.id"], name=op.f("fk_redemption_codes_redeemed_by_accounts")
        ),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_redemption_codes")),
    )
    op.create_index("ix_redemption_codes_batch_id", "redemption_codes", ["batch_id"])
    op.create_table(
        "admin_users",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_users")),
        sa.UniqueConstraint("email", name=op.f("uq_admin_users_email")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=True),
        sa.Column("amount_nano", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_table(
        "usage_daily",
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("vendor", sa.String(32), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_nano", sa.BigInteger(), nullable=False),
        sa.Column("upstream_cost_nano", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "account_id", "day", "model", "vendor", name=op.f("pk_usage_daily")
        ),
    )
    op.create_index("ix_usage_daily_day", "usage_daily", ["day"])
    op.create_table(
        "stripe_payments",
        sa.Column("payment_intent", sa.String(255), nullable=False),
        sa.Column("account_id", sa.String(40), nullable=False),
        sa.Column("amount_nano", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_stripe_payments_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("payment_intent", name=op.f("pk_stripe_payments")),
    )
    day = (
        "to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        if op.get_bind().dialect.name == "postgresql"
        else "substr(started_at, 1, 10)"
    )
    op.execute(
        "INSERT INTO usage_daily (account_id, day, model, vendor, requests, errors, "
        "input_tokens, output_tokens, cost_nano, upstream_cost_nano) "
        f"SELECT account_id, {day}, model, vendor, COUNT(*), "
        "SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END), "
        "SUM(input_tokens + cache_read_tokens + cache_write_tokens), SUM(output_tokens), "
        "SUM(cost_nano), SUM(upstream_cost_nano) FROM usage_records "
        f"GROUP BY account_id, {day}, model, vendor"
    )
    _check_foreign_keys()


def downgrade() -> None:
    """Back to one balance per key: each key takes its account's balance. An account with
    several keys, or with credits to no key, cannot be split: refused."""
    bind = op.get_bind()
    shared = bind.execute(
        sa.text("SELECT account_id FROM api_keys GROUP BY account_id HAVING COUNT(*) > 1")
    ).first()
    unkeyed = bind.execute(sa.text("SELECT id FROM ledger WHERE key_id IS NULL")).first()
    if shared is not None or unkeyed is not None:
        raise RuntimeError(
            "accounts with several keys or account-level credits cannot be downgraded to "
            "per-key balances"
        )
    _foreign_keys_off()
    op.drop_table("stripe_payments")
    op.drop_index("ix_usage_daily_day", table_name="usage_daily")
    op.drop_table("usage_daily")
    op.drop_table("audit_log")
    op.drop_table("admin_users")
    op.drop_index("ix_redemption_codes_batch_id", table_name="redemption_codes")
    op.drop_table("redemption_codes")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_index("ix_usage_records_started_at")
        batch.drop_index("ix_usage_records_account_id_started_at")
        batch.drop_column("upstream_cost_nano")
        batch.drop_column("account_id")
    with op.batch_alter_table("ledger") as batch:
        batch.drop_index("ix_ledger_account_id")
        batch.drop_constraint(op.f("fk_ledger_account_id_accounts"), type_="foreignkey")
        batch.drop_column("account_id")
        batch.alter_column("key_id", existing_type=sa.String(32), nullable=False)
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("balance_nano", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
        )
    op.execute(
        "UPDATE api_keys SET balance_nano = "
        "(SELECT balance_nano FROM accounts WHERE accounts.id = api_keys.account_id)"
    )
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index("ix_api_keys_account_id")
        batch.drop_constraint(op.f("fk_api_keys_account_id_accounts"), type_="foreignkey")
        for column in (
            "monthly_cap_nano",
            "daily_cap_nano",
            "expires_at",
            "allowed_models",
            "account_id",
        ):
            batch.drop_column(column)
    op.drop_table("accounts")
    op.drop_table("price_groups")
    _check_foreign_keys()


def _foreign_keys_off() -> None:
    """SQLite: batch mode rebuilds tables that others reference (DROP + RENAME), which fails
    with foreign keys enforced once rows reference them (a deferred check does not help: the
    DROP's violations are never counted back). SQLite's own recipe: enforcement off, rebuild,
    `foreign_key_check`. The pragma only works outside a transaction, which is where a
    database with rows (upgraded from 0003) stands here; a new database has no rows to trip
    on. `migrate_async` turns enforcement back on after the commit."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA foreign_keys=OFF")


def _check_foreign_keys() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        broken = bind.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise RuntimeError(f"migration 0004 left dangling references: {broken[:5]}")
