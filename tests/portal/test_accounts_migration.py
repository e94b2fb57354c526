"""Account migrations on SQLite and PostgreSQL. 0004, on a database with keys, balances,
ledger and usage: every key's balance moves into an account of its own, nothing lost, the
ledger still adds up; and the downgrade gives each key its balance back. 0007: see below."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backends import BACKENDS, Backend, _run, backend
from tokenrelay.billing import ledger
from tokenrelay.store.db import alembic_config, create_engine

Alembic = Callable[[str, str], Awaitable[None]]
Rows = Callable[[str], Awaitable[list[tuple[Any, ...]]]]
BALANCES = {"key_000000000001": 5_000_000_000, "key_000000000002": 0, "key_000000000003": -3}


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend(request.param, tmp_path) as b:
        yield b


def _tools(engine: AsyncEngine) -> tuple[Alembic, Rows]:
    """Run an Alembic step on the engine; read rows with plain SQL."""

    async def alembic(step: str, revision: str) -> None:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: getattr(command, step)(alembic_config(c), revision))

    async def rows(sql: str) -> list[tuple[Any, ...]]:
        async with engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(text(sql))).all()]

    return alembic, rows


async def _scenario(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    alembic, rows = _tools(engine)
    try:
        await alembic("upgrade", "0003")
        now = dt.datetime.now(dt.UTC)
        async with engine.begin() as conn:
            for i, (key_id, balance) in enumerate(BALANCES.items()):
                await conn.execute(
                    text(
                        "INSERT INTO api_keys (id, name, key_hash, key_hint, created_at, "
                        "balance_nano) VALUES (:id, :name, :hash, 'x', :at, :bal)"
                    ),
                    {"id": key_id, "name": f"k{i}", "hash": f"{i:064d}", "at": now, "bal": balance},
                )
                await conn.execute(
                    text(
                        "INSERT INTO ledger (key_id, kind, amount_nano, note, created_at) "
                        "VALUES (:id, 'credit', :amt, 'opening', :at)"
                    ),
                    {"id": key_id, "amt": balance + 7 if i == 0 else balance, "at": now},
                )
            # One billed request on the first key: usage row and its debit.
            await conn.execute(
                text(
                    "INSERT INTO usage_records (request_id, key_id, model, model_asked, vendor, "
                    "stream, fast_path, input_tokens, output_tokens, cache_read_tokens, "
                    "cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, usage_source, "
                    "cost_nano, price_version_id, status, attempts, started_at) VALUES "
                    "('req-1', 'key_000000000001', 'gpt-4o', 'gpt-4o', 'openai', false, false, "
                    "1, 1, 0, 0, 0, 0, 'vendor', 7, 'catalog', 'ok', 1, :at)"
                ),
                {"at": now},
            )
            await conn.execute(
                text(
                    "INSERT INTO ledger (key_id, kind, amount_nano, request_id, created_at) "
                    "VALUES ('key_000000000001', 'debit', -7, 'req-1', :at)"
                ),
                {"at": now},
            )
    except Exception:
        await engine.dispose()
        raise
    try:
        await alembic("upgrade", "head")
        result = {
            "accounts": await rows(
                "SELECT id, name, balance_nano, price_group FROM accounts ORDER BY id"
            ),
            "keys": await rows("SELECT id, account_id FROM api_keys ORDER BY id"),
            "ledger": await rows("SELECT key_id, account_id, amount_nano FROM ledger ORDER BY id"),
            "usage": await rows(
                "SELECT account_id, cost_nano, upstream_cost_nano FROM usage_records"
            ),
            "problems": await ledger.verify(engine),
        }
        await alembic("downgrade", "0003")
        result["downgraded"] = await rows("SELECT id, balance_nano FROM api_keys ORDER BY id")
        await alembic("upgrade", "head")
        result["again"] = await rows("SELECT id, balance_nano FROM accounts ORDER BY id")
        return result
    finally:
        await engine.dispose()


def test_each_key_balance_moves_into_its_own_account(store: Backend) -> None:
    r = _run(_scenario(store.database_url))
    assert r["accounts"] == [
        (f"acct_{k}", f"k{i}", bal, "default") for i, (k, bal) in enumerate(BALANCES.items())
    ]
    assert r["keys"] == [(k, f"acct_{k}") for k in BALANCES]
    assert r["ledger"] == [
        ("key_000000000001", "acct_key_000000000001", 5_000_000_007),
        ("key_000000000002", "acct_key_000000000002", 0),
        ("key_000000000003", "acct_key_000000000003", -3),
        ("key_000000000001", "acct_key_000000000001", -7),
    ]
    assert r["usage"] == [("acct_key_000000000001", 7, 7)]
    assert r["problems"] == []
    assert r["downgraded"] == list(BALANCES.items())
    assert r["again"] == [(f"acct_{k}", bal) for k, bal in BALANCES.items()]


async def _portal_security(url: str) -> dict[str, Any]:
    """Migration 0007: accounts that exist keep working (their email counts as verified, their
    mailbox key is their email), and the downgrade goes back cleanly."""
    engine = create_engine(url)
    alembic, rows = _tools(engine)

    try:
        await alembic("upgrade", "0006")
        async with engine.begin() as conn:
            for account_id, email in (("acct_a", "a@example.com"), ("acct_b", None)):
                await conn.execute(
                    text(
                        "INSERT INTO accounts (id, name, email, balance_nano, price_group, "
                        "created_at) VALUES (:id, :id, :email, 5, 'default', :at)"
                    ),
                    {"id": account_id, "email": email, "at": dt.datetime.now(dt.UTC)},
                )
        await alembic("upgrade", "0007")
        result = {
            "accounts": await rows(
                "SELECT id, email_key, email_verified_at IS NOT NULL, signup_ip FROM accounts "
                "ORDER BY id"
            ),
            "spent": await rows("SELECT count(*) FROM spent_tokens"),
        }
        await alembic("downgrade", "0006")
        result["downgraded"] = await rows(
            "SELECT id, email, balance_nano FROM accounts ORDER BY id"
        )
        await alembic("upgrade", "0007")
        return result
    finally:
        await engine.dispose()


def test_existing_accounts_stay_usable(store: Backend) -> None:
    r = _run(_portal_security(store.database_url))
    assert r["accounts"] == [
        ("acct_a", "a@example.com", True, None),
        ("acct_b", None, False, None),
    ]
    assert r["spent"] == [(0,)]
    assert r["downgraded"] == [("acct_a", "a@example.com", 5), ("acct_b", None, 5)]
