"""Requests, tokens, spend and prompt caching per model and per key over the dashboard's
range: the cache hit rate and the money cached input saved (no anchor shows customers this).

Input tokens are counted apart from cached ones (the billing engine's convention): the hit rate
is cached reads over all prompt tokens, and the saving is what those reads would have cost as
plain input at the customer's price, less what they cost.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from tokenrelay.store.async_core import AsyncEngine
from tokenrelay.store.tables import usage_records


async def cache_report(
    engine: AsyncEngine,
    account_id: str,
    since: dt.datetime,
    models: list[dict[str, Any]],
    multiplier_ppm: int,
) -> dict[str, list[dict[str, Any]]]:
    u = usage_records.c
    query = (
        select(
            u.model,
            u.key_id,
            func.sum(u.input_tokens),
            func.sum(u.output_tokens),
            func.sum(u.cache_read_tokens),
            func.sum(u.cache_write_tokens),
            func.count(),
            func.sum(u.cost_nano),
        )
        .where(u.account_id == account_id, u.started_at >= since)
        .group_by(u.model, u.key_id)
    )
    async with engine.connect() as conn:
        rows = list(await conn.execute(query))
    prices = {m["id"]: m.get("pricing", {}) for m in models}
    by: dict[str, dict[str, dict[str, int]]] = {"model": {}, "key": {}}
    for model, key_id, inp, out, read, write, requests, cost in rows:
        p = prices.get(model, {})
        gap = Decimal(p.get("input_per_mtok", "0")) - Decimal(p.get("cache_read_per_mtok", "0"))
        saved = int(max(gap, Decimal(0)) * int(read or 0) * 1000 * multiplier_ppm // 1_000_000)
        for kind, name in (("model", model), ("key", key_id)):
            t = by[kind].setdefault(
                name,
                {
                    "requests": 0,
                    "cost_nano": 0,
                    "prompt": 0,
                    "output": 0,
                    "read": 0,
                    "saved_nano": 0,
                },
            )
            t["requests"] += int(requests)
            t["cost_nano"] += int(cost or 0)
            t["prompt"] += int(inp or 0) + int(read or 0) + int(write or 0)
            t["output"] += int(out or 0)
            t["read"] += int(read or 0)
            t["saved_nano"] += saved
    return {
        kind: sorted(
            (
                {"name": name, **t, "hit_rate": (t["read"] / t["prompt"]) if t["prompt"] else 0.0}
                for name, t in totals.items()
            ),
            key=lambda r: -r["cost_nano"],
        )
        for kind, totals in by.items()
    }
