"""procrastinate's schema (its jobs, workers, locks and events tables, types and functions): the
job queue that runs batch lines on PostgreSQL (batches/queue.py). SQLite has none: the
embedded default runs batch lines in-process.

The SQL is procrastinate's own `schema.sql` of the version installed (pinned in pyproject);
an upgrade of procrastinate that brings migrations of its schema adds them here as a new
revision (procrastinate/sql/migrations/).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alembic import op
from sqlalchemy.util import await_only

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    import procrastinate

    _script((Path(procrastinate.__file__).parent / "sql" / "schema.sql").read_text())


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _script(
        """
        DO $$
        DECLARE f record;
        BEGIN
          FOR f IN SELECT p.oid::regprocedure AS sig FROM pg_proc p
                   JOIN pg_namespace n ON n.oid = p.pronamespace
                   WHERE p.proname LIKE 'procrastinate%' AND n.nspname = current_schema()
          LOOP EXECUTE 'DROP FUNCTION IF EXISTS ' || f.sig || ' CASCADE'; END LOOP;
        END $$;
        DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers,
          procrastinate_jobs, procrastinate_workers CASCADE;
        -- every type of its own: enums and the composite types (procrastinate_job_to_defer_v1,
        -- ...) that a later upgrade would otherwise find already there
        DO $$
        DECLARE t record;
        BEGIN
          FOR t IN SELECT ty.oid::regtype AS name FROM pg_type ty
                   JOIN pg_namespace n ON n.oid = ty.typnamespace
                   LEFT JOIN pg_class c ON c.oid = ty.typrelid
                   WHERE ty.typname LIKE 'procrastinate%' AND n.nspname = current_schema()
                     AND (ty.typtype = 'e' OR c.relkind = 'c')
          LOOP EXECUTE 'DROP TYPE IF EXISTS ' || t.name || ' CASCADE'; END LOOP;
        END $$;
        """
    )


def _script(sql: str) -> None:
    """Several statements at once: asyncpg's simple query protocol (a prepared statement, as
    SQLAlchemy sends, holds one)."""
    driver = op.get_bind().connection.driver_connection
    assert driver is not None
    await_only(driver.execute(sql))
