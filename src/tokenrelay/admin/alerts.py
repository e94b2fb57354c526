"""Alerts: the operator hears (webhook and/or email) when every deployment of a vendor is out
of service, the error rate jumps, or a model sells below its upstream cost; a customer gets an
email when the balance falls below the threshold they chose.

One check every `alert_interval_s` in each serving process. `alerts_sent` makes a condition
page once per hour across every replica (the first to insert its key sends); a customer's
email is claimed with one conditional UPDATE of `low_balance_alerted_at`, cleared again once
the balance is back above the threshold.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from tokenrelay.money import usd
from tokenrelay.portal import mail
from tokenrelay.store.async_core import AsyncEngine
from tokenrelay.store.tables import accounts, alerts_sent, usage_records

if TYPE_CHECKING:
    from tokenrelay.billing.pricebook import PriceBook
    from tokenrelay.settings import Settings

log = logging.getLogger("tokenrelay.alerts")

REPEAT = dt.timedelta(hours=1)
JUMP_MIN_REQUESTS = 20  # fewer requests in the window say nothing about a rate
JUMP_FLOOR = 0.10  # an error rate under 10% is no jump


@dataclass(frozen=True, slots=True)
class Alert:
    key: str  # the condition, for paging once
    text: str


async def operator_alerts(
    engine: AsyncEngine, prices: PriceBook, deployments: list[dict[str, Any]]
) -> list[Alert]:
    out: list[Alert] = []
    by_vendor: dict[str, list[str]] = {}
    for d in deployments:
        by_vendor.setdefault(d["vendor"], []).append(d["state"])
    for vendor, states in sorted(by_vendor.items()):
        if not any(s in ("healthy", "probing") for s in states):
            out.append(Alert(f"down:{vendor}", f"Every deployment of {vendor} is out of service."))
    for (group, model), ppm in sorted(prices.overrides.items()):
        if ppm < 1_000_000:
            out.append(
                Alert(f"below:{group}:{model}", f"{model} sells below upstream cost in {group}.")
            )
    now = dt.datetime.now(dt.UTC)
    recent = await _error_rate(engine, now - dt.timedelta(minutes=5), now)
    before = await _error_rate(
        engine, now - dt.timedelta(minutes=65), now - dt.timedelta(minutes=5)
    )
    if recent is not None and recent > max(JUMP_FLOOR, 3 * (before or 0.0)):
        out.append(
            Alert(
                "errors",
                f"Error rate jumped to {recent:.0%} in the last 5 minutes "
                f"(the hour before: {(before or 0):.0%}).",
            )
        )
    return out


async def _error_rate(engine: AsyncEngine, start: dt.datetime, end: dt.datetime) -> float | None:
    u = usage_records.c
    if engine.url.get_backend_name() == "sqlite":
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    query = select(func.count(), func.count().filter(u.status == "error")).where(
        u.started_at >= start, u.started_at < end
    )
    async with engine.connect() as conn:
        n, errors = (await conn.execute(query)).one()
    return int(errors) / int(n) if n and n >= JUMP_MIN_REQUESTS else None


async def claim(engine: AsyncEngine, key: str) -> bool:
    """Whether this process sends `key` now (not sent by anyone within REPEAT)."""
    now = dt.datetime.now(dt.UTC)
    async with engine.begin() as conn:
        await conn.execute(
            delete(alerts_sent).where(
                alerts_sent.c.key == key, alerts_sent.c.sent_at < now - REPEAT
            )
        )
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(alerts_sent).values(key=key[:300], sent_at=now))
    except IntegrityError:
        return False
    return True


async def low_balance_emails(settings: Settings, engine: AsyncEngine) -> int:
    """Email each customer whose balance fell below their threshold, once per fall."""
    a = accounts.c
    now = dt.datetime.now(dt.UTC)
    async with engine.begin() as conn:
        # Back above the threshold: the next fall mails again.
        await conn.execute(
            update(accounts)
            .where(a.low_balance_alerted_at.is_not(None), a.balance_nano >= a.low_balance_nano)
            .values(low_balance_alerted_at=None)
        )
        due = (
            await conn.execute(
                select(a.id, a.email, a.balance_nano, a.low_balance_nano).where(
                    a.low_balance_nano.is_not(None),
                    a.low_balance_alerted_at.is_(None),
                    a.balance_nano < a.low_balance_nano,
                    a.email.is_not(None),
                    a.disabled_at.is_(None),
                )
            )
        ).all()
    sent = 0
    for account_id, email, balance, threshold in due:
        async with engine.begin() as conn:
            claimed = await conn.execute(
                update(accounts)
                .where(and_(a.id == account_id, a.low_balance_alerted_at.is_(None)))
                .values(low_balance_alerted_at=now)
            )
        if not claimed.rowcount:
            continue  # another replica took it
        await mail.send(
            settings,
            email,
            "Your balance is running low",
            f"Your balance is ${usd(int(balance))}, below the ${usd(int(threshold))} you chose "
            "to be told about. Top up to keep your requests going.\n",
        )
        sent += 1
    return sent


class AlertWatcher:
    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        prices: PriceBook,
        deployments: Callable[[], list[dict[str, Any]]],
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.prices = prices
        self.deployments = deployments
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check(self) -> list[Alert]:
        """One round: returns the operator alerts sent by this process."""
        await low_balance_emails(self.settings, self.engine)
        sent = []
        for alert in await operator_alerts(self.engine, self.prices, self.deployments()):
            if await claim(self.engine, alert.key):
                await self._deliver(alert)
                sent.append(alert)
        return sent

    async def _deliver(self, alert: Alert) -> None:
        s = self.settings
        if s.alert_webhook_url is not None:
            import httpx  # here: only a webhook needs it (~10 MB of idle memory)

            try:
                async with httpx.AsyncClient(timeout=10) as client:
                    await client.post(
                        s.alert_webhook_url.get_secret_value(),
                        json={"alert": alert.key, "text": alert.text},
                    )
            except httpx.HTTPError as exc:
                log.warning("alert webhook failed: %s", type(exc).__name__)
        if s.alert_email:
            await mail.send(s, s.alert_email, f"tokenrelay alert: {alert.key}", alert.text + "\n")
        if s.alert_webhook_url is None and not s.alert_email:
            log.warning("alert: %s", alert.text)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.alert_interval_s)
            try:
                await self.check()
            except Exception as exc:  # the next round tries again
                log.warning("alert check failed: %s", type(exc).__name__)
