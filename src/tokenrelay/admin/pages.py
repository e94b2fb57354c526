"""The console's pages: overview, customers, models and prices, codes, requests. Reads come
from reads.py, every change goes through the operator service layer (actions.py); forms
post, redirect and get; what cannot be undone asks for a confirmation first."""

from __future__ import annotations

import csv
import datetime as dt
import io
import secrets
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tokenrelay.admin import reads
from tokenrelay.admin.actions import ActionError, multiplier_ppm
from tokenrelay.admin.console import HEADERS, Post, Shell, View, plain
from tokenrelay.admin.operators import SUPPORT_CREDIT_MAX_NANO
from tokenrelay.catalog import format_usd
from tokenrelay.money import MoneyError, parse_nano
from tokenrelay.portal import queries

Page = Callable[[str, int], Awaitable[Response]]


class Pages:
    def __init__(
        self,
        shell: Shell,
        inflight: Callable[[], int],
        deployments: Callable[[], list[dict[str, Any]]],
    ) -> None:
        self.shell = shell
        self.actions = shell.actions
        self.db = shell.actions.engine
        self.inflight = inflight
        self.deployments = deployments
        self.overview_reads = reads.Overview(self.db)

    @property
    def billing(self) -> Any:
        return self.actions._billing()

    async def _list_price_warning(self) -> str | None:
        groups = await self.actions.price_groups()
        if groups and all(g["multiplier"] <= 1 for g in groups):
            return (
                "Every price group sells at list price (or below): you earn no margin. "
                "Set a multiplier above 1 under Models and prices."
            )
        return None

    # ------------------------------------------------------------------ overview

    async def overview(self, v: View) -> Response:
        q = v.request.query_params
        name = q.get("range", "7d")
        r = reads.Range.named(name, q.get("from", ""), q.get("to", ""))
        await self.billing.writer.flush()  # this process's settled requests are in the DB
        data = await self.overview_reads.read(r)
        errors = await reads.vendor_errors(self.db)
        trouble = _vendors_in_trouble(self.deployments(), errors)
        return self.shell.render(
            v,
            "console_overview.html",
            range=name,
            range_from=q.get("from", ""),
            range_to=q.get("to", ""),
            data=data,
            low=await reads.running_low(self.db),
            trouble=trouble,
            below_cost=self._below_cost(),
            inflight=self.inflight(),
            warning=await self._list_price_warning(),
        )

    def _below_cost(self) -> list[str]:
        return [
            f"{g} × {m}" for (g, m), ppm in self.billing.prices.overrides.items() if ppm < 10**6
        ]

    # ------------------------------------------------------------------ customers

    async def customers(self, v: View) -> Response:
        q = v.request.query_params.get("q", "")
        raw = v.request.query_params.get("page", "0")
        page = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 6 else 0
        rows, more = await reads.customers(self.db, q, page)
        return self.shell.render(
            v,
            "console_customers.html",
            q=q,
            rows=rows,
            page=page,
            more=more,
        )

    async def customer(self, v: View) -> Response:
        account_id = v.request.path_params["account_id"][:40]
        await self.billing.writer.flush()
        found = await reads.customer(self.db, account_id)
        if found is None:
            return plain(404, "no such account")
        daily = dict(await queries.daily_spend(self.db, account_id))
        days = [
            (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=i)).isoformat()
            for i in range(29, -1, -1)
        ]
        return self.shell.render(
            v,
            "console_customer.html",
            c=found,
            keys=await self.actions.keys.list_for_account(account_id),
            groups=await self.actions.price_groups(),
            chart_days=days,
            chart_costs=[daily.get(d, 0) / 1e9 for d in days],
            idem=secrets.token_urlsafe(12),
            support_max=SUPPORT_CREDIT_MAX_NANO,
        )

    async def credit(self, p: Post) -> Response:
        account_id = p.param("account_id")
        try:
            amount = parse_nano(p.field("amount"), signed=True, allow_zero=False)
        except MoneyError as exc:
            return await p.again(self.customer, f"Amount: {exc}.", 400)
        # The form's one-time key: a double submit (or a retried post) credits once.
        idem = p.field("idem")[:40]
        action = self.actions.adjust_credit(
            p.actor,
            account_id,
            amount,
            p.field("reason"),
            f"console:{account_id}:{idem}" if idem else None,
        )
        return await self.shell.act(action, f"/admin/customers/{account_id}", self.customer, p)

    async def disable(self, p: Post) -> Response:
        account_id = p.param("account_id")
        action = self.actions.set_account_disabled(
            p.actor, account_id, p.field("disabled") == "yes", p.field("reason")
        )
        return await self.shell.act(action, f"/admin/customers/{account_id}", self.customer, p)

    async def move_group(self, p: Post) -> Response:
        account_id = p.param("account_id")
        groups = {g["name"]: g["multiplier"] for g in await self.actions.price_groups()}
        if p.field("group") not in groups:
            return await p.again(self.customer, "No such price group.", 404)
        group = p.field("group")
        action = self.actions.save_price_group(p.actor, group, groups[group], account_id)
        return await self.shell.act(action, f"/admin/customers/{account_id}", self.customer, p)

    async def revoke_key(self, p: Post) -> Response:
        key = await self.actions.keys.get(p.param("key_id"))
        if key is None:
            return plain(404, "no such key")
        back = f"/admin/customers/{key.account_id}"
        if p.field("confirm") != "yes":
            return self._confirm(
                p,
                f"Revoke key {key.name} ({key.key_hint})?",
                "Requests with this key fail from now on; this cannot be undone.",
                "Yes, revoke the key",
                back,
            )
        return await self.shell.act(
            self.actions.revoke_key(p.actor, key.id), back, self.customer, p
        )

    def _confirm(self, p: Post, title: str, detail: str, button: str, back: str) -> Response:
        """The second step of what cannot be undone: the same post, with confirm=yes."""
        return self.shell.render(
            p.view,
            "console_confirm.html",
            title=title,
            detail=detail,
            action=p.request.url.path,
            button=button,
            back=back,
        )

    # ------------------------------------------------------------------ models and prices

    async def models(self, v: View, preview: dict[str, Any] | None = None) -> Response:
        prices = self.billing.prices
        groups = await self.actions.price_groups()
        rows = []
        for e in prices.catalog.entries():
            if e.retired:
                continue
            price, version = prices.price_for(e.id)
            rows.append(
                {
                    "id": e.id,
                    "vendor": e.vendor,
                    "aliases": e.aliases,
                    "input": format_usd(price.input),
                    "output": format_usd(price.output),
                    "cache_read": format_usd(price.cache_read),
                    # The batch APIs' rate: the list price (of this version) × the model's
                    # batch multiplier, as batches/lines.py bills it.
                    "batch_input": format_usd(price.input * e.batch),
                    "batch_output": format_usd(price.output * e.batch),
                    "version": version,
                    "hidden": e.id in prices.hidden,
                    "overrides": {
                        g: Decimal(ppm) / 1_000_000
                        for (g, m), ppm in prices.overrides.items()
                        if m == e.id
                    },
                }
            )
        return self.shell.render(
            v,
            "console_models.html",
            rows=rows,
            groups=groups,
            versions=await reads.multiplier_versions(self.db),
            preview=preview,
            warning=await self._list_price_warning(),
        )

    async def visibility(self, p: Post) -> Response:
        action = self.actions.set_model_hidden(
            p.actor, p.field("model"), p.field("hidden") == "yes"
        )
        return await self.shell.act(action, "/admin/models", self.models, p)

    async def price_group(self, p: Post) -> Response:
        """Preview first (the margin per model at the new multiplier), then save."""
        name, multiplier = p.field("group").strip(), p.field("multiplier").strip()
        if p.field("step") != "save":
            try:
                ppm = multiplier_ppm(multiplier)
            except ActionError as exc:
                return await p.again(self.models, str(exc).capitalize() + ".", 400)
            preview = self._preview(name, ppm, multiplier)
            return await self.models(p.view, preview=preview)
        action = self.actions.save_price_group(p.actor, name, multiplier)
        return await self.shell.act(action, "/admin/models", self.models, p)

    def _preview(self, group: str, ppm: int, multiplier: str) -> dict[str, Any]:
        prices = self.billing.prices
        m = Decimal(ppm) / 1_000_000
        rows = []
        for e in prices.catalog.entries():
            if e.retired:
                continue
            p = prices.price_for(e.id)[0]
            rows.append(
                {
                    "id": e.id,
                    "list_in": format_usd(p.input),
                    "sell_in": format_usd(p.input * m),
                    "list_out": format_usd(p.output),
                    "sell_out": format_usd(p.output * m),
                }
            )
        margin = (m - 1) / m * 100 if m else Decimal(0)
        return {
            "group": group,
            "multiplier": multiplier,
            "margin_pct": f"{margin:.1f}",
            "below_cost": m < 1,
            "rows": rows,
        }

    async def override(self, p: Post) -> Response:
        multiplier = p.field("multiplier").strip() or None
        action = self.actions.set_override(p.actor, p.field("group"), p.field("model"), multiplier)
        return await self.shell.act(action, "/admin/models", self.models, p)

    # ------------------------------------------------------------------ codes

    async def codes(self, v: View, **extra: Any) -> Response:
        return self.shell.render(
            v, "console_codes.html", batches=await reads.code_batches(self.db), **extra
        )

    async def create_codes(self, p: Post) -> Response:
        try:
            count = int(p.field("count"))
            amount = parse_nano(p.field("amount"))
            expires = p.field("expires").strip()
            until = (
                dt.datetime.combine(dt.date.fromisoformat(expires), dt.time(), dt.UTC)
                + dt.timedelta(days=1)
                if expires
                else None
            )
            batch_id, codes = await self.actions.create_code_batch(p.actor, count, amount, until)
        except (ValueError, MoneyError) as exc:  # ActionError is a ValueError
            return await p.again(self.codes, f"Codes: {exc}.", 400)
        # Shown once, in this response (never stored in plaintext, so no redirect).
        return await self.codes(p.view, batch_id=batch_id, new_codes=codes)

    async def batch(self, v: View) -> Response:
        batch_id = v.request.path_params["batch_id"][:40]
        rows = await reads.redemptions(self.db, batch_id)
        if not rows:
            return plain(404, "no such batch")
        if v.request.url.path.endswith(".csv"):
            return _csv(batch_id, rows)
        return self.shell.render(v, "console_batch.html", batch_id=batch_id, rows=rows)

    async def revoke_batch(self, p: Post) -> Response:
        batch_id = p.param("batch_id")
        if p.field("confirm") != "yes":
            return self._confirm(
                p,
                f"Revoke the open codes of {batch_id}?",
                "Codes not yet redeemed stop working; redeemed ones stay. This cannot be undone.",
                "Yes, revoke the open codes",
                "/admin/codes",
            )
        action = self.actions.revoke_code_batch(p.actor, batch_id)
        return await self.shell.act(action, "/admin/codes", self.codes, p)

    # ------------------------------------------------------------------ requests

    async def requests(self, v: View) -> Response:
        q = v.request.query_params
        f = reads.RequestFilter(
            account_id=q.get("account", "")[:40],
            key_id=q.get("key", "")[:40],
            model=q.get("model", "")[:200],
            status=q.get("status", "")[:16],
            since=_day(q.get("from", "")),
            until=_day(q.get("to", ""), end=True),
        )
        await self.billing.writer.flush()
        rows, cursor = await reads.requests(
            self.db, f, queries.page_cursor(q.get("at"), q.get("rid"))
        )
        params = {k: v for k, v in q.items() if k not in ("at", "rid")}
        more = (
            urlencode({**params, "at": cursor[0].isoformat(), "rid": cursor[1]}) if cursor else None
        )
        return self.shell.render(v, "console_requests.html", rows=rows, f=params, more=more)

    async def request_detail(self, v: View) -> Response:
        row = await reads.request(self.db, v.request.path_params["request_id"][:100])
        if row is None:
            return plain(404, "no such request")
        return self.shell.render(v, "console_request.html", r=row)

    def routes(self) -> list[BaseRoute]:
        s, p, post = self.shell.signed_in, self.shell.posting, ["POST"]
        return [
            Route("/admin", s(self.overview)),
            Route("/admin/customers", s(self.customers)),
            Route("/admin/customers/{account_id}", s(self.customer)),
            Route("/admin/customers/{account_id}/credit", p(self.credit, "support"), methods=post),
            Route("/admin/customers/{account_id}/disable", p(self.disable, "owner"), methods=post),
            Route("/admin/customers/{account_id}/group", p(self.move_group, "owner"), methods=post),
            Route("/admin/keys/{key_id}/revoke", p(self.revoke_key, "owner"), methods=post),
            Route("/admin/models", s(self.models)),
            Route("/admin/models/visibility", p(self.visibility, "owner"), methods=post),
            Route("/admin/price-groups", p(self.price_group, "owner"), methods=post),
            Route("/admin/price-overrides", p(self.override, "owner"), methods=post),
            Route("/admin/codes", s(self.codes)),
            Route("/admin/codes", p(self.create_codes, "owner"), methods=post),
            Route("/admin/codes/{batch_id}.csv", s(self.batch)),
            Route("/admin/codes/{batch_id}", s(self.batch)),
            Route("/admin/codes/{batch_id}/revoke", p(self.revoke_batch, "owner"), methods=post),
            Route("/admin/requests", s(self.requests)),
            Route("/admin/requests/{request_id}", s(self.request_detail)),
        ]


