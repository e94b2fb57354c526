"""Ledger reads and admin writes: credits, summaries, usage listings and `ledger verify`.

None of this is on the request path; every function is one short transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from tokenrelay.billing.writer import ROLLUP_COLUMNS, ROLLUP_SUMS, rollup
from tokenrelay.money import MAX_BALANCE_NANO, usd
from tokenrelay.store.async_core import AsyncConnection, AsyncEngine
from tokenrelay.store.tables import (
    LEDGER_NOT_DEBIT,
    accounts,
    api_keys,
    idempotency_keys,
    ledger,
    usage_daily,
    usage_records,
)

MAX_USAGE_LIMIT = 1000


class BalanceOverflow(ValueError):
    """The credit would take the balance beyond what its BIGINT column holds."""


class IdempotencyConflict(ValueError):
    """The idempotency key was used before, for a different credit."""


async def load_balance(engine: AsyncEngine, account_id: str) -> int:
    """The committed balance; 0 for an unknown account (which then can reserve nothing)."""
    async with engine.connect() as conn:
        value = await conn.scalar(
            select(accounts.c.balance_nano).where(accounts.c.id == account_id)
        )
    return int(value or 0)


async def account_of(engine: AsyncEngine, key_id: str) -> str | None:
    """The account a key spends from; None for an unknown key."""
    async with engine.connect() as conn:
        return await conn.scalar(select(api_keys.c.account_id).where(api_keys.c.id == key_id))


def _newest_entry() -> Any:
    return select(func.coalesce(func.max(ledger.c.id), 0)).scalar_subquery()


async def load_balance_marked(engine: AsyncEngine, account_id: str) -> tuple[int, int]:
    """(committed balance, id of the newest ledger entry), read in one statement so that the
    balance includes exactly the entries up to that id."""
    balance = select(accounts.c.balance_nano).where(accounts.c.id == account_id).scalar_subquery()
    async with engine.connect() as conn:
        row = (await conn.execute(select(balance, _newest_entry()))).one()
    return int(row[0] or 0), int(row[1])


async def load_balances(engine: AsyncEngine, account_ids: list[str]) -> dict[str, tuple[int, int]]:
    """Account id -> (committed balance, id of the newest ledger entry then), one statement."""
    if not account_ids:
        return {}
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(accounts.c.id, accounts.c.balance_nano, _newest_entry()).where(
                accounts.c.id.in_(account_ids)
            )
        )
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}


async def newest_entry_id(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(_newest_entry())) or 0)


async def entries_after(
    engine: AsyncEngine, after_id: int
) -> list[tuple[int, str, str, int, str | None]]:
    """(id, account, kind, amount, request id) of every ledger entry after `after_id`."""
    c = ledger.c
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(c.id, c.account_id, c.kind, c.amount_nano, c.request_id)
            .where(c.id > after_id)
            .order_by(c.id)
        )
        return [(int(r[0]), r[1], r[2], int(r[3]), r[4]) for r in rows]


async def credits_since(engine: AsyncEngine, after_id: int) -> list[tuple[int, str, int]]:
    """(entry id, account id, amount) of the credits and adjustments after `after_id`, oldest
    first: what another process (the CLI) did to balances this one keeps in memory."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(ledger.c.id, ledger.c.account_id, ledger.c.amount_nano)
            .where(ledger.c.id > after_id, LEDGER_NOT_DEBIT)
            .order_by(ledger.c.id)
            .limit(10_000)
        )
        return [(int(r[0]), r[1], int(r[2])) for r in rows]


