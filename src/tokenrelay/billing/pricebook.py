"""The versioned price book: catalog prices as version "catalog", operator versions on top.

Lookups (`price_for`) are served from memory: the hot path never reads the database. Versions
are reloaded after every change made through this process, every `poll_s` seconds (a change
made by the CLI or another replica), and at once on a Redis `<prefix>prices` notice.
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select

from tokenrelay.catalog import Catalog, Price, PriceTier, format_usd
from tokenrelay.money import MoneyError, parse_rate
from tokenrelay.store.async_core import AsyncEngine
from tokenrelay.store.tables import model_settings, price_overrides, price_versions

log = logging.getLogger("tokenrelay.billing")

CATALOG_VERSION = "catalog"
RATE_FIELDS = ("input", "output", "cache_read", "cache_write", "cache_write_1h")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_TIERS = 16
_MAX_TIER_TOKENS = 10**9
_TIER_FIELDS = frozenset({"above_prompt_tokens", *RATE_FIELDS})


class PriceError(ValueError):
    """An invalid price or an unknown model; the message names the field."""


@dataclass(frozen=True, slots=True)
class PriceVersion:
    id: str
    model_id: str
    effective_from: dt.datetime
    price: Price
    created_at: dt.datetime
    note: str | None = None

    def public(self) -> dict[str, Any]:
        p = self.price
        return {
            "id": self.id,
            "model": self.model_id,
            "effective_from": self.effective_from.isoformat(),
            **{f: format_usd(getattr(p, f)) for f in RATE_FIELDS},
            "tiers": [tier_json(t) for t in p.tiers],
            "created_at": self.created_at.isoformat(),
            "note": self.note,
        }


class PriceBook:
    def __init__(
        self,
        catalog: Catalog,
        engine: AsyncEngine,
        publish: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.catalog = catalog
        self.engine = engine
        # Tells the other processes and replicas what changed (billing.engine: Redis pub/sub).
        self.publish = publish
        # model id -> versions sorted by (effective_from, created_at); parallel key list for bisect
        self._versions: dict[str, list[PriceVersion]] = {}
        self._starts: dict[str, list[dt.datetime]] = {}
        # Loads started, and the latest one applied: a load that read the database before
        # another started must not overwrite what that one applied (a poll finishing after
        # the reload of a price just added would bring the old book back).
        self._loads_started = 0
        self._load_applied = 0
        # The console's settings, reloaded with the versions: models hidden from customers,
        # and (price group, model) -> multiplier overriding the group's own.
        self.hidden: frozenset[str] = frozenset()
        self.overrides: dict[tuple[str, str], int] = {}

    async def load(self) -> None:
        self._loads_started += 1
        mine = self._loads_started
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(price_versions))).all()
            hidden_rows = await conn.execute(
                select(model_settings.c.model_id).where(model_settings.c.hidden)
            )
            hidden = frozenset(m for (m,) in hidden_rows)
            overrides = {
                (g, m): int(ppm) for g, m, ppm in await conn.execute(select(price_overrides))
            }
        versions: dict[str, list[PriceVersion]] = {}
        for row in rows:
            try:
                v = _from_row(row._mapping)
            except Exception as exc:  # one bad row must not take every price down
                log.error("ignoring price version %s: %s", row.id, exc)
                continue
            versions.setdefault(v.model_id, []).append(v)
        for vs in versions.values():
            vs.sort(key=lambda v: (v.effective_from, v.created_at, v.id))
        if mine < self._load_applied:  # a load started after this one has applied newer rows
            return
        self._load_applied = mine
        # Swap every map at once: readers never see half a reload (no await in between).
        self.hidden, self.overrides = hidden, overrides
        self._versions = versions
        self._starts = {m: [v.effective_from for v in vs] for m, vs in versions.items()}

    def price_for(self, model_id: str, at: dt.datetime | None = None) -> tuple[Price, str]:
        """(price, version id) in force for `model_id` at `at` (default now). KeyError if the
        model is neither in the catalog nor in the book."""
        at = at or dt.datetime.now(dt.UTC)
        starts = self._starts.get(model_id)
        if starts:
            i = bisect.bisect_right(starts, at)
            if i:
                v = self._versions[model_id][i - 1]
                return v.price, v.id
        entry = self.catalog.get(model_id)
        if entry is None:
            raise KeyError(model_id)
        return entry.price, CATALOG_VERSION

    def listing(self, emulated: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
        """The GET /v1/models body as customers see it now: the prices in force, hidden
        models left out (so /v1/models, /docs and pricing agree with what is billed)."""
        return self.catalog.to_openai_list(emulated, lambda m: self.price_for(m)[0], self.hidden)

    def multiplier(self, group: str, model_id: str, group_ppm: int) -> int:
        """The customer's multiplier over list price for this model: the group's, unless the
        operator set one for this model in this group."""
        return self.overrides.get((group, model_id), group_ppm) if self.overrides else group_ppm

    def versions(self, model_id: str | None = None) -> list[PriceVersion]:
        """Every version, the catalog's included, by model then effective date."""
        out: list[PriceVersion] = []
        models = [model_id] if model_id else [e.id for e in self.catalog.entries()]
        models += sorted(m for m in self._versions if m not in models and not model_id)
        for m in models:
            entry = self.catalog.get(m)
            if entry is not None:
                out.append(PriceVersion(CATALOG_VERSION, m, _EPOCH, entry.price, _EPOCH))
            out.extend(self._versions.get(m, []))
        return out

    async def add(
        self,
        model_id: str,
        price: Price,
        effective_from: dt.datetime | None = None,
        note: str | None = None,
    ) -> PriceVersion:
        if self.catalog.get(model_id) is None:
            raise PriceError(f"model: {model_id!r} is not a catalog model id")
        now = dt.datetime.now(dt.UTC)
        start = effective_from or now
        if start.tzinfo is None:
            raise PriceError("effective_from: needs a timezone, e.g. 2026-01-01T00:00:00Z")
        try:
            start = start.astimezone(dt.UTC)
        except OverflowError as exc:
            raise PriceError("effective_from: out of range") from exc
        row = {
            "id": f"pv_{secrets.token_hex(6)}",
            "model_id": model_id,
            "effective_from": start,
            **{f: str(getattr(price, f)) for f in RATE_FIELDS},
            "tiers": [tier_json(t) for t in price.tiers],
            "created_at": now,
            "note": note,
        }
        # The row goes through the loader before it is written: a version that could not be
        # loaded back (or shown) is refused here, never stored to break the model for good.
        version = _from_row(row)
        async with self.engine.begin() as conn:
            await conn.execute(insert(price_versions).values(**row))
        await self.changed(version.id)
        return version

    async def changed(self, what: str) -> None:
        """A version, hidden models or price overrides changed: reload here, tell the rest."""
        await self.load()
        if self.publish is not None:
            await self.publish(what)


