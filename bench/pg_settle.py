"""CPU the settlement writer spends per usage record on PostgreSQL, in-process:

    .venv/bin/python -m bench.pg_settle [--batches 20] [--size 300] [--rounds 3]

A database of its own (created, migrated, dropped after), 20 funded keys; each round submits
`--batches` batches of `--size` records (3 models, 1 in 50 a replay of an earlier request id)
through a running SettlementWriter and reads `time.process_time()` around them: the writer's
and the submitters' CPU, not PostgreSQL's (another process). Reports µs of CPU per record for
each round and their median, all of it and the part spent in the batches' transactions
(`_commit_on_connection`), which excludes the queue and the callers' futures.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import time
import uuid
from decimal import Decimal
from typing import Any

from bench.workers import PG, _pg
from tokenrelay.billing.writer import SettlementWriter, UsageRecord
from tokenrelay.customers.keys import ApiKeyInfo, KeyStore
from tokenrelay.store.db import create_engine, migrate_async

MODELS = (("gpt-4o", "openai"), ("gpt-4o-mini", "openai"), ("claude-sonnet-4-5", "anthropic"))


class _Timed(SettlementWriter):
    """Also counts the CPU of the batches' transactions alone (the rest: queue, futures)."""

    commit_cpu = 0.0

    async def _commit_on_connection(self, batch: list[Any]) -> set[str]:
        start = time.process_time()
        try:
            return await super()._commit_on_connection(batch)
        finally:
            self.commit_cpu += time.process_time() - start


def _record(n: int, key: ApiKeyInfo, rid: str) -> UsageRecord:
    model, vendor = MODELS[n % len(MODELS)]
    return UsageRecord(
        request_id=rid,
        key_id=key.id,
        model=model,
        vendor=vendor,
        stream=n % 2 == 0,
        input_tokens=100 + n % 17,
        output_tokens=200 + n % 13,
        cache_read_tokens=n % 5,
        status="error" if n % 41 == 0 else "ok",
        error="upstream 500" if n % 41 == 0 else None,
        started_at=dt.datetime.now(dt.UTC),
        duration_ms=120,
        ttft_ms=None if n % 3 else 40,
        cost_nano=1_000 + n % 97,
        price_version_id="catalog",
        account_id=key.account_id,
        upstream_cost_nano=900,
    )


async def _round(
    writer: _Timed, keys: list[ApiKeyInfo], batches: int, size: int
) -> tuple[float, float]:
    """(all, in the transactions) µs of CPU per record."""
    ids: list[str] = []
    records = 0
    cpu = 0.0
    writer.commit_cpu = 0.0
    for _ in range(batches):
        batch = []
        for n in range(size):
            # 1 in 50: a request id already settled (a retry), which must not debit again.
            rid = ids[len(ids) // 2] if ids and n % 50 == 0 else uuid.uuid4().hex
            ids.append(rid)
            batch.append(_record(n, keys[n % len(keys)], rid))
        start = time.process_time()
        await asyncio.gather(*(writer.submit(r) for r in batch))
        cpu += time.process_time() - start
        records += size
    return cpu / records * 1e6, writer.commit_cpu / records * 1e6


async def main(batches: int, size: int, rounds: int) -> None:
    db = "pg_settle_" + uuid.uuid4().hex[:8]
    await _pg(f'CREATE DATABASE "{db}"')
    engine = create_engine(f"{PG}/{db}")
    try:
        await migrate_async(engine)
        store = KeyStore(engine)
        keys = [(await store.create(f"k{i}", Decimal("1000")))[0] for i in range(20)]
        # batch_ms: the whole gathered batch is queued before the writer drains the queue.
        writer = _Timed(engine, batch_ms=5)
        writer.start()
        try:
            await _round(writer, keys, 2, size)  # warm-up: connections, statement caches
            figures = [await _round(writer, keys, batches, size) for _ in range(rounds)]
        finally:
            await writer.close()
        print("µs CPU/record per round (all / in transactions):")
        print("  " + "  ".join(f"{a:.1f}/{c:.1f}" for a, c in figures))
        print(
            f"median {statistics.median(a for a, _ in figures):.1f} µs CPU/record, "
            f"{statistics.median(c for _, c in figures):.1f} in the transactions "
            f"({batches} batches × {size} records, {writer.batches} transactions)"
        )
    finally:
        await engine.dispose()
        await _pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.batches, args.size, args.rounds))
