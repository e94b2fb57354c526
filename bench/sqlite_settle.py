"""CPU the embedded store's settlement spends per usage record, in-process:

    .venv/bin/python -m bench.sqlite_settle [--batches 40] [--size 400] [--rounds 3]

The journal's commit thread (billing/journal.py `_commit`) on a fresh migrated SQLite file with
one funded key: each round commits `--batches` transactions of `--size` records, time-ordered
request ids as the gateway makes them, and reads the thread's CPU clock around them. Besides the
whole transaction (usage row, ledger debit, daily roll-up, balance), it times the usage rows
alone and the ledger debits alone (the same statements, on their own) — the floor under what
billing costs a request on the gateway's core, whatever the event loop does. Figures: median
of the rounds, µs per record.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from tokenrelay.billing import journal
from tokenrelay.billing.writer import UsageRecord
from tokenrelay.customers.keys import KeyStore
from tokenrelay.gateway.relay import new_request_id
from tokenrelay.store.db import create_engine, migrate_async


async def _fresh_key(db: str) -> tuple[str, str]:
    engine = create_engine(f"sqlite:///{db}")
    try:
        await migrate_async(engine)
        info, _ = await KeyStore(engine, "sk-bench-").create("bench", Decimal("1000000"))
    finally:
        await engine.dispose()
    return info.id, info.account_id or info.id


def _rows(key_id: str, account_id: str, n: int) -> list[list[Any]]:
    now = dt.datetime.now(dt.UTC)
    return [
        journal.record_values(
            UsageRecord(
                new_request_id(), key_id, "gpt-4o-mini", input_tokens=20, output_tokens=10,
                cost_nano=1234, upstream_cost_nano=1000, account_id=account_id, started_at=now,
            )
        )
        for _ in range(n)
    ]  # fmt: skip


def _usage_only(conn: sqlite3.Connection, rows: list[list[Any]]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    journal._insert_many(conn, journal._INSERT_USAGE, rows)
    conn.execute("COMMIT")


def _ledger_only(conn: sqlite3.Connection, rows: list[list[Any]]) -> None:
    at = journal.sqlite_datetime(dt.datetime.now(dt.UTC))
    debits = [
        (r[journal._KEY_ID], r[journal._ACCOUNT_ID], "debit", -1, r[0], None, at) for r in rows
    ]
    conn.execute("BEGIN IMMEDIATE")
    journal._insert_many(conn, journal._INSERT_DEBITS, debits)
    conn.execute("COMMIT")


def _whole(conn: sqlite3.Connection, rows: list[list[Any]]) -> None:
    journal._commit(conn, rows)


WHAT: dict[str, Callable[[sqlite3.Connection, list[list[Any]]], None]] = {
    "whole transaction": _whole,
    "usage rows alone": _usage_only,
    "ledger debits alone": _ledger_only,
}


def one_round(what: str, batches: int, size: int) -> float:
    with tempfile.TemporaryDirectory(prefix="tokenrelay-sqlite-settle-") as tmp:
        db = str(Path(tmp) / "bench.db")
        key_id, account_id = asyncio.run(_fresh_key(db))
        conn = journal._connect(db)
        try:
            todo = [_rows(key_id, account_id, size) for _ in range(batches)]
            start = time.thread_time()
            for rows in todo:
                WHAT[what](conn, rows)
            return (time.thread_time() - start) / (batches * size) * 1e6
        finally:
            conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.sqlite_settle", description=__doc__)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--size", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    for what in WHAT:
        runs = [one_round(what, args.batches, args.size) for _ in range(args.rounds)]
        shown = ", ".join(f"{r:.2f}" for r in runs)
        print(f"{what:20s} {statistics.median(runs):6.2f} µs/record (rounds: {shown})")


if __name__ == "__main__":
    main()
