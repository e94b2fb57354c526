"""The SQLite settlement journal: a record journaled before a crash is billed exactly once.

The crash is real: a child process journals records while the database is locked (so none can
commit), reports, and is SIGKILLed. The next writer on that database replays the journal.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenrelay.billing import ledger
from tokenrelay.billing.journal import JournalWriter, journal_prefix
from tokenrelay.billing.writer import UsageRecord
from tokenrelay.customers.keys import KeyStore
from tokenrelay.store import create_engine, migrate_async

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from tokenrelay.billing.journal import JournalWriter
    from tokenrelay.billing.writer import UsageRecord

    async def main(db, key_id):
        writer = JournalWriter(db)
        writer.start()
        for i in range(5):
            await writer.submit(UsageRecord(f"req_crash{i}", key_id, "gpt-4o", input_tokens=10,
                                            output_tokens=5, cost_nano=1_000 + i))
        print("journaled", flush=True)
        await asyncio.sleep(60)  # killed here, the records still uncommitted

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def _new_key(db: str) -> str:
    engine = create_engine(f"sqlite:///{db}")
    await migrate_async(engine)
    info, _ = await KeyStore(engine, "sk-test-").create("crash", Decimal("1.00"))
    await engine.dispose()
    return info.id


async def _state(db: str, key_id: str) -> tuple[list[str], int, list[str]]:
    engine = create_engine(f"sqlite:///{db}")
    try:
        rows = await ledger.usage(engine, key_id, None, 100)
        account_id = await ledger.account_of(engine, key_id)
        assert account_id is not None
        balance = await ledger.load_balance(engine, account_id)
        problems = await ledger.verify(engine)
    finally:
        await engine.dispose()
    return sorted(r["request_id"] for r in rows), balance, problems


def test_records_journaled_before_sigkill_are_billed_once_after_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "gw.db")
    key_id = asyncio.run(_new_key(db))
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # the child's writer thread cannot commit anything
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, db, key_id], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "journaled"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        blocker.execute("ROLLBACK")
        blocker.close()
    assert asyncio.run(_state(db, key_id))[0] == []  # nothing reached the database
    assert any(p.stat().st_size > 0 for p in tmp_path.glob(journal_prefix(db).name + ".*"))

    async def restart() -> None:
        writer = JournalWriter(db)
        writer.start()  # replays before it accepts anything
        await writer.close()

    asyncio.run(restart())
    ids, balance, problems = asyncio.run(_state(db, key_id))
    assert ids == [f"req_crash{i}" for i in range(5)]
    assert balance == 1_000_000_000 - sum(1_000 + i for i in range(5))
    assert problems == []

    asyncio.run(restart())  # a second replay finds nothing and bills nothing again
    assert asyncio.run(_state(db, key_id))[1] == balance


def test_flush_makes_submitted_records_readable_and_empties_the_journal(tmp_path: Path) -> None:
    db = str(tmp_path / "gw.db")
    key_id = asyncio.run(_new_key(db))

    async def run() -> None:
        writer = JournalWriter(db)
        writer.start()
        for i in range(50):
            await writer.submit(UsageRecord(f"req_{i}", key_id, "gpt-4o", cost_nano=7))
        await writer.flush()
        assert writer.uncommitted == {}
        ids, balance, problems = await _state(db, key_id)
        assert len(ids) == 50 and balance == 1_000_000_000 - 350 and problems == []
        segments = list(tmp_path.glob(journal_prefix(db).name + ".*"))
        # Nothing left to replay: committed records are zeroed out of the (reused) segment.
        assert all(not p.read_bytes().strip(b"\0") for p in segments if p.suffix != ".lock")
        await writer.close()

    asyncio.run(run())
    assert os.path.exists(db)


@settings(max_examples=200, deadline=None)
@given(
    started=st.datetimes(timezones=st.just(dt.UTC)),
    stream=st.booleans(),
    fast=st.booleans(),
)
def test_rows_are_bound_exactly_as_sqlalchemy_binds_them(
    started: dt.datetime, stream: bool, fast: bool
) -> None:
    from sqlalchemy.dialects import sqlite as sqlite_dialect

    from tokenrelay.billing.journal import record_values
    from tokenrelay.billing.writer import USAGE_COLUMNS as _COLUMNS
    from tokenrelay.store.tables import usage_records

    dialect = sqlite_dialect.dialect()
    record = UsageRecord("req_1", "key_1", "gpt-4o", stream=stream, fast_path=fast)
    record.started_at = started
    row = record.row()
    expected = []
    for name, column in zip(_COLUMNS, usage_records.columns, strict=True):
        bind = column.type.dialect_impl(dialect).bind_processor(dialect)
        expected.append(bind(row[name]) if bind else row[name])
    assert record_values(record) == expected


def test_lines_journaled_before_the_session_and_account_columns_replay() -> None:
    """A journal written by an older gateway (before accounts, 0004, and sessions, 0005) still
    replays after an upgrade: no session, the record goes to the key's own account, its list
    cost the price it was billed at."""
    from tokenrelay.billing.journal import _from_json, record_values
    from tokenrelay.billing.writer import USAGE_COLUMNS as _COLUMNS

    record = UsageRecord("req_old", "key_1", "gpt-4o", input_tokens=3, cost_nano=9)
    record.started_at = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
    record.upstream_cost_nano = 9
    values = record_values(record)
    assert list(_COLUMNS[-8:]) == [
        "session_id",
        "account_id",
        "upstream_cost_nano",
        "reason",
        "loss_nano",
        "deployment",
        "upstream_request_id",
        "multiplier_ppm",
    ]
    assert values[-7:] == ["acct_key_1", 9, "completed", 0, None, None, None]
    before_policy = [*values[:-5], "unrecorded", 0, None, None, None]
    assert _from_json(values[:-8]) == before_policy
    assert _from_json(values[:-5]) == before_policy
    assert _from_json(values[:-3]) == values  # before the deployment column (0014)
    assert _from_json(values[:-2]) == values  # before the receipt columns (0017)
    with_session = UsageRecord("req_new", "key_1", "gpt-4o", session_id="s-1", cost_nano=5)
    new = record_values(with_session)
    assert _from_json(new)[_COLUMNS.index("session_id")] == "s-1"


_POOLS = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["gpt-4o", "claude-sonnet-4-6"]),
        "input_tokens": st.sampled_from([0, 12, 12_345]),
        "output_tokens": st.integers(0, 3),
        "status": st.sampled_from(["ok", "error"]),
        "error": st.sampled_from([None, "upstream 500"]),
        "session_id": st.sampled_from([None, "s1", "s2"]),
        "duration_ms": st.sampled_from([None, 0, 1]),
        "cost_nano": st.integers(0, 2),
        "stream": st.booleans(),
    }
)


_MIXED: dict[str, tuple[str, str]] = {}  # one migrated database for every example


@settings(max_examples=60, deadline=None)
@given(batch=st.lists(_POOLS, min_size=1, max_size=150))
def test_a_batch_of_mixed_records_is_stored_value_for_value(
    tmp_path_factory: pytest.TempPathFactory, batch: list[dict[str, object]]
) -> None:
    """Rows of a chunk that share a value have it bound once (journal._insert_many): whatever
    the mix of shared and differing columns, NULLs among values, and chunk sizes, each row
    and its debit hold exactly the record's values."""
    from tokenrelay.billing.journal import _commit, _connect, record_values
    from tokenrelay.billing.writer import USAGE_COLUMNS as _COLUMNS

    if not _MIXED:  # migrating costs seconds on a slow machine: once, not per example
        db = str(tmp_path_factory.mktemp("mixed") / "gw.db")
        _MIXED["db"] = (db, asyncio.run(_new_key(db)))
    db, key_id = _MIXED["db"]
    prefix = f"req_{len(_MIXED)}_"
    _MIXED[prefix] = (db, key_id)
    started = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
    rows = [
        record_values(UsageRecord(f"{prefix}{i:04d}", key_id, started_at=started, **fields))  # type: ignore[arg-type]
        for i, fields in enumerate(batch)
    ]
    conn = _connect(db)
    try:
        assert _commit(conn, rows) == len(rows)
        stored = conn.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM usage_records WHERE request_id LIKE ? "
            "ORDER BY request_id",
            (prefix + "%",),
        ).fetchall()
        debits = conn.execute(
            "SELECT request_id, key_id, amount_nano FROM ledger WHERE kind = 'debit' "
            "AND request_id LIKE ? ORDER BY request_id",
            (prefix + "%",),
        ).fetchall()
    finally:
        conn.close()
    assert [list(r) for r in stored] == rows
    assert debits == [(r[0], key_id, -r[_COLUMNS.index("cost_nano")]) for r in rows]