async def add_ledger_entry(
    engine: AsyncEngine,
    account_id: str,
    amount_nano: int,
    note: str | None,
    idempotency_key: str | None = None,
    *,
    key_id: str | None = None,
    kind: str | None = None,
) -> tuple[int, int, bool] | None:
    """A credit (amount > 0) or adjustment (< 0) to an account with its balance update, in
    one transaction (`key_id`: the key the operator named, if any). Returns (the new
    balance, the entry's id, True), or None if there is no such account.

    With `idempotency_key`, a repeat of the same credit (account, amount, note) writes nothing
    and returns the first call's (balance, entry id, False); IdempotencyConflict if the key was
    used for another credit. BalanceOverflow if the new balance would not fit."""
    kind = kind or ("credit" if amount_nano >= 0 else "adjustment")
    note = (note or None) and note[:500]
    if idempotency_key is not None:
        first = await _replay(engine, idempotency_key, account_id, amount_nano, note)
        if first is not None:
            return first
    # The bound is computed here, not in SQL: `balance + amount` could itself overflow there
    # (PostgreSQL: an error; SQLite: silently a float). Checked by the UPDATE that writes.
    if amount_nano >= 0:
        fits = accounts.c.balance_nano <= MAX_BALANCE_NANO - amount_nano
    else:
        fits = accounts.c.balance_nano >= -MAX_BALANCE_NANO - amount_nano
    try:
        async with engine.begin() as conn:
            result = await conn.execute(
                update(accounts)
                .where(accounts.c.id == account_id, fits)
                .values(balance_nano=accounts.c.balance_nano + amount_nano)
                .returning(accounts.c.balance_nano)
            )
            balance = result.scalar()
            if balance is None:
                found = await conn.scalar(select(accounts.c.id).where(accounts.c.id == account_id))
                if found is None:
                    return None
                raise BalanceOverflow(f"the balance would exceed {usd(MAX_BALANCE_NANO)} USD")
            now = dt.datetime.now(dt.UTC)
            entry_id = await conn.scalar(
                insert(ledger)
                .values(
                    key_id=key_id,
                    account_id=account_id,
                    kind=kind,
                    amount_nano=amount_nano,
                    note=note,
                    created_at=now,
                )
                .returning(ledger.c.id)
            )
            if idempotency_key is not None:
                await conn.execute(
                    insert(idempotency_keys).values(
                        key=idempotency_key,
                        ledger_id=entry_id,
                        balance_nano=balance,
                        created_at=now,
                    )
                )
    except IntegrityError:
        # A concurrent call with the same idempotency key committed first: this one rolled
        # back, and answers as that one did.
        if idempotency_key is None:
            raise
        first = await _replay(engine, idempotency_key, account_id, amount_nano, note)
        if first is None:
            raise
        return first
    return int(balance), int(entry_id), True


async def _replay(
    engine: AsyncEngine, idempotency_key: str, account_id: str, amount_nano: int, note: str | None
) -> tuple[int, int, bool] | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    idempotency_keys.c.balance_nano,
                    ledger.c.id,
                    ledger.c.account_id,
                    ledger.c.amount_nano,
                    ledger.c.note,
                )
                .join(ledger, ledger.c.id == idempotency_keys.c.ledger_id)
                .where(idempotency_keys.c.key == idempotency_key)
            )
        ).first()
    if row is None:
        return None
    if (row.account_id, int(row.amount_nano), row.note) != (account_id, amount_nano, note):
        raise IdempotencyConflict(
            "this Idempotency-Key was already used for a different request "
            f"(account {row.account_id}, amount {usd(int(row.amount_nano))})"
        )
    return int(row.balance_nano), int(row.id), False


async def key_summary(engine: AsyncEngine, key_id: str) -> dict[str, Any] | None:
    """The balance of the key's account; spend and requests of this key."""
    async with engine.connect() as conn:
        balance = await conn.scalar(
            select(accounts.c.balance_nano)
            .join(api_keys, api_keys.c.account_id == accounts.c.id)
            .where(api_keys.c.id == key_id)
        )
        if balance is None:
            return None
        spent, requests = (
            await conn.execute(
                select(func.coalesce(func.sum(usage_records.c.cost_nano), 0), func.count()).where(
                    usage_records.c.key_id == key_id
                )
            )
        ).one()
    return {
        "balance_nano": int(balance),
        "spent_nano": int(spent),
        "requests": int(requests),
        "balance_usd": usd(int(balance)),
        "spent_usd": usd(int(spent)),
    }