def _vendors_in_trouble(
    deployments: list[dict[str, Any]], errors: dict[str, float]
) -> list[dict[str, Any]]:
    """Vendors with no deployment in service, or over 5% of the last hour's requests failed."""
    by_vendor: dict[str, list[dict[str, Any]]] = {}
    for d in deployments:
        by_vendor.setdefault(d["vendor"], []).append(d)
    out = []
    for vendor, deps in sorted(by_vendor.items()):
        up = sum(1 for d in deps if d["state"] == "healthy")
        rate = errors.get(vendor, 0.0)
        if up == 0 or rate > 0.05:
            out.append({"vendor": vendor, "up": up, "total": len(deps), "error_rate": rate})
    return out


def _day(raw: str, *, end: bool = False) -> dt.datetime | None:
    try:
        day = dt.date.fromisoformat(raw) if raw else None
    except ValueError:
        return None
    if day is None:
        return None
    return dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(days=1 if end else 0)


def _csv(batch_id: str, rows: list[dict[str, Any]]) -> Response:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["batch", "code_sha256_prefix", "amount_usd", "redeemed_by", "email", "redeemed_at"])
    for r in rows:
        w.writerow(
            [
                batch_id,
                r["code_hash"][:12],
                format_usd(Decimal(r["amount_nano"]).scaleb(-9)),
                r["redeemed_by"] or "",
                _csv_safe(r["email"] or ""),
                r["redeemed_at"].isoformat() if r["redeemed_at"] else "",
            ]
        )
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"content-disposition": f'attachment; filename="{batch_id}.csv"', **HEADERS},
    )


def _csv_safe(value: str) -> str:
    """No spreadsheet formulas out of customer-controlled text."""
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value
