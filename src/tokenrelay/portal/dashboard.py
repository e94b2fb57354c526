"""The dashboard: balance, spend chart, keys, per-model totals and the usage table (a page,
an htmx fragment and a CSV export)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

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
    def _filter(self, request: Request, account_id: str) -> queries.UsageFilter:
        q = request.query_params
        return queries.UsageFilter(
            account_id, (q.get("model") or None), (q.get("key") or None), None
        )

    async def _usage_ctx(self, request: Request, account: Any) -> dict[str, Any]:
        await self.billing.writer.flush()  # this process's settled requests are in the DB
        f = self._filter(request, account.id)
        before = _cursor(request)
        rows, cursor = await queries.usage_page(self.db, f, before)
        for r in rows:
            r["cost_usd"] = usd(int(r["cost_nano"]))
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
        daily = await queries.daily_spend(self.db, account.id, days)
        models = await queries.per_model(self.db, account.id, days)
        for m in models:
            m["cost_usd"] = usd(int(m["cost"] or 0))
        fresh = await self.accounts.get(account.id)
        ppm = await prices.multiplier_ppm(self.db, fresh.price_group if fresh else None)
        caching = await cache_report(self.db, account.id, days, self.models(), ppm)
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
            account=fresh,
            balance=dollars(fresh.balance_nano if fresh else 0),
            spent30=usd(sum(c for _, c in daily)),
            chart_days=list(_last_days(days)),
            chart_costs=[dict(daily).get(d, 0) / 1e9 for d in _last_days(days)],
            days=days,
            ranges=RANGES,
            caching=caching,
            keys=keys,
            key_names={k.id: k.name for k in keys},
            models=models,
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

    async def usage_csv(self, request: Request, session: Session, account: Any) -> Response:
        await self.billing.writer.flush()
        rows = await queries.usage_csv_rows(self.db, self._filter(request, account.id))
        out = io.StringIO()
        columns = [
            "request_id", "started_at", "key_id", "model", "vendor", "stream", "input_tokens",
            "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
            "status", "reason", "duration_ms",
        ]  # fmt: skip
        writer = csv.writer(out)
        writer.writerow([*columns, "cost_usd"])
        for r in rows:
            r["started_at"] = _iso_utc(r["started_at"])
            writer.writerow([_csv_safe(r[c]) for c in columns] + [usd(int(r["cost_nano"]))])
        return Response(
            out.getvalue(),
            media_type="text/csv",
            headers={
                "content-disposition": 'attachment; filename="usage.csv"',
                **SECURITY_HEADERS,
            },
        )


def _last_days(n: int) -> list[str]:
    """The last `n` UTC days, oldest first: the chart shows days without spend as zero."""
    today = dt.datetime.now(dt.UTC).date()
    return [(today - dt.timedelta(days=i)).isoformat() for i in range(n - 1, -1, -1)]


def _cursor(request: Request) -> tuple[dt.datetime, str] | None:
    at, rid = request.query_params.get("at"), request.query_params.get("rid")
    if not at or not rid:
        return None
    try:
        when = dt.datetime.fromisoformat(at)
    except ValueError:
        return None
    # Stored naive (SQLite) or aware (PostgreSQL), UTC either way.
    return when.replace(tzinfo=None) if when.tzinfo else when, rid[:100]


def _csv_safe(value: Any) -> Any:
    """No spreadsheet formulas out of customer-controlled text."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


RANGES = (1, 7, 30, 90)


def _range_days(request: Request) -> int:
    raw = request.query_params.get("days", "")
    return int(raw) if raw.isdigit() and int(raw) in RANGES else 30


def _iso_utc(when: dt.datetime) -> str:
    """ISO-8601 in UTC with a Z, as spreadsheets and pandas parse it."""
    aware = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    return aware.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