async def usage(
    engine: AsyncEngine,
    key_id: str | None = None,
    since: dt.datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Newest first."""
    query = select(usage_records).order_by(
        usage_records.c.started_at.desc(), usage_records.c.request_id
    )
    if key_id is not None:
        query = query.where(usage_records.c.key_id == key_id)
    if since is not None:
        query = query.where(usage_records.c.started_at >= since)
    query = query.limit(max(1, min(limit, MAX_USAGE_LIMIT)))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [usage_json(r._mapping) for r in rows]


def usage_json(row: Any) -> dict[str, Any]:
    started = row["started_at"]
    if started.tzinfo is None:
        started = started.replace(tzinfo=dt.UTC)
    return {
        "request_id": row["request_id"],
        "key_id": row["key_id"],
        "model": row["model"],
        "model_asked": row["model_asked"],
        "vendor": row["vendor"],
        "stream": bool(row["stream"]),
        "fast_path": bool(row["fast_path"]),
        "input_tokens": row["input_tokens"],
        "output_tokens": row["output_tokens"],
        "cache_read_tokens": row["cache_read_tokens"],
        "cache_write_tokens": row["cache_write_tokens"],
        "cache_write_1h_tokens": row["cache_write_1h_tokens"],
        "reasoning_tokens": row["reasoning_tokens"],
        "usage_source": row["usage_source"],
        "account_id": row["account_id"],
        "cost_usd": usd(int(row["cost_nano"])),
        "upstream_cost_usd": usd(int(row["upstream_cost_nano"])),
        "reason": row["reason"],
        "loss_usd": usd(int(row["loss_nano"])),
        "price_version": row["price_version_id"],
        "status": row["status"],
        "error": row["error"],
        "attempts": row["attempts"],
        "started_at": started.isoformat(),
        "duration_ms": row["duration_ms"],
        "ttft_ms": row["ttft_ms"],
        "session_id": row["session_id"],
    }


# What a customer may see of their own usage records: never the reseller's upstream cost, the
# price version, the account or key ids (the caller knows its own) or how the gateway routed.
CUSTOMER_USAGE_FIELDS = (
    "request_id",
    "model",
    "model_asked",
    "stream",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "usage_source",
    "cost_usd",
    "status",
    "error",
    "started_at",
    "duration_ms",
    "ttft_ms",
    "session_id",
)


def customer_usage_json(row: dict[str, Any]) -> dict[str, Any]:
    """One of `usage_json`'s rows as its customer may see it."""
    return {k: row[k] for k in CUSTOMER_USAGE_FIELDS if k in row}


async def verify(engine: AsyncEngine) -> list[str]:
    """Every inconsistency between balances, ledger and usage records; [] when clean."""
    problems: list[str] = []
    sums = (
        select(ledger.c.account_id, func.sum(ledger.c.amount_nano).label("total"))
        .group_by(ledger.c.account_id)
        .subquery()
    )
    debits = select(ledger).where(ledger.c.kind == "debit").subquery()
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(accounts.c.id, accounts.c.balance_nano, sums.c.total).outerjoin(
                sums, sums.c.account_id == accounts.c.id
            )
        )
        for account_id, balance, total in rows:
            bal, tot = int(balance), int(total or 0)
            if bal != tot:
                problems.append(
                    f"account {account_id}: balance {usd(bal)} != ledger sum {usd(tot)}"
                )
        orphans = await conn.execute(
            select(ledger.c.account_id, ledger.c.kind, ledger.c.id).where(
                ~ledger.c.account_id.in_(select(accounts.c.id))
            )
        )
        problems += [f"ledger row {i} ({kind}): unknown account {a}" for a, kind, i in orphans]
        # A key's ledger rows belong to that key's account.
        misfiled = await conn.execute(
            select(ledger.c.id, ledger.c.key_id)
            .join(api_keys, api_keys.c.id == ledger.c.key_id)
            .where(api_keys.c.account_id != ledger.c.account_id)
        )
        problems += [f"ledger row {i}: key {k} is not in the row's account" for i, k in misfiled]
        unbilled = await conn.execute(
            select(usage_records.c.request_id, usage_records.c.key_id)
            .outerjoin(debits, debits.c.request_id == usage_records.c.request_id)
            .where(debits.c.id.is_(None))
        )
        problems += [f"usage {rid} (key {k}): no debit in the ledger" for rid, k in unbilled]
        stray = await conn.execute(
            select(debits.c.id, debits.c.request_id)
            .outerjoin(usage_records, usage_records.c.request_id == debits.c.request_id)
            .where(usage_records.c.request_id.is_(None))
        )
        problems += [f"debit {i} (request {rid}): no usage record" for i, rid in stray]
        mismatched = await conn.execute(
            select(
                usage_records.c.request_id,
                usage_records.c.key_id,
                usage_records.c.cost_nano,
                debits.c.key_id,
                debits.c.amount_nano,
            )
            .join(debits, debits.c.request_id == usage_records.c.request_id)
            .where(
                (debits.c.amount_nano != -usage_records.c.cost_nano)
                | (debits.c.key_id != usage_records.c.key_id)
            )
        )
        problems += [
            f"usage {rid}: cost {usd(int(cost))} (key {k}) but debit {usd(int(amt))} (key {dk})"
            for rid, k, cost, dk, amt in mismatched
        ]
        problems += await _verify_rollup(conn)
        bad_kind = await conn.execute(
            select(ledger.c.id, ledger.c.kind).where(
                ledger.c.kind.not_in(["credit", "debit", "adjustment"])
                | ((ledger.c.kind == "debit") & ledger.c.request_id.is_(None))
            )
        )
        problems += [f"ledger row {i}: invalid {kind!r} entry" for i, kind in bad_kind]
    return problems


