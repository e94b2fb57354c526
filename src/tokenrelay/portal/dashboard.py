"""The dashboard: balance, spend chart, keys, per-model totals, batches and the usage table (a
page, an htmx fragment and a CSV export)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from tokenrelay.billing.receipts import ReceiptSigner, claims, load_signer, record_from_row
from tokenrelay.money import usd
from tokenrelay.portal import prices, queries
from tokenrelay.portal.cache_report import cache_report
from tokenrelay.portal.security import FLASH, Session
from tokenrelay.portal.web import SECURITY_HEADERS, PortalBase, dollars, templates

# ?notice=… after a redirect: (where it shows, what it says).
NOTICES = {
    "paid": ("message", "Payment received: the credit appears once Stripe confirms it."),
    "code": ("error", "Your account is ready, but the code could not be redeemed."),
    "verified": ("message", "Your email address is confirmed: your account is ready."),
    "sent": ("message", "A new confirmation link is on its way."),
    "wait": ("error", "Confirmation links were sent a few times already; try again later."),
    "again": ("message", "That form was sent already: nothing was done twice."),
}


class DashboardPages(PortalBase):
    _signer: ReceiptSigner | None = None

    def _filter(self, request: Request, account_id: str) -> queries.UsageFilter:
        q = request.query_params
        return queries.UsageFilter(
            account_id, (q.get("model") or None), (q.get("key") or None), None
        )

    async def _usage_ctx(self, request: Request, account: Any) -> dict[str, Any]:
        await self.billing.writer.flush()  # this process's settled requests are in the DB
        f = self._filter(request, account.id)
        before = queries.page_cursor(
            request.query_params.get("at"), request.query_params.get("rid")
        )
        rows, cursor = await queries.usage_page(self.db, f, before)
        next_cursor = None
        if cursor is not None:
            params = {"model": f.model or "", "key": f.key_id or ""}
            params |= {"at": cursor[0].isoformat(), "rid": cursor[1]}
            next_cursor = urlencode(params)
        return {
            "rows": rows,
            "next_cursor": next_cursor,
            "filter_model": f.model,
            "filter_key": f.key_id,
        }

    async def dashboard(
        self,
        request: Request,
        session: Session,
        account: Any,
        *,
        new_key: str | None = None,
        message: str | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        usage_ctx = await self._usage_ctx(request, account)
        keys = await self.keys.list_for_account(account.id)
        days = _range_days(request)
        buckets, since = _buckets(days)
        series = await queries.usage_series(self.db, account.id, since, hourly=days == 1)
        key_names = {k.id: k.name for k in keys}
        chart = chart_data(buckets, series, key_names)
        # `account` was read for this request (the sign-in check); the forms that re-render
        # this page on an error changed nothing.
        ppm = await prices.multiplier_ppm(self.db, account.price_group)
        caching = await cache_report(self.db, account.id, since, self.models(), ppm)
        held = queries.batch_holds(self.billing)
        batches = await queries.batch_rows(self.db, account.id, held_states=held)
        flash = self.sessions.take_flash(request, session)
        new_key = new_key or flash.get("new_key")
        message = message or flash.get("message")
        kind, text = NOTICES.get(request.query_params.get("notice", ""), ("", ""))
        if kind == "message":
            message = message or text
        elif kind == "error":
            error = error or text
        response = self.page(
            request,
            "dashboard.html",
            status,
            session=session,
            account=account,
            balance=dollars(account.balance_nano),
            spent=dollars(sum(row[4] for row in series)),
            requests=sum(row[3] for row in series),
            chart=chart,
            days=days,
            ranges=RANGES,
            caching=caching,
            batches=batches,
            keys=keys,
            key_names=key_names,
            models=[r["name"] for r in caching["model"]],
            new_key=new_key,
            signup_credit=self.settings.signup_credit_usd > 0,
            stripe_amounts=self.stripe.amounts if self.stripe else [],
            message=message,
            error=error,
            **usage_ctx,
        )
        if flash:
            response.delete_cookie(FLASH, path="/dashboard")
        return response

    async def usage_fragment(self, request: Request, session: Session, account: Any) -> Response:
        keys = await self.keys.list_for_account(account.id)
        ctx = await self._usage_ctx(request, account)
        body = templates.get_template("usage_rows.html").render(
            key_names={k.id: k.name for k in keys}, **ctx
        )
        return HTMLResponse(body, headers=SECURITY_HEADERS)

    async def _receipt_signer(self) -> ReceiptSigner:
        """The gateway's receipt key (the setting, or the one every replica shares in the
        database): the CSV's receipts check against the same published key."""
        if self._signer is None:
            seed = self.settings.receipt_key
            self._signer = await load_signer(seed.get_secret_value() if seed else None, self.db)
        return self._signer

    async def usage_csv(self, request: Request, session: Session, account: Any) -> Response:
        await self.billing.writer.flush()
        rows = await queries.usage_csv_rows(self.db, self._filter(request, account.id))
        signer = await self._receipt_signer()
        group = account.price_group
        group_ppm = await prices.multiplier_ppm(self.db, group)
        out = io.StringIO()
        columns = [
            "request_id", "started_at", "key_id", "model", "vendor", "stream", "input_tokens",
            "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
            "status", "reason", "ttft_ms", "duration_ms",
        ]  # fmt: skip
        writer = csv.writer(out)
        writer.writerow([*columns, "cost_usd", "receipt"])
        for r in rows:
            # The receipt the answer carried (signatures are deterministic): the multiplier
            # it was billed at (recorded since 0017; before, the group's as it is now).
            ppm = r["multiplier_ppm"]
            if ppm is None:
                ppm = self.billing.prices.multiplier(group, r["model"], group_ppm)
            receipt = signer.sign(claims(record_from_row(r), ppm))
            r["started_at"] = _iso_utc(r["started_at"])
            cells = [_csv_safe(r[c]) for c in columns]
            writer.writerow([*cells, usd(int(r["cost_nano"])), receipt])
        return Response(
            out.getvalue(),
            media_type="text/csv",
            headers={
                "content-disposition": 'attachment; filename="usage.csv"',
                **SECURITY_HEADERS,
            },
        )


