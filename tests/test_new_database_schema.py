"""A new database gets the head schema in one step (store/db.py `create_if_new`: tables.py's
tables, the job queue's schema on PostgreSQL, the seeded rows, alembic_version) instead of
through the migrations. Both ways must leave the same database — tables, columns with
their types, nullability and defaults, indexes, constraints, the job queue's functions and
types, and every row — on SQLite and on PostgreSQL; a database that has any table is left to
the migrations; servers starting together on one new database create it once."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from backends import backend
from tokenrelay.store.db import (
    SCHEMA_HEAD,
    create_engine,
    create_if_new,
    schema_is_current,
    upgrade_through_migrations,
)


async def _through_migrations(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade_through_migrations(engine)
    finally:
        await engine.dispose()


async def _created(url: str) -> bool:
    engine = create_engine(url)
    try:
        made = await create_if_new(engine)
        assert await schema_is_current(engine)
        return made
    finally:
        await engine.dispose()


def _sqlite(path: Path) -> dict[str, Any]:
    """Every table's columns by name (SQLite appends a column a migration adds, so the order
    differs where tables.py lists it in place; nothing reads columns by position), indexes,
    foreign keys and rows."""
    c = sqlite3.connect(path)
    out: dict[str, Any] = {}
    tables = c.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    for (name,) in tables:
        columns = {r[1]: r[2:] for r in c.execute(f"PRAGMA table_info('{name}')")}
        indexes = set()
        for _, index, unique, origin, partial in c.execute(f"PRAGMA index_list('{name}')"):
            cols = tuple(r[2] for r in c.execute(f"PRAGMA index_info('{index}')"))
            # an automatic index's name numbers it among its table's: its columns name it
            indexes.add((index if origin == "c" else origin, unique, partial, cols))
        keys = sorted(r[2:] for r in c.execute(f"PRAGMA foreign_key_list('{name}')"))
        cursor = c.execute(f'SELECT * FROM "{name}"')
        names = [d[0] for d in cursor.description]
        rows = sorted(sorted(zip(names, r, strict=True)) for r in cursor)
        out[name] = (columns, indexes, keys, rows)
    c.close()
    return out


_PG = {
    "columns": "SELECT table_name, column_name, data_type, is_nullable, column_default,"
    " character_maximum_length FROM information_schema.columns"
    " WHERE table_schema = current_schema()",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes"
    " WHERE schemaname = current_schema()",
    "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
    " FROM pg_constraint WHERE connamespace = current_schema()::regnamespace",
    "functions": "SELECT p.oid::regprocedure::text, md5(p.prosrc) FROM pg_proc p"
    " WHERE p.pronamespace = current_schema()::regnamespace",
    "types": "SELECT typname, typtype FROM pg_type"
    " WHERE typnamespace = current_schema()::regnamespace AND typtype IN ('e', 'c')",
    "sequences": "SELECT sequence_name, data_type FROM information_schema.sequences"
    " WHERE sequence_schema = current_schema()",
    "triggers": "SELECT event_object_table, trigger_name, event_manipulation,"
    " action_statement FROM information_schema.triggers",
}


async def _postgres(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        out: dict[str, Any] = {k: {tuple(r) for r in await conn.fetch(q)} for k, q in _PG.items()}
        for (table,) in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ):
            rows = await conn.fetch(f'SELECT * FROM "{table}"')
            out[f"rows {table}"] = sorted(repr(sorted(dict(r).items())) for r in rows)
        return out
    finally:
        await conn.close()


def test_a_new_sqlite_database_is_what_the_migrations_make(tmp_path: Path) -> None:
    asyncio.run(_through_migrations(f"sqlite:///{tmp_path}/migrated.db"))
    assert asyncio.run(_created(f"sqlite:///{tmp_path}/new.db"))
    migrated, new = _sqlite(tmp_path / "migrated.db"), _sqlite(tmp_path / "new.db")
    assert set(new) == set(migrated)
    for table in migrated:
        assert new[table] == migrated[table], table
    assert migrated["alembic_version"][3] == [[("version_num", SCHEMA_HEAD)]]
    assert migrated["price_groups"][3]  # the seeded default group: rows are compared too


def test_a_new_postgres_database_is_what_the_migrations_make(tmp_path: Path) -> None:
    with backend("postgres+redis", tmp_path) as a, backend("postgres+redis", tmp_path) as b:
        asyncio.run(_through_migrations(a.database_url))
        assert asyncio.run(_created(b.database_url))
        migrated, new = (
            asyncio.run(_postgres(a.database_url)),
            asyncio.run(_postgres(b.database_url)),
        )
    assert any("procrastinate" in f[0] for f in migrated["functions"])  # 0018's job queue
    for what in migrated.keys() | new.keys():
        assert new.get(what) == migrated.get(what), what


def test_a_database_with_a_table_is_left_to_the_migrations(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE api_keys (id VARCHAR(32) PRIMARY KEY)")

    async def run() -> bool:
        engine = create_engine(f"sqlite:///{path}")
        try:
            return await create_if_new(engine)
        finally:
            await engine.dispose()

    assert asyncio.run(run()) is False
    with sqlite3.connect(path) as c:
        tables = c.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    assert tables == [("api_keys",)]


@pytest.mark.parametrize("kind", ["sqlite", "postgres+redis"])
def test_servers_starting_together_create_a_new_database_once(kind: str, tmp_path: Path) -> None:
    with backend(kind, tmp_path) as b:

        async def together() -> list[bool]:
            return list(await asyncio.gather(*(_created(b.database_url) for _ in range(4))))

        assert sorted(asyncio.run(together())) == [False, False, False, True]
