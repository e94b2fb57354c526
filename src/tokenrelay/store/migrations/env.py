"""Alembic environment: runs on the connection that tokenrelay.store.migrate() hands it."""

from __future__ import annotations

from alembic import context

from tokenrelay.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "tokenrelay migrations run through `tokenrelay migrate` or tokenrelay.store.migrate(), "
        "not the alembic command line"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things in place; batch mode rebuilds the table there and is a
    # no-op wrapper on Postgres, so one migration script serves both.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