def _buckets(days: int) -> tuple[list[str], dt.datetime]:
    """The chart's UTC buckets, oldest first (the last 24 hours for a one-day range, else the
    last `days` days: empty ones show as zero), and the time the first one starts."""
    now = dt.datetime.now(dt.UTC)
    if days == 1:
        hour = now.replace(minute=0, second=0, microsecond=0)
        hours = [hour - dt.timedelta(hours=i) for i in range(23, -1, -1)]
        return [h.strftime("%Y-%m-%dT%H") for h in hours], hours[0]
    first = now.replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=days - 1)
    return [(first + dt.timedelta(days=i)).date().isoformat() for i in range(days)], first


SERIES_MAX = 6  # lines a chart can tell apart; the rest add up to "other"


def chart_data(
    buckets: list[str], rows: list[tuple[str, str, str, int, int]], key_names: dict[str, str]
) -> dict[str, Any]:
    """Spend (USD) and requests per bucket, split by model and by key, for chart.js."""
    at = {b: i for i, b in enumerate(buckets)}
    out: dict[str, Any] = {
        "x": [int(dt.datetime.fromisoformat(b).replace(tzinfo=dt.UTC).timestamp()) for b in buckets]
    }
    for split in ("model", "key"):
        of = [row[1] if split == "model" else row[2] for row in rows]
        totals: dict[str, int] = {}
        for name, row in zip(of, rows, strict=True):
            totals[name] = totals.get(name, 0) + row[4] + row[3]  # cost, then count
        ranked = sorted(totals, key=lambda n: -totals[n])
        shown = ranked[:SERIES_MAX] if len(ranked) <= SERIES_MAX else ranked[: SERIES_MAX - 1]
        names = [*shown, *(["other"] if len(ranked) > len(shown) else [])]
        cost = [[0] * len(buckets) for _ in names]
        count = [[0] * len(buckets) for _ in names]
        for name, row in zip(of, rows, strict=True):
            i = at.get(row[0])
            if i is None:
                continue
            line = names.index(name) if name in shown else len(names) - 1
            cost[line][i] += row[4]
            count[line][i] += row[3]
        labels = [key_names.get(n, n) for n in names] if split == "key" else names
        out[split] = {
            "names": labels,
            "cost": [[c / 1e9 for c in line] for line in cost],
            "requests": count,
        }
    return out


def _csv_safe(value: Any) -> Any:
    """No spreadsheet formulas out of customer-controlled text."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


RANGES = (1, 7, 30, 90)


def _range_days(request: Request) -> int:
    raw = request.query_params.get("days", "")
    return int(raw) if raw.isdigit() and int(raw) in RANGES else 30


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)  # SQLite's are naive UTC


def _iso_utc(when: dt.datetime) -> str:
    """ISO-8601 in UTC with a Z, as spreadsheets and pandas parse it."""
    return _aware(when).astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