async def _verify_rollup(conn: AsyncConnection) -> list[str]:
    """The daily roll-up (dashboards, margins) is the usage records summed: every column of
    every usage_daily row, and no row without records (or records without a row)."""
    u = usage_records.c
    records = await conn.execute(
        select(
            u.account_id,
            u.started_at,
            u.model,
            u.vendor,
            u.status,
            u.input_tokens + u.cache_read_tokens + u.cache_write_tokens,
            u.output_tokens,
            u.cost_nano,
            u.upstream_cost_nano,
            u.loss_nano,
        )
    )
    expected = {
        tuple(row[:4]): row[4:]
        for row in rollup(
            (a, _utc(started).date().isoformat(), model, vendor, status, i, o, cost, up, loss)
            for a, started, model, vendor, status, i, o, cost, up, loss in records
        )
    }
    d = usage_daily.c
    rolled = {
        tuple(row[:4]): tuple(int(v) for v in row[4:])
        for row in await conn.execute(select(*(d[c] for c in ROLLUP_COLUMNS)))
    }
    problems = []
    for group in sorted(expected.keys() | rolled.keys()):
        want, have = expected.get(group), rolled.get(group)
        if want == have:
            continue
        where = "usage_daily {} {} {} ({})".format(*group)
        if have is None:
            problems.append(f"{where}: missing, the usage records sum to {want}")
        elif want is None:
            problems.append(f"{where}: {have} without any usage record")
        else:
            diff = [
                f"{c} {h} != {w}" for c, h, w in zip(ROLLUP_SUMS, have, want, strict=True) if h != w
            ]
            problems.append(f"{where}: " + ", ".join(diff) + " (the usage records')")
    return problems


def _utc(started: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; they were stored in UTC."""
    return started.replace(tzinfo=dt.UTC) if started.tzinfo is None else started.astimezone(dt.UTC)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(select(1))
