"""A settlement batch on PostgreSQL: one asyncpg statement per table, every column an array.

Through SQLAlchemy the batch cost the gateway ~15 % of its CPU on PostgreSQL: the usage INSERT
went through insertmanyvalues (SQL rebuilt per batch, a bind processor per row and column),
and every statement through its execution context. Here each table takes one prepared
statement whose parameters are arrays (`unnest`), which asyncpg encodes in C.

The statements run on the asyncpg connection under the writer's SQLAlchemy connection. Its
adapter opens a transaction only when SQLAlchemy runs a statement, which this path never does,
so the batch opens an asyncpg transaction of its own (SQLAlchemy's commit is then a no-op).
asyncpg's errors are raised as SQLAlchemy's, as its adapter would raise them, so the writer's
retry and isolation logic reads them the same.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import Column, String, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tokenrelay.store.tables import usage_daily, usage_records


def _arrays(table: Table, columns: Sequence[str], first: int = 1) -> str:
    """`$1::type[], $2::type[], ...` for `columns` of `table`. Strings go as text: a cast to
    varchar(n) would cut a value that is too long, where the insert must fail as before."""

    def cast(col: Column[Any]) -> str:
        if isinstance(col.type, String):
            return "text[]"
        return f"{col.type.compile(dialect=postgresql.dialect())}[]"

    return ", ".join(f"${i}::{cast(table.c[c])}" for i, c in enumerate(columns, first))


def insert_usage_sql(columns: Sequence[str]) -> str:
    """The usage_records insert for rows given as one array per column, in `columns` order;
    returns the request ids that were new."""
    return (
        f"INSERT INTO usage_records ({', '.join(columns)}) "
        f"SELECT * FROM unnest({_arrays(usage_records, columns)}) "
        "ON CONFLICT (request_id) DO NOTHING RETURNING request_id"
    )


INSERT_DEBITS = (
    "INSERT INTO ledger (key_id, account_id, kind, amount_nano, request_id, note, created_at) "
    "SELECT k, a, 'debit', n, r, NULL, $5::timestamptz "
    "FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) AS d(k, a, n, r)"
)


def upsert_daily_sql(columns: Sequence[str], sums: Sequence[str]) -> str:
    """The usage_daily roll-up: one row per key (arrays in `columns` order), `sums` added to an
    existing row's."""
    return (
        f"INSERT INTO usage_daily ({', '.join(columns)}) "
        f"SELECT * FROM unnest({_arrays(usage_daily, columns)}) "
        "ON CONFLICT (account_id, day, model, vendor) DO UPDATE SET "
        + ", ".join(f"{c} = usage_daily.{c} + excluded.{c}" for c in sums)
    )


# The subquery locks the account rows in id order (its sort runs before its lock): writers
# on other replicas lock them in the same order, whatever join the planner picks.
UPDATE_BALANCES = (
    "UPDATE accounts SET balance_nano = accounts.balance_nano - v.c "
    "FROM (SELECT a.id, u.c FROM unnest($1::text[], $2::bigint[]) AS u(id, c) "
    "JOIN accounts a ON a.id = u.id ORDER BY a.id FOR UPDATE OF a) AS v "
    "WHERE accounts.id = v.id"
)


# What SQLAlchemy's adapter translates (to the DBAPI errors it wraps in its DBAPIError):
# everything asyncpg raises of its own, server errors and client-side ones alike. A connection
# the server ended mid-call can surface as InternalClientError ("another operation is in
# progress"), not only as InterfaceError.
_ASYNCPG_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)


@asynccontextmanager
async def transaction(conn: AsyncConnection) -> AsyncIterator[Any]:
    """The asyncpg connection under `conn`, in a transaction that commits when the block ends
    without error. asyncpg's errors leave as SQLAlchemy's DBAPIError (IntegrityError for a
    constraint), with `connection_invalidated` and `conn` invalidated when the connection is
    gone, as SQLAlchemy reports them; OSError and the like pass as they are, as they did."""
    driver: Any = (await conn.get_raw_connection()).driver_connection
    try:
        async with driver.transaction():
            yield driver
    except Exception as exc:
        gone = driver.is_closed()
        if gone:
            await conn.invalidate()
        if not isinstance(exc, _ASYNCPG_ERRORS):
            raise
        kind = (
            IntegrityError
            if isinstance(exc, asyncpg.IntegrityConstraintViolationError)
            else DBAPIError
        )
        raise kind(None, None, exc, hide_parameters=True, connection_invalidated=gone) from exc


async def insert_usage(driver: Any, sql: str, rows: Sequence[tuple[Any, ...]]) -> set[str]:
    """Insert `rows` (tuples in the order `sql` names the columns); the new request ids."""
    return {r[0] for r in await driver.fetch(sql, *zip(*rows, strict=True))}


async def apply(
    driver: Any,
    daily_sql: str,
    debits: Sequence[tuple[str, str, int, str]],
    daily: Sequence[tuple[Any, ...]],
    balances: Sequence[tuple[str, int]],
    now: dt.datetime,
) -> None:
    """What the new usage rows add: `debits` (key, account, amount, request id) to the ledger,
    `daily` (rows in the roll-up's column order) and `balances` (account, cost), sorted."""
    await driver.execute(INSERT_DEBITS, *zip(*debits, strict=True), now)
    await driver.execute(daily_sql, *zip(*daily, strict=True))
    await driver.execute(UPDATE_BALANCES, *zip(*balances, strict=True))
