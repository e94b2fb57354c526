"""Table definitions (SQLAlchemy Core). Schema changes go through an Alembic migration, and
here too: a new database is created from these tables directly (db.create_if_new), and
tests/test_new_database_schema.py holds that equal to what the migrations make.

Money is integer nano-USD (1e-9 USD) in BIGINT columns: exact, and 2^63 nano-USD is 9.2 billion
dollars. `accounts.balance_nano` is an account's prepaid balance, which all its API keys draw
on: the running total of its ledger rows, updated in the same transaction as each insert, so
reading a balance never sums the ledger.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    literal_column,
    text,
)

# SQLite only autoincrements an INTEGER PRIMARY KEY; BIGINT there would need explicit ids.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def _at(name: str, *, nullable: bool = False) -> Column[Any]:
    """An instant, stored in UTC (timestamptz on PostgreSQL; naive UTC on SQLite)."""
    return Column(name, DateTime(timezone=True), nullable=nullable)


def _serial_id() -> Column[Any]:
    """The `id` of an append-only table: the database numbers its rows."""
    return Column("id", BigId, primary_key=True, autoincrement=True)


# Explicit constraint names: identical on SQLite and Postgres, so later migrations can drop or
# alter them by name on both.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# ---------------------------------------------------------------- accounts (migration 0004)
# A customer account: the prepaid balance its keys spend, and the price group that turns the
# catalog's list prices (the upstream cost) into the customer's prices.
price_groups = Table(
    "price_groups",
    metadata,
    Column("name", String(64), primary_key=True),
    # Customer price = list price × multiplier_ppm / 1e6, rounded up to the nano-USD.
    Column("multiplier_ppm", BigInteger, nullable=False),
    Column("note", String(500), nullable=True),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(40), primary_key=True),  # acct_<12 hex>
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=True, unique=True),  # lower-cased; NULL: no sign-in
    Column("password_hash", String(200), nullable=True),  # argon2id; never leaves the store
    Column("balance_nano", BigInteger, nullable=False, server_default=text("0")),
    Column("price_group", String(64), ForeignKey("price_groups.name"), nullable=False),
    _at("created_at"),
    _at("disabled_at", nullable=True),
    # --- console (migration 0009): the customer's low-balance email threshold; NULL: none
    Column("low_balance_nano", BigInteger, nullable=True),
    _at("low_balance_alerted_at", nullable=True),
    Index("ix_accounts_disabled_at", "disabled_at"),
    # Migration 0007: the mailbox the email reaches (customers.email_address.mailbox_key), one
    # account each; no credit and no key before the address is verified; where it signed up.
    Column("email_key", String(320), nullable=True, unique=True),
    _at("email_verified_at", nullable=True),
    Column("signup_ip", String(64), nullable=True),
)

# Prepaid codes an operator hands out; stored hashed (sha256, like keys: 128 random bits).
# Redeemed once: the UPDATE that claims one requires `redeemed_by IS NULL`.
redemption_codes = Table(
    "redemption_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("batch_id", String(40), nullable=False),
    Column("amount_nano", BigInteger, nullable=False),
    _at("expires_at", nullable=True),
    _at("created_at"),
    Column("redeemed_by", String(40), ForeignKey("accounts.id"), nullable=True),
    _at("redeemed_at", nullable=True),
    Index("ix_redemption_codes_batch_id", "batch_id"),
)

# Operator console users (not customers; not the shared admin API token).
admin_users = Table(
    "admin_users",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    _at("created_at"),
    # --- console (migration 0009): owner | support | viewer; a TOTP secret once enrolled
    Column("role", String(16), nullable=False, server_default="owner"),
    Column("totp_secret", String(64), nullable=True),
)

# ---------------------------------------------------------------- console (migration 0009)
# Operator sign-ins, server-side: the signed cookie names one row (by its sha256), so "sign out
# everywhere" and removing an operator end every session at once, on every replica.
operator_sessions = Table(
    "operator_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("email", String(320), nullable=False),
    _at("created_at"),
    Index("ix_operator_sessions_email", "email"),
)

# Models an operator hid from customers (no row: shown and sold as the catalog says).
model_settings = Table(
    "model_settings",
    metadata,
    Column("model_id", String(200), primary_key=True),
    Column("hidden", Boolean, nullable=False),
    _at("updated_at"),
)

# A price group's multiplier for one model, instead of the group's own.
price_overrides = Table(
    "price_overrides",
    metadata,
    Column("group_name", String(64), primary_key=True),
    Column("model_id", String(200), primary_key=True),
    Column("multiplier_ppm", BigInteger, nullable=False),
)

# Alerts sent, by condition: one condition pages once per quiet period, from any replica.
alerts_sent = Table(
    "alerts_sent",
    metadata,
    Column("key", String(300), primary_key=True),
    _at("sent_at"),
)
# ---------------------------------------------------------------- end console

# Every operator action on money or accounts, with who and why.
audit_log = Table(
    "audit_log",
    metadata,
    _serial_id(),
    Column("actor", String(320), nullable=False),
    Column("action", String(64), nullable=False),
    Column("account_id", String(40), nullable=True),
    Column("amount_nano", BigInteger, nullable=True),
    Column("reason", String(500), nullable=True),
    _at("created_at"),
    Index("ix_audit_log_account_id", "account_id"),  # a customer's trail (console, 0009)
)

# Per account, UTC day, model and vendor: the sums of its usage records, kept by the settlement
# writers in the transaction that inserts the records (only records that were new count), so
# dashboards and margins read a few rows instead of summing 100k records.
usage_daily = Table(
    "usage_daily",
    metadata,
    Column("account_id", String(40), primary_key=True),
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD (UTC)
    Column("model", String(200), primary_key=True),
    Column("vendor", String(32), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),  # input + cache reads + cache writes
    Column("output_tokens", BigInteger, nullable=False),
    Column("cost_nano", BigInteger, nullable=False),
    Column("upstream_cost_nano", BigInteger, nullable=False),
    # migration 0008: the vendor's cost of work the customer was not billed for (policy.py)
    Column("loss_nano", BigInteger, nullable=False, server_default=text("0")),
    Index("ix_usage_daily_day", "day"),
)

# Stripe payments credited (checkout session -> account), so refunds and disputes, which name
# only the payment intent, find the account to debit.
stripe_payments = Table(
    "stripe_payments",
    metadata,
    Column("payment_intent", String(255), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("amount_nano", BigInteger, nullable=False),
    _at("created_at"),
)
# One-time tokens that are used up (migration 0007): a signed-out session's nonce, a submitted
# form's token. The primary key makes the first use win on every replica; rows go once expired.
spent_tokens = Table(
    "spent_tokens",
    metadata,
    Column("digest", String(64), primary_key=True),  # sha256 of purpose and token
    Column("purpose", String(16), nullable=False),
    _at("expires_at"),
    Index("ix_spent_tokens_expires_at", "expires_at"),
)
# Customer sign-ins (migration 0015): one row per signed cookie (by the sha256 of its nonce),
# so the account page lists them and can end one, or all, on every replica.
customer_sessions = Table(
    "customer_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    _at("created_at"),
    _at("last_seen_at"),
    Column("user_agent", String(200), nullable=False, server_default=""),
    Column("ip", String(64), nullable=False, server_default=""),
    Index("ix_customer_sessions_account_id", "account_id"),
)
# ---------------------------------------------------------------- end accounts

api_keys = Table(
    "api_keys",
    metadata,
    # `key_<12 hex>`: a stable, shareable handle (ledger and usage rows will reference it);
    # never derived from the secret.
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    # sha256 hex of the whole key (prefix included); the plaintext is never stored.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("key_hint", String(32), nullable=False),  # prefix + last 4 chars, for display
    _at("created_at"),
    _at("revoked_at", nullable=True),
    Column("rpm", Integer, nullable=True),  # requests per minute; NULL = no limit
    Column("tpm", Integer, nullable=True),  # tokens per minute; NULL = no limit
    # --- accounts (migration 0004): the account whose balance the key spends, and its limits
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("allowed_models", JSON, nullable=True),  # catalog ids; NULL = every model
    _at("expires_at", nullable=True),
    Column("daily_cap_nano", BigInteger, nullable=True),  # spend cap per UTC day; NULL = none
    Column("monthly_cap_nano", BigInteger, nullable=True),  # per UTC calendar month
    Index("ix_api_keys_account_id", "account_id"),
)

# Append-only: every change to a balance is one row here, and `api_keys.balance_nano` is their
# running sum, updated in the same transaction (`tokenrelay ledger verify` checks it).
ledger = Table(
    "ledger",
    metadata,
    _serial_id(),
    # The key that spent (debits) or was named by the operator (credits); NULL for credits to
    # the account as a whole (top-ups).
    Column("key_id", String(32), ForeignKey("api_keys.id"), nullable=True),
    Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # credit | debit | adjustment
    Column("amount_nano", BigInteger, nullable=False),  # signed: debits are negative
    # Set on debits only; UNIQUE is the idempotency guard (NULLs never collide).
    Column("request_id", String(100), nullable=True, unique=True),
    Column("note", String(500), nullable=True),
    _at("created_at"),
)
# Debits — one a request, nearly all of the ledger — are read by request id or summed whole,
# never listed by key or account (a request's charge is read from its usage record): the key and
# account indexes hold the other rows only (migration 0019), two index writes fewer a request
# to settle. A query by key or account states LEDGER_NOT_DEBIT itself, as a literal: a bound
# 'debit' would not show the planner (SQLite's, or PostgreSQL's generic plan) that the index
# covers the rows it asks for.
LEDGER_NOT_DEBIT = ledger.c.kind != literal_column("'debit'")
Index(
    "ix_ledger_key_id",
    ledger.c.key_id,
    sqlite_where=LEDGER_NOT_DEBIT,
    postgresql_where=LEDGER_NOT_DEBIT,
)
Index(
    "ix_ledger_account_id",
    ledger.c.account_id,
    sqlite_where=LEDGER_NOT_DEBIT,
    postgresql_where=LEDGER_NOT_DEBIT,
)

usage_records = Table(
    "usage_records",
    metadata,
    Column("request_id", String(100), primary_key=True),
    Column("key_id", String(32), ForeignKey("api_keys.id"), nullable=False),
    Column("model", String(200), nullable=False),  # catalog id
    Column("model_asked", String(200), nullable=False),  # what the client sent
    Column("vendor", String(32), nullable=False),
    Column("stream", Boolean, nullable=False),
    Column("fast_path", Boolean, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),  # includes reasoning
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),  # includes the 1h writes
    Column("cache_write_1h_tokens", BigInteger, nullable=False),
    Column("reasoning_tokens", BigInteger, nullable=False),
    Column("usage_source", String(16), nullable=False),  # vendor | estimated
    Column("cost_nano", BigInteger, nullable=False),  # what the customer pays
    Column("price_version_id", String(32), nullable=False),  # "catalog" or price_versions.id
    Column("status", String(16), nullable=False),  # ok | error | cancelled
    Column("error", String(500), nullable=True),
    Column("attempts", Integer, nullable=False),
    _at("started_at"),
    Column("duration_ms", Integer, nullable=True),
    Column("ttft_ms", Integer, nullable=True),
    # The client's session, when it names one (Claude Code's X-Claude-Code-Session-Id).
    Column("session_id", String(100), nullable=True),
    Index("ix_usage_records_key_id_started_at", "key_id", "started_at"),
    # --- accounts (migration 0004)
    Column("account_id", String(40), nullable=False),
    # The catalog's list price of the same usage: what the vendor bills the operator.
    Column("upstream_cost_nano", BigInteger, nullable=False, server_default=text("0")),
    Index("ix_usage_records_account_id_started_at", "account_id", "started_at"),
    Index("ix_usage_records_started_at", "started_at"),
    # --- billing policy (migration 0008): how the request ended (billing/policy.py's reason
    # code) and the part of upstream_cost_nano the customer was not billed for.
    Column("reason", String(40), nullable=False, server_default=text("'unrecorded'")),
    Column("loss_nano", BigInteger, nullable=False, server_default=text("0")),
    # --- console (migration 0014): the deployment (<vendor>/<name>) that answered; NULL when
    # none did, or recorded before 0014.
    Column("deployment", String(200), nullable=True),
    # What the receipt states beside the usage (0017): the CSV signs the same receipt again.
    Column("upstream_request_id", String(200), nullable=True),
    Column("multiplier_ppm", BigInteger, nullable=True),
)
# The console's requests by status (0009): the requests that did not end well, which are few;
# one that did is found by time (ix_usage_records_started_at) as well as by an index of nearly
# every row, which each request paid a write into (0019). A query for another status states
# USAGE_NOT_OK itself, as a literal (see LEDGER_NOT_DEBIT).
USAGE_NOT_OK = usage_records.c.status != literal_column("'ok'")
Index(
    "ix_usage_records_status_started_at",
    usage_records.c.status,
    usage_records.c.started_at,
    sqlite_where=USAGE_NOT_OK,
    postgresql_where=USAGE_NOT_OK,
)

# Operator prices; the catalog's own prices are the implicit version "catalog". Rates are
# decimal strings (USD per 1M tokens): exact on every backend, unlike SQLite's NUMERIC.
price_versions = Table(
    "price_versions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("model_id", String(200), nullable=False),
    _at("effective_from"),
    Column("input", String(40), nullable=False),
    Column("output", String(40), nullable=False),
    Column("cache_read", String(40), nullable=False),
    Column("cache_write", String(40), nullable=False),
    Column("cache_write_1h", String(40), nullable=False),
    Column("tiers", JSON, nullable=False),
    _at("created_at"),
    Column("note", Text, nullable=True),
    Index("ix_price_versions_model_id", "model_id"),
)

# Admin credits sent with an `Idempotency-Key`: a retry (the answer was lost, or the Redis
# update failed after the commit) replays the first answer instead of crediting twice. The
# primary key is the guard: of two concurrent retries one insert wins, the other rolls back.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("ledger_id", BigId, ForeignKey("ledger.id"), nullable=False),
    Column("balance_nano", BigInteger, nullable=False),  # the balance the first answer showed
    _at("created_at"),
)

# Deployments an operator drained, or whose key a vendor refused: every process and replica
# polls this small table (deployment_state.py), so a drain or restore made through any of them
# reaches all within a second. No row: the deployment as configured (in service).
deployment_states = Table(
    "deployment_states",
    metadata,
    Column("id", String(200), primary_key=True),  # <vendor>/<name>
    Column("drained", Boolean, nullable=False),
    Column("removed_reason", String(500), nullable=True),  # the vendor's refusal of the key
    Column("version", BigInteger, nullable=False),  # ns since the epoch of the last change
    _at("updated_at"),
)

# ---------------------------------------------------------------- batches (migration 0011)
# Files a customer uploaded (purpose "batch") and the output/error files of its batches (no
# content of their own: assembled from the batch's lines when read). Scoped to the account.
batch_files = Table(
    "batch_files",
    metadata,
    Column("id", String(40), primary_key=True),  # file-<24 hex>
    Column("account_id", String(40), nullable=False),
    Column("purpose", String(32), nullable=False),  # batch | batch_output
    Column("filename", String(255), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("content", LargeBinary, nullable=True),  # NULL: a batch's output or error file
    Column("batch_id", String(40), nullable=True),  # the batch an output/error file belongs to
    _at("created_at"),
    _at("deleted_at", nullable=True),
    Index("ix_batch_files_account_id", "account_id"),
)

# A batch job (OpenAI Batch API or Anthropic Message Batches): its lines run through the
# gateway's own request path, each billed on its own at `multiplier_ppm` (the account's price
# group × the catalog's batch discount).
batches = Table(
    "batches",
    metadata,
    Column("id", String(40), primary_key=True),  # batch_<hex> | msgbatch_<hex>
    Column("api", String(16), nullable=False),  # openai | anthropic
    Column("account_id", String(40), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("endpoint", String(64), nullable=False),  # /v1/chat/completions, /v1/messages, ...
    Column("input_file_id", String(40), nullable=True),
    Column("status", String(16), nullable=False),  # in_progress | cancelling | ended
    Column("multiplier_ppm", BigInteger, nullable=False),
    Column("hold_nano", BigInteger, nullable=False),  # Σ the lines' worst cases at creation
    Column("total", Integer, nullable=False),
    Column("meta", JSON, nullable=True),  # the client's metadata; the output/error file ids
    _at("created_at"),
    _at("expires_at"),
    _at("cancelling_at", nullable=True),
    _at("ended_at", nullable=True),
    _at("deleted_at", nullable=True),
    Index("ix_batches_account_id", "account_id"),
    Index("ix_batches_status", "status"),
)

# One request of a batch. status: pending -> running (claimed) -> succeeded | errored, or
# pending -> cancelled | expired. A line's request id (its usage record's) is
# `<batch id>-<line_no>`: a settlement retried after a crash is billed once.
batch_lines = Table(
    "batch_lines",
    metadata,
    _serial_id(),
    Column("batch_id", String(40), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("custom_id", String(200), nullable=False),
    Column("body", Text, nullable=False),  # the request body (JSON)
    Column("status", String(16), nullable=False),
    Column("hold_nano", BigInteger, nullable=False),  # the line's worst case, held for it
    _at("claimed_at", nullable=True),
    Column("status_code", Integer, nullable=True),
    Column("result", Text, nullable=True),  # the answer's body (JSON), in the client's format
    Column("cost_nano", BigInteger, nullable=True),
    # The vendor batch the line went into, "<vendor>:<vendor batch id>" (migration 0016).
    Column("vendor_job", String(160), nullable=True),
    Index("ix_batch_lines_batch_id", "batch_id", "line_no", unique=True),
    Index("ix_batch_lines_status", "status"),
    Index("ix_batch_lines_vendor_job", "vendor_job"),
)

# The gateway's own signing keys, by use (`receipts`: the Ed25519 key usage receipts are signed
# with, billing/receipts.py), for a deployment that configures none: every replica reads the one
# the first process created. Private: nothing but the signer reads this table.
signing_keys = Table(
    "signing_keys",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("private_key", String(200), nullable=False),  # base64url of the 32-byte seed
    _at("created_at"),
)

# ---------------------------------------------------------------- upstream accounts (0014)
# Deployments an operator added or edited in the console. A row whose id is a deployment of
# the catalog overrides what it sets (a NULL column: as configured); any other row adds a
# deployment. Every process applies a row whose `version` changed (deployment_state.py), so a
# new key or weight reaches every worker and replica without a restart. The key is stored
# Fernet-encrypted (`key_ciphertext`) or as an environment reference (`key_env`), never plain.
upstream_deployments = Table(
    "upstream_deployments",
    metadata,
    Column("id", String(200), primary_key=True),  # <vendor>/<name>
    Column("vendor", String(64), nullable=False),
    Column("name", String(100), nullable=False),
    Column("base_url", String(500), nullable=True),
    Column("key_ciphertext", Text, nullable=True),
    Column("key_env", String(200), nullable=True),
    Column("key_last4", String(8), nullable=True),
    Column("weight", Integer, nullable=True),
    Column("region", String(64), nullable=True),
    Column("models", JSON, nullable=True),  # catalog model ids; NULL: as configured (or all)
    Column("version", BigInteger, nullable=False),  # ns since the epoch of the last change
    Column("updated_by", String(320), nullable=False),
    _at("updated_at"),
)

# Each process's view of each deployment, written every few seconds: the console sums the
# rows that are fresh (in flight, served, failures, cooling) over every worker and replica.
deployment_health = Table(
    "deployment_health",
    metadata,
    Column("process", String(80), primary_key=True),  # host:pid:start
    Column("deployment_id", String(200), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("in_flight", Integer, nullable=False),
    Column("served", BigInteger, nullable=False),
    Column("failures", BigInteger, nullable=False),
    Column("last_error", String(500), nullable=True),
    _at("updated_at"),
)

# Every change of a price group's multiplier (model_id NULL) or of a per-model override: who,
# when, the old and the new multiplier (NULL: none, i.e. created or cleared).
price_multiplier_versions = Table(
    "price_multiplier_versions",
    metadata,
    _serial_id(),
    Column("group_name", String(64), nullable=False),
    Column("model_id", String(200), nullable=True),
    Column("old_ppm", BigInteger, nullable=True),
    Column("new_ppm", BigInteger, nullable=True),
    Column("actor", String(320), nullable=False),
    _at("created_at"),
    Index("ix_price_multiplier_versions_group_name", "group_name"),
)

# Addresses an operator blocked from signing up (the console's sign-ups per IP).
signup_blocks = Table(
    "signup_blocks",
    metadata,
    Column("ip", String(64), primary_key=True),
    Column("reason", String(500), nullable=False),
    Column("actor", String(320), nullable=False),
    _at("created_at"),
)
