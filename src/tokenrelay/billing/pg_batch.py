"""A settlement batch on PostgreSQL: one asyncpg statement, every usage column an array.

Through SQLAlchemy the batch cost the gateway ~15 % of its CPU on PostgreSQL: the usage INSERT
went through insertmanyvalues (SQL rebuilt per batch, a bind processor per row and column),
and every statement through its execution context. Here the batch is one prepared statement
whose parameters are arrays (`unnest`, encoded by asyncpg in C): the usage rows are inserted
and the rows that were new (RETURNING) feed, in data-modifying CTEs of the same statement,
their ledger debits, the usage_daily roll-up and the account balances. One statement is one
transaction by itself: no BEGIN and COMMIT round trips (each round trip costs the gateway
some 40 µs of CPU, as much as encoding 300 rows). The roll-up is writer.rollup's, in SQL.

The statement runs on the asyncpg connection under the writer's SQLAlchemy connection, whose
adapter starts no transaction as long as SQLAlchemy runs no statement itself. asyncpg's errors
are raised as SQLAlchemy's, as its adapter would raise them, so the writer's retry and
isolation logic reads them the same.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import Column, String, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, IntegrityError

from tokenrelay.store.async_core import AsyncConnection
from tokenrelay.store.tables import usage_records


def _arrays(table: Table, columns: Sequence[str], first: int = 1) -> str:
    """`$1::type[], $2::type[], ...` for `columns` of `table`. Strings go as text: a cast to
    varchar(n) would cut a value that is too long, where the insert must fail as before."""

    def cast(col: Column[Any]) -> str:
        if isinstance(col.type, String):
            return "text[]"
        return f"{col.type.compile(dialect=postgresql.dialect())}[]"

    return ", ".join(f"${i}::{cast(table.c[c])}" for i, c in enumerate(columns, first))


@functools.cache
def settle_sql(columns: tuple[str, ...], sums: tuple[str, ...]) -> str:
    """The batch: usage rows as one array per column in `columns` order, then the ledger's
    `created_at`; returns the request ids that were new. Only new rows are debited, rolled up
    (`sums` added to an existing usage_daily row's) and taken off their account's balance."""
    n = len(columns)
    return f"""
WITH new AS (
    INSERT INTO usage_records ({", ".join(columns)})
    SELECT * FROM unnest({_arrays(usage_records, columns)})
    ON CONFLICT (request_id) DO NOTHING
    RETURNING request_id, key_id, account_id, started_at, model, vendor, status,
        input_tokens + cache_read_tokens + cache_write_tokens AS tokens_in, output_tokens,
        cost_nano, upstream_cost_nano, loss_nano
), debits AS (
    INSERT INTO ledger (key_id, account_id, kind, amount_nano, request_id, note, created_at)
    SELECT key_id, account_id, 'debit', -cost_nano, request_id, NULL, ${n + 1}::timestamptz
    FROM new
), daily AS (
    INSERT INTO usage_daily (account_id, day, model, vendor, requests, errors, input_tokens,
        output_tokens, cost_nano, upstream_cost_nano, loss_nano)
    SELECT account_id, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), model, vendor,
        count(*), count(*) FILTER (WHERE status = 'error'), sum(tokens_in), sum(output_tokens),
        sum(cost_nano), sum(upstream_cost_nano), sum(loss_nano)
    FROM new GROUP BY 1, 2, 3, 4
    -- Row locks in writer.rollup's order (Python sorts by code point: COLLATE "C").
    ORDER BY account_id COLLATE "C", 2, model COLLATE "C", vendor COLLATE "C"
    ON CONFLICT (account_id, day, model, vendor) DO UPDATE SET
        {", ".join(f"{c} = usage_daily.{c} + excluded.{c}" for c in sums)}
), balances AS (
    -- The subquery locks the account rows in id order (its sort runs before its lock), as
    -- every replica's writer does, whatever join the planner picks: no deadlock. Code point
    -- order, as the SQLAlchemy path sorted them in Python (replicas of either version).
    UPDATE accounts SET balance_nano = accounts.balance_nano - v.cost
    FROM (
        SELECT a.id, n.cost
        FROM (SELECT account_id, sum(cost_nano) AS cost FROM new GROUP BY account_id) AS n
        JOIN accounts AS a ON a.id = n.account_id
        ORDER BY a.id COLLATE "C" FOR UPDATE OF a
    ) AS v
    WHERE accounts.id = v.id
)
SELECT request_id FROM new"""


# What SQLAlchemy's adapter translates (to the DBAPI errors it wraps in its DBAPIError):
# everything asyncpg raises of its own, server errors and client-side ones alike. A connection
# the server ended mid-call can surface as InternalClientError ("another operation is in
# progress"), not only as InterfaceError.
_ASYNCPG_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)


@asynccontextmanager
async def translated(conn: AsyncConnection) -> AsyncIterator[Any]:
    """The asyncpg connection under `conn`. asyncpg's errors in the block leave as SQLAlchemy's
    DBAPIError (IntegrityError for a constraint), with `connection_invalidated` and `conn`
    invalidated when the connection is gone, as SQLAlchemy reports them; OSError and the like
    pass as they are, as they did."""
    driver: Any = (await conn.get_raw_connection()).driver_connection
    try:
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
