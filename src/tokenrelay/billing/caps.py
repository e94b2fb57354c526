"""Spend caps per key: per UTC day and per UTC calendar month, in customer nano-USD.

A request is admitted only if the key's spend in the period, plus what its requests in flight
hold, plus this request's worst case, stays within the cap. The period's spend is read from
the usage records once per key and period, then followed in process (each settlement adds its
cost), so admission costs no query. Per process: with several replicas each one counts what
it settled after its read, so a cap can be overrun by what other replicas settle meanwhile
(documented; the balance, not the cap, is the hard guarantee).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tokenrelay.customers.keys import ApiKeyInfo
from tokenrelay.errors import GatewayError
from tokenrelay.money import usd
from tokenrelay.single_flight import SingleFlight
from tokenrelay.store.tables import usage_records


class SpendCaps:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # key id -> (day, month, spent today, spent this month) as of the last settlement
        self._spent: dict[str, tuple[str, str, int, int]] = {}
        self._held: dict[str, int] = {}  # key id -> worst cases of its requests in flight
        self._holds: dict[str, tuple[str, int]] = {}  # request id -> (key id, amount)
        self._loading: SingleFlight[str, None] = SingleFlight()

    async def admit(self, key: ApiKeyInfo, request_id: str, worst: int) -> None:
        """Raises GatewayError 402 when the request could take the key past a cap."""
        day, month = _periods()
        await self._ensure(key.id, day, month)
        _, _, today, this_month = self._spent[key.id]
        after = self._held.get(key.id, 0) + worst
        for cap, spent, what in (
            (key.daily_cap_nano, today, "daily"),
            (key.monthly_cap_nano, this_month, "monthly"),
        ):
            if cap is not None and spent + after > cap:
                raise GatewayError(
                    "billing",
                    f"This key's {what} spend cap (${usd(cap)}) is reached: ${usd(spent)} "
                    f"spent, this request may cost up to ${usd(worst)}",
                    402,
                )
        self._held[key.id] = self._held.get(key.id, 0) + worst
        self._holds[request_id] = (key.id, worst)

    def settle(self, request_id: str, cost: int) -> None:
        hold = self._holds.pop(request_id, None)
        if hold is None:
            return
        key_id, amount = hold
        self._held[key_id] -= amount
        day, month = _periods()
        spent = self._spent.get(key_id)
        if spent is not None:
            d, m, today, this_month = spent
            today = today + cost if d == day else cost
            this_month = this_month + cost if m == month else cost
            self._spent[key_id] = (day, month, today, this_month)

    def release(self, request_id: str) -> None:
        hold = self._holds.pop(request_id, None)
        if hold is not None:
            self._held[hold[0]] -= hold[1]

    async def _ensure(self, key_id: str, day: str, month: str) -> None:
        known = self._spent.get(key_id)
        if known is not None and known[0] == day and known[1] == month:
            return

        async def load() -> None:
            now = dt.datetime.now(dt.UTC)
            day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
            month_start = day_start.replace(day=1)
            u = usage_records.c
            spent = func.coalesce(func.sum(u.cost_nano), 0)
            async with self.engine.connect() as conn:
                month_total = await conn.scalar(
                    select(spent).where(u.key_id == key_id, u.started_at >= month_start)
                )
                day_total = await conn.scalar(
                    select(spent).where(u.key_id == key_id, u.started_at >= day_start)
                )
            self._spent[key_id] = (day, month, int(day_total or 0), int(month_total or 0))

        await self._loading.run(key_id, load)


def _periods() -> tuple[str, str]:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    return today, today[:7]
