"""The catalog as a customer sees it: each model with the visitor's own price (list price ×
their price group's multiplier when signed in), and each vendor's status. Never upstream costs
or deployments."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from typing import Any

from sqlalchemy import select

from tokenrelay.store.async_core import AsyncEngine
from tokenrelay.store.tables import price_groups

PRICE_FIELDS = ("input", "output", "cache_read", "cache_write")
VENDOR_NAMES = {
    "anthropic": "Anthropic",
    "openai": "OpenAI",
    "gemini": "Google Gemini",
    "xai": "xAI",
    "deepseek": "DeepSeek",
}
# What the status line says per vendor state (vendor_status in server/web.py).
STATUS_TEXT = {
    "operational": "Operational",
    "degraded": "Degraded: retrying on other deployments",
    "demo": "Demo: answered by the built-in emulator",
    "unavailable": "Unavailable",
}


async def multiplier_ppm(engine: AsyncEngine, group: str | None) -> int:
    if group is None:
        return 1_000_000
    query = select(price_groups.c.multiplier_ppm).where(price_groups.c.name == group)
    async with engine.connect() as conn:
        found = (await conn.execute(query)).scalar()
    return int(found) if found is not None else 1_000_000


def _scaled(list_price: str, ppm: int) -> str:
    """USD per million tokens, to the hundred-thousandth of a cent at most, rounded up (the
    customer never pays less than what the page says)."""
    value = (Decimal(list_price) * ppm / 1_000_000).quantize(Decimal("0.0000001"), ROUND_CEILING)
    text = format(value.normalize(), "f")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def price_rows(models: list[dict[str, Any]], ppm: int) -> list[dict[str, Any]]:
    rows = []
    for m in models:
        pricing = m.get("pricing", {})
        row = {
            "id": m["id"],
            "name": m.get("display_name") or m["id"],
            "vendor": m.get("vendor", ""),
            "vendor_name": VENDOR_NAMES.get(m.get("vendor", ""), m.get("vendor", "")),
            "aliases": m.get("aliases", []),
            "context": m.get("context_window"),
            "capabilities": [k for k, v in m.get("capabilities", {}).items() if v],
        }
        for f in PRICE_FIELDS:
            raw = pricing.get(f"{f}_per_mtok")
            row[f] = _scaled(raw, ppm) if raw is not None else None
        rows.append(row)
    return rows


def vendors_of(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for r in rows:
        seen.setdefault(r["vendor"], r["vendor_name"])
    return list(seen.items())
