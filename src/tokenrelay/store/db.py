"""Async engine from TOKENRELAY_DATABASE_URL (SQLite by default, or PostgreSQL) and migrations.

Operators write plain URLs (`sqlite:///./tokenrelay.db`, `postgres://user@host/db`); this module
picks the async driver so nobody has to know SQLAlchemy's `+aiosqlite` / `+asyncpg` spelling.
Alembic is configured in code (no alembic.ini at runtime) and runs through the same async
drivers, so Postgres needs no second, synchronous driver. It is imported only when a migration
is due: a database already at `SCHEMA_HEAD` is checked with one query, a new one (no table at
all) gets the head schema in one step without Alembic (`create_if_new`), and the server runs a
due migration in a child process, so Alembic's ~12 MB never stay in the serving process.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Table, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from tokenrelay.store.async_core import AsyncEngine, create_async_engine

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.dialects.sqlite import Insert

    from tokenrelay.store.async_core import AsyncConnection

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The newest revision in migrations/versions (a test holds it equal to Alembic's own head).
SCHEMA_HEAD = "0019"
# Any constant works; it only has to be the same in every replica.
_PG_MIGRATION_LOCK = 0x746F6B72  # "tokr"

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
}


def async_url(url: str) -> URL:
    """`sqlite:///x` -> `sqlite+aiosqlite:///x`, `postgres(ql)://` -> `postgresql+asyncpg://`."""
    parsed = make_url(url)
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None and parsed.drivername not in _DRIVERS.values():
        raise ValueError(
            f"unsupported database URL scheme {parsed.drivername!r}: "
            "use sqlite:///path/to.db or postgresql://user@host/db"
        )
    return parsed.set(drivername=driver) if driver else parsed


def redacted(url: str) -> str:
    """The URL for messages and logs, password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def dialect_insert(conn: AsyncConnection | Connection, table: Table) -> Insert:
    """INSERT into `table` in the dialect of `conn`'s database, for its ON CONFLICT clauses
    (PostgreSQL's and SQLite's insert() take the same ones)."""
    return _insert_of(conn.dialect.name)(table)


@functools.cache
def _insert_of(dialect: str) -> Callable[[Table], Insert]:
    # Imported when first used: a gateway on SQLite never loads the PostgreSQL dialect (~2 MB).
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert  # type: ignore[return-value]
    from sqlalchemy.dialects.sqlite import insert

    return insert