def parse_price(body: dict[str, Any], base: Price | None = None) -> Price:
    """A Price from {input, output, cache_read?, cache_write?, cache_write_1h?, tiers?}.
    Unset cache rates come from `base` (the price in force) when given, else cache read 0,
    cache write = input and 1h write = cache write, so a two-number price is complete."""
    rates = {f: _rate(body.get(f), f) for f in RATE_FIELDS}
    given_input, output = rates["input"], rates["output"]
    if given_input is None or output is None:
        raise PriceError("input and output: both are required (USD per 1M tokens)")

    def rate(name: str, default: Decimal) -> Decimal:
        given = rates[name]
        if given is not None:
            return given
        return getattr(base, name) if base is not None else default

    cache_read = rate("cache_read", Decimal(0))
    cache_write = rate("cache_write", given_input)
    cache_write_1h = rate("cache_write_1h", cache_write)
    raw_tiers = body.get("tiers") or []
    if not isinstance(raw_tiers, list) or len(raw_tiers) > _MAX_TIERS:
        raise PriceError(f"tiers: must be a list of at most {_MAX_TIERS} tiers")
    tiers: list[PriceTier] = []
    for i, t in enumerate(raw_tiers):
        if not isinstance(t, dict):
            raise PriceError(f"tiers[{i}]: must be an object")
        unknown = sorted(set(t) - _TIER_FIELDS, key=str)
        if unknown:
            raise PriceError(f"tiers[{i}]: unknown field {unknown[0]!r}")
        above = t.get("above_prompt_tokens")
        if isinstance(above, bool) or not isinstance(above, int) or above < 0:
            raise PriceError(f"tiers[{i}].above_prompt_tokens: a non-negative integer")
        if above > _MAX_TIER_TOKENS:
            raise PriceError(f"tiers[{i}].above_prompt_tokens: at most {_MAX_TIER_TOKENS}")
        try:
            tp = parse_price({k: v for k, v in t.items() if k != "above_prompt_tokens"})
        except PriceError as exc:
            raise PriceError(f"tiers[{i}].{exc}") from exc
        tiers.append(PriceTier(above, *(getattr(tp, f) for f in RATE_FIELDS)))
    tiers.sort(key=lambda t: t.above_prompt_tokens)
    if len({t.above_prompt_tokens for t in tiers}) != len(tiers):
        raise PriceError("tiers: two tiers have the same above_prompt_tokens")
    return Price(given_input, output, cache_read, cache_write, cache_write_1h, tuple(tiers))


def parse_time(value: Any, field: str = "effective_from") -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PriceError(f"{field}: an ISO 8601 timestamp string")
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        # A timestamp without zone is taken as UTC: everything the gateway stores is UTC.
        # Converted here: year 1 at +14:00 or year 9999 at -12:00 has no UTC datetime.
        return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    except (ValueError, OverflowError) as exc:
        raise PriceError(f"{field}: not an ISO 8601 timestamp: {value[:40]!r}") from exc


def _rate(value: Any, field: str) -> Decimal | None:
    if value is None:
        return None
    try:
        return parse_rate(value)
    except MoneyError as exc:
        raise PriceError(f"{field}: {exc} (USD per 1M tokens)") from exc


def tier_json(t: PriceTier) -> dict[str, Any]:
    return {
        "above_prompt_tokens": t.above_prompt_tokens,
        **{f: str(getattr(t, f)) for f in RATE_FIELDS},
    }


def _from_row(row: Any) -> PriceVersion:
    price = parse_price({f: row[f] for f in RATE_FIELDS} | {"tiers": row["tiers"]})
    version = PriceVersion(
        row["id"],
        row["model_id"],
        _utc(row["effective_from"]),
        price,
        _utc(row["created_at"]),
        row["note"],
    )
    version.public()  # what GET /admin/v1/prices shows must render too
    return version


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