def is_memory_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def create_engine(url: str, *, schema: str | None = None, echo: bool = False) -> AsyncEngine:
    """Engine for `url`. `schema` (Postgres only) sets the search_path, e.g. to isolate tests."""
    target = async_url(url)
    # Parameters include key hashes: never in logs (echo, or sqlalchemy.engine at INFO/DEBUG)
    # nor in exception messages.
    kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
    if target.get_backend_name() == "sqlite":
        if schema:
            raise ValueError("schema= is only supported on PostgreSQL")
        if is_memory_sqlite(target):
            # Every new connection to :memory: is a new, empty database: share one.
            kwargs["poolclass"] = StaticPool
        engine = create_async_engine(target, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    kwargs["pool_pre_ping"] = True
    if schema:
        kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
    return create_async_engine(target, **kwargs)


# How long a SQLite writer waits for the write lock before "database is locked": the CLI
# while the server runs, the journal's commits and a burst of portal writes take turns
# (under a loaded run, 50 concurrent redemptions of one code had writers waiting past 5 s:
# SQLite's busy handler polls, it does not queue); as long as the pool's own 30 s wait.
SQLITE_BUSY_TIMEOUT_MS = 30_000


def sqlite_writer(cursor: Any) -> None:
    """What every connection that writes the SQLite store sets (the engine's, the settlement
    journal's): the busy timeout first, then WAL (readers never block the single writer, and a
    commit is one fsync of the log), then synchronous=NORMAL, durable under WAL across process
    crashes (SIGKILL); only an OS crash or power loss can drop the last commits, which is the
    usual trade for an embedded database."""
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    wal_mode(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")


def wal_mode(cursor: Any) -> None:
    """Put the database in WAL mode, once: a file already in it (persisted) is left alone. The
    switch is refused at once, not after the busy timeout, while another connection holds a
    lock (servers creating one new database together: "database is locked", 4 times in 80
    starts of four): it is retried, for as long as the busy timeout would have waited."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode")
            if cursor.fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        sqlite_writer(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


# ---------------------------------------------------------------- migrations


def migrate(url: str) -> None:
    """Upgrade the database at `url` to the newest schema. Synchronous: from async code run it
    with `asyncio.to_thread(migrate, url)`, or await `migrate_async` instead."""
    asyncio.run(migrate_async(url))


migrate_sync = migrate


async def migrate_async(target: str | AsyncEngine) -> None:
    """Upgrade to head. `target` is a database URL or an engine (which is left open)."""
    engine = create_engine(target) if isinstance(target, str) else target
    try:
        if await schema_is_current(engine) or await create_if_new(engine):
            return
        await upgrade_through_migrations(engine)
    finally:
        if isinstance(target, str):
            await engine.dispose()


async def upgrade_through_migrations(engine: AsyncEngine) -> None:
    """Alembic's upgrade to head, whatever the database holds (migrate_async's way for one
    that is not new)."""
    async with engine.connect() as conn:
        async with conn.begin():
            if conn.dialect.name == "postgresql":
                # Replicas starting together must not race to create the same tables; the
                # lock is released when this transaction ends.
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                )
            await conn.run_sync(_upgrade)
        if conn.dialect.name == "sqlite":
            # A migration may turn foreign-key enforcement off for its table rebuilds
            # (0004); the connection goes back to the pool with it on again.
            await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            await conn.commit()


# What the migrations leave in a new database besides its tables (0004's default price group).
_SEED = (
    "INSERT INTO price_groups (name, multiplier_ppm, note) "
    "VALUES ('default', 1000000, 'catalog list price')"
)


async def create_if_new(engine: AsyncEngine) -> bool:
    """Give a database without a single table the head schema directly: tables.py's tables and
    indexes, migration 0018's job queue on PostgreSQL, the rows the migrations seed, and
    alembic_version at SCHEMA_HEAD, in one transaction, without Alembic. The migrations (when
    there were eighteen) took ~2 s of CPU in a child process for every new database (most of
    the test suite's databases); tests/test_new_database_schema.py holds the two ways to the same
    schema and rows. False, with nothing done, when the database has a table: it migrates."""
    from tokenrelay.store.tables import metadata

    async with engine.connect() as conn, conn.begin():
        postgres = conn.dialect.name == "postgresql"
        if postgres:  # replicas starting together: one creates, the others find it done
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
            )
            found = "SELECT 1 FROM pg_tables WHERE schemaname = current_schema() LIMIT 1"
        else:  # the write lock first: DDL would not begin sqlite3's transaction itself
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
            found = "SELECT 1 FROM sqlite_master WHERE type = 'table' LIMIT 1"
        if (await conn.exec_driver_sql(found)).first() is not None:
            return False
        await conn.run_sync(metadata.create_all)
        if postgres:
            await _job_queue_schema(conn)
        await conn.exec_driver_sql(_SEED)
        await conn.exec_driver_sql(
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
            "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
        )
        await conn.execute(
            text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": SCHEMA_HEAD}
        )
    return True


async def _job_queue_schema(conn: AsyncConnection) -> None:
    """procrastinate's schema.sql, as migration 0018 runs it: several statements in one
    simple query (a prepared statement, as SQLAlchemy sends, holds one)."""
    spec = importlib.util.find_spec("procrastinate")  # its file, without importing it
    assert spec is not None and spec.submodule_search_locations
    sql = (Path(spec.submodule_search_locations[0]) / "sql" / "schema.sql").read_text()
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    await driver.execute(sql)


async def schema_is_current(engine: AsyncEngine) -> bool:
    """One query: is the database at SCHEMA_HEAD? False for a new, empty database."""
    try:
        async with engine.connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    except Exception:  # no alembic_version table yet
        return False
    return [v[0] for v in versions] == [SCHEMA_HEAD]


async def migrate_in_child(url: str) -> None:
    """Migrate in a child process (the server's own memory never holds Alembic). The URL goes
    through the environment: a command line is visible to every user of the machine."""
    code = "import os; from tokenrelay.store.db import migrate; migrate(os.environ['_TR_DB'])"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        env={**os.environ, "_TR_DB": url},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"database migration failed: {lines[-1] if lines else proc.returncode}")


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic config for our scripts; pass `connection` to run commands on it."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), "head")
