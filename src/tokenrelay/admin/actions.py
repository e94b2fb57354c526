"""Operator actions: the one service layer that the CLI, the admin REST API and the console
pages call. Each action checks its input, does the work through the owner of the data (billing
for money, the key store for keys) and writes the audit log with who and why, so an operator
action means the same whichever door it came through.

Errors: ActionError (bad input, the message names the field and is fit for a form or a 400)
and NotFound (no such account, key or model).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, update

from tokenrelay.admin.operators import ROLES, SUPPORT_CREDIT_MAX_NANO
from tokenrelay.customers.accounts import AccountStore
from tokenrelay.portal.topups import create_batch
from tokenrelay.store.async_core import AsyncConnection, AsyncEngine
from tokenrelay.store.db import dialect_insert
from tokenrelay.store.tables import (
    accounts,
    audit_log,
    model_settings,
    price_groups,
    price_multiplier_versions,
    price_overrides,
    redemption_codes,
    signup_blocks,
)

if TYPE_CHECKING:
    from tokenrelay.billing.engine import BillingEngine
    from tokenrelay.billing.pricebook import PriceVersion
    from tokenrelay.catalog import Price
    from tokenrelay.customers.keys import ApiKeyInfo, KeyStore
    from tokenrelay.upstreams.calls import Upstreams
    from tokenrelay.upstreams.deployment_state import DeploymentStates, Probe

MAX_REASON = 500
MAX_GROUP_NAME = 64
DEPLOYMENT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
MAX_WEIGHT = 1000


class ActionError(ValueError):
    """The input is wrong; the message names the field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(LookupError):
    """No such account, key or model."""


class Forbidden(PermissionError):
    """The actor's role does not allow this action."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: an operator's email, `admin-api` (the shared token) or `cli:<user>`; the
    token and the CLI hold the machine, so they act as owners."""

    name: str
    role: str = "owner"

    def require(self, role: str) -> None:
        if ROLES.index(self.role) > ROLES.index(role):
            raise Forbidden(f"{self.role} operators may not do this")


class OperatorActions:
    def __init__(
        self,
        engine: AsyncEngine,
        keys: KeyStore,
        billing: BillingEngine | None = None,
        *,
        upstreams: Upstreams | None = None,
        states: DeploymentStates | None = None,
    ) -> None:
        self.engine = engine
        self.keys = keys
        self.billing = billing
        self.accounts = AccountStore(engine)
        self.upstreams = upstreams
        self.states = states

    def _billing(self) -> BillingEngine:
        if self.billing is None:  # a wiring mistake, not an input error
            raise RuntimeError("this action needs the billing engine")
        return self.billing

    # ------------------------------------------------------------------ money

    async def adjust_credit(
        self,
        actor: Actor,
        account_id: str,
        amount_nano: int,
        reason: str,
        idempotency_key: str | None = None,
    ) -> int:
        """Credit (or, negative, debit) an account with a reason; returns the new balance.
        With an idempotency key a repeat (a double-submitted form) moves nothing."""
        actor.require("support")
        if actor.role == "support" and abs(amount_nano) > SUPPORT_CREDIT_MAX_NANO:
            raise Forbidden(f"support operators adjust at most ${SUPPORT_CREDIT_MAX_NANO // 10**9}")
        reason = _reason(reason)
        if amount_nano == 0:
            raise ActionError("amount: not zero", "amount")
        if await self.accounts.get(account_id) is None:
            raise NotFound(account_id)
        balance = await self._billing().credit_account(
            account_id, amount_nano, f"{actor.name}: {reason}", idempotency_key, kind="adjustment"
        )
        await self.audit(actor, "credit_adjustment", account_id, amount_nano, reason)
        return balance

    async def credit_key(
        self,
        actor: Actor,
        key_id: str,
        amount_nano: int,
        note: str | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Credit the account of a key (the admin API's and the CLI's form); returns the
        account's new balance. NotFound for an unknown key; billing's BalanceOverflow and
        IdempotencyConflict pass through."""
        actor.require("owner")
        try:
            balance = await self._billing().add_credits(key_id, amount_nano, note, idempotency_key)
        except KeyError:
            raise NotFound(key_id) from None
        info = await self.keys.get(key_id)
        await self.audit(
            actor, "credit", info.account_id if info else None, amount_nano, note or key_id
        )
        return balance

    async def set_price(
        self,
        actor: Actor,
        model_id: str,
        price: Price,
        effective_from: dt.datetime | None = None,
        note: str | None = None,
    ) -> PriceVersion:
        actor.require("owner")
        version = await self._billing().prices.add(model_id, price, effective_from, note)
        await self.audit(
            actor, "price_version", None, None, f"{model_id} {version.id} {note or ''}".strip()
        )
        return version

    # ------------------------------------------------------------------ codes

    async def create_code_batch(
        self, actor: Actor, count: int, amount_nano: int, expires_at: dt.datetime | None
    ) -> tuple[str, list[str]]:
        """(batch id, the plaintext codes, shown once)."""
        actor.require("owner")
        try:
            batch_id, codes = await create_batch(self.engine, count, amount_nano, expires_at)
        except ValueError as exc:
            raise ActionError(str(exc), str(exc).partition(":")[0]) from None
        await self.audit(actor, "code_batch", None, amount_nano * count, batch_id)
        return batch_id, codes

    # ------------------------------------------------------------------ price groups

    async def save_price_group(
        self, actor: Actor, name: str, multiplier: str | Decimal, account_id: str | None = None
    ) -> Decimal:
        """Create or re-price a group, and optionally move an account into it."""
        actor.require("owner")
        name = name.strip()
        if not 0 < len(name) <= MAX_GROUP_NAME:
            raise ActionError(f"group: 1 to {MAX_GROUP_NAME} characters", "group")
        ppm = multiplier_ppm(multiplier)
        if account_id and await self.accounts.get(account_id) is None:
            raise NotFound(account_id)
        async with self.engine.begin() as conn:
            old = await conn.scalar(
                select(price_groups.c.multiplier_ppm).where(price_groups.c.name == name)
            )
            stmt = dialect_insert(conn, price_groups).values(name=name, multiplier_ppm=ppm)
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=["name"], set_={"multiplier_ppm": ppm})
            )
            if old != ppm:
                await _version(conn, actor, name, None, old, ppm)
            if account_id:
                await conn.execute(
                    update(accounts).where(accounts.c.id == account_id).values(price_group=name)
                )
        shown = Decimal(ppm) / 1_000_000
        await self.audit(actor, "price_group", account_id or None, None, f"{name} x{shown}")
        if account_id:
            await self._forget_keys(account_id)  # the cached keys carry the old multiplier
        return shown

    async def price_groups(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(price_groups.c.name, price_groups.c.multiplier_ppm).order_by(
                    price_groups.c.name
                )
            )
            return [{"name": n, "multiplier": Decimal(ppm) / 1_000_000} for n, ppm in rows]

    async def set_override(
        self, actor: Actor, group: str, model_id: str, multiplier: str | None
    ) -> None:
        """This model's multiplier in this group (None or "": back to the group's own)."""
        actor.require("owner")
        billing = self._billing()
        if billing.prices.catalog.get(model_id) is None:
            raise NotFound(model_id)
        async with self.engine.begin() as conn:
            exists = await conn.scalar(
                select(price_groups.c.name).where(price_groups.c.name == group)
            )
            if exists is None:
                raise NotFound(group)
            where = (price_overrides.c.group_name == group) & (
                price_overrides.c.model_id == model_id
            )
            old = await conn.scalar(select(price_overrides.c.multiplier_ppm).where(where))
            await conn.execute(delete(price_overrides).where(where))
            ppm = multiplier_ppm(multiplier) if multiplier else None
            if ppm is not None:
                await conn.execute(
                    insert(price_overrides).values(
                        group_name=group, model_id=model_id, multiplier_ppm=ppm
                    )
                )
            if old != ppm:
                await _version(conn, actor, group, model_id, old, ppm)
        await billing.prices.changed("settings")
        what = f"{group} {model_id} x{multiplier}" if multiplier else f"{group} {model_id} cleared"
        await self.audit(actor, "price_override", None, None, what)

    async def set_model_hidden(self, actor: Actor, model_id: str, hidden: bool) -> None:
        """Take a model off sale (gone from /v1/models, /docs; requests get 404) or back."""
        actor.require("owner")
        billing = self._billing()
        if billing.prices.catalog.get(model_id) is None:
            raise NotFound(model_id)
        async with self.engine.begin() as conn:
            await conn.execute(delete(model_settings).where(model_settings.c.model_id == model_id))
            await conn.execute(
                insert(model_settings).values(
                    model_id=model_id, hidden=hidden, updated_at=dt.datetime.now(dt.UTC)
                )
            )
        await billing.prices.changed("settings")
        await self.audit(actor, "model_hidden" if hidden else "model_shown", None, None, model_id)

    async def revoke_code_batch(self, actor: Actor, batch_id: str) -> int:
        """Expire a batch's open codes now (redeemed ones stay); returns how many."""
        actor.require("owner")
        now = dt.datetime.now(dt.UTC)
        t = redemption_codes.c
        async with self.engine.begin() as conn:
            done = await conn.execute(
                update(redemption_codes)
                .where(
                    t.batch_id == batch_id,
                    t.redeemed_by.is_(None),
                    t.expires_at.is_(None) | (t.expires_at > now),
                )
                .values(expires_at=now)
            )
        await self.audit(actor, "code_batch_revoked", None, None, f"{batch_id}: {done.rowcount}")
        return int(done.rowcount)

    # ------------------------------------------------------------------ keys and accounts

    async def create_key(self, actor: Actor, **fields: Any) -> tuple[ApiKeyInfo, str]:
        """KeyStore.create's fields; NotFound for an unknown account_id."""
        actor.require("owner")
        try:
            info, plaintext = await self.keys.create(**fields)
        except KeyError:
            raise NotFound(str(fields.get("account_id"))) from None
        await self.audit(actor, "key_created", info.account_id, None, f"{info.id} {info.name}")
        return info, plaintext

    async def revoke_key(self, actor: Actor, key_id: str) -> ApiKeyInfo:
        actor.require("owner")
        info = await self.keys.revoke(key_id)
        if info is None:
            raise NotFound(key_id)
        await self.audit(actor, "key_revoked", info.account_id, None, info.id)
        return info

    async def set_account_disabled(
        self, actor: Actor, account_id: str, disabled: bool, reason: str
    ) -> None:
        """Disable (every key refused, sign-in refused, sessions ended) or enable again."""
        actor.require("owner")
        reason = _reason(reason)
        async with self.engine.begin() as conn:
            found = await conn.execute(
                update(accounts)
                .where(accounts.c.id == account_id)
                .values(disabled_at=dt.datetime.now(dt.UTC) if disabled else None)
            )
        if not found.rowcount:
            raise NotFound(account_id)
        # This process at once; the others through the key store's revocation watch.
        await self._forget_keys(account_id)
        action = "account_disabled" if disabled else "account_enabled"
        await self.audit(actor, action, account_id, None, reason)

    async def _forget_keys(self, account_id: str) -> None:
        for key in await self.keys.list_for_account(account_id):
            self.keys.invalidate(key.key_hash)

    # ------------------------------------------------------------------ upstream deployments

    def _upstream(self) -> tuple[Upstreams, DeploymentStates]:
        if self.upstreams is None or self.states is None:  # a wiring mistake
            raise RuntimeError("this action needs the upstreams and their shared state")
        return self.upstreams, self.states

    def _deployment(self, deployment_id: str) -> Any:
        found = self._upstream()[0].deployment(deployment_id)
        if found is None:
            raise NotFound(deployment_id)
        return found

    async def add_deployment(
        self,
        actor: Actor,
        vendor: str,
        name: str,
        base_url: str,
        key: str,
        weight: str | int = 1,
        region: str = "",
        models: str = "",
    ) -> str:
        """A new deployment of `vendor`, in service on every replica within a second; returns
        its id. `key`: the vendor key (stored encrypted) or `env:NAME`."""
        actor.require("owner")
        upstreams, states = self._upstream()
        if vendor not in upstreams.vendors:
            raise ActionError("vendor: not a vendor of this gateway", "vendor")
        name = name.strip().lower()
        if not DEPLOYMENT_NAME.fullmatch(name):
            raise ActionError("name: letters, digits, - and _ (at most 63)", "name")
        dep_id = f"{vendor}/{name}"
        if upstreams.deployment(dep_id) is not None:
            raise ActionError("name: this vendor already has a deployment of that name", "name")
        values = {
            "base_url": _base_url(base_url),
            **self._key_columns(key),
            "weight": _weight(weight),
            "region": region.strip()[:64] or None,
            "models": self._models(vendor, models) or None,
        }
        await states.save_account(dep_id, actor.name, **values)
        await self.audit(actor, "deployment_added", None, None, f"{dep_id} {values['base_url']}")
        return dep_id

    async def change_deployment(
        self, actor: Actor, deployment_id: str, weight: str | int, region: str, models: str
    ) -> None:
        """Weight, region and models of any deployment (configured or added)."""
        actor.require("owner")
        _pool, d = self._deployment(deployment_id)
        values = {
            "weight": _weight(weight),
            "region": region.strip()[:64],
            "models": self._models(d.vendor, models),
        }
        await self._upstream()[1].save_account(deployment_id, actor.name, **values)
        what = f"{deployment_id} weight {values['weight']} region {values['region'] or '-'}"
        await self.audit(actor, "deployment_changed", None, None, what)

    async def rotate_deployment_key(self, actor: Actor, deployment_id: str, key: str) -> None:
        """A new key for a deployment: every process uses it within a second, no restart."""
        actor.require("owner")
        self._deployment(deployment_id)
        columns = self._key_columns(key)
        await self._upstream()[1].save_account(deployment_id, actor.name, **columns)
        shown = columns["key_env"] or f"...{columns['key_last4']}"
        await self.audit(actor, "deployment_key_rotated", None, None, f"{deployment_id} {shown}")

    async def set_deployment_drained(self, actor: Actor, deployment_id: str, drained: bool) -> None:
        """Drain (no new requests) or restore (also after the vendor refused its key)."""
        actor.require("owner")
        pool, d = self._deployment(deployment_id)
        states = self._upstream()[1]
        await (states.drain if drained else states.restore)(pool, d)
        action = "deployment_drained" if drained else "deployment_restored"
        await self.audit(actor, action, None, None, deployment_id)

    async def test_deployment(self, actor: Actor, deployment_id: str) -> Probe:
        """One live call through the deployment (a few tokens of its first model)."""
        from tokenrelay.upstreams.deployment_state import probe

        actor.require("owner")
        _pool, d = self._deployment(deployment_id)
        entry = next(
            (
                e
                for e in self._billing().prices.catalog.entries()
                if e.vendor == d.vendor and e.kind == "chat" and not e.retired and d.serves(e.id)
            ),
            None,
        )
        if entry is None:
            raise ActionError("models: this deployment serves no chat model to test", "models")
        result = await probe(self._upstream()[0], d, entry.id, entry.upstream)
        what = f"{deployment_id} {entry.id}: {result.status or 'no answer'} {result.detail}"
        await self.audit(actor, "deployment_tested", None, None, what)
        return result

    def _key_columns(self, key: str) -> dict[str, Any]:
        key = key.strip()
        if key.startswith("env:"):
            env = key[4:]
            if not ENV_NAME.fullmatch(env):
                raise ActionError("key: env:NAME with a variable name", "key")
            return {"key_env": env, "key_ciphertext": None, "key_last4": None}
        if not 8 <= len(key) <= 1000 or not key.isprintable() or " " in key:
            raise ActionError(
                "key: the vendor's API key (8 to 1000 characters), or env:NAME", "key"
            )
        box = self._upstream()[1].keys
        if not box.configured:
            raise ActionError(
                "key: set TOKENRELAY_SECRET_KEY to store keys encrypted, or give env:NAME", "key"
            )
        return {"key_ciphertext": box.seal(key), "key_env": None, "key_last4": key[-4:]}

    def _models(self, vendor: str, models: str) -> list[str]:
        ids = [m for m in re.split(r"[\s,]+", models.strip()) if m]
        catalog = self._billing().prices.catalog
        for m in ids:
            entry = catalog.get(m)
            if entry is None or entry.vendor != vendor:
                raise ActionError(f"models: {m[:80]} is not a model of {vendor}", "models")
        return ids

    # ------------------------------------------------------------------ sign-ups

    async def block_signups(self, actor: Actor, ip: str, reason: str) -> None:
        """No new account from this address (accounts already made from it stay)."""
        actor.require("owner")
        ip = _address(ip)
        reason = _reason(reason)
        async with self.engine.begin() as conn:
            stmt = dialect_insert(conn, signup_blocks).values(
                ip=ip, reason=reason, actor=actor.name[:320], created_at=dt.datetime.now(dt.UTC)
            )
            await conn.execute(stmt.on_conflict_do_nothing(index_elements=["ip"]))
        await self.audit(actor, "signups_blocked", None, None, f"{ip}: {reason}")

    async def unblock_signups(self, actor: Actor, ip: str) -> None:
        actor.require("owner")
        ip = _address(ip)
        async with self.engine.begin() as conn:
            done = await conn.execute(delete(signup_blocks).where(signup_blocks.c.ip == ip))
        if not done.rowcount:
            raise NotFound(ip)
        await self.audit(actor, "signups_unblocked", None, None, ip)

    # ------------------------------------------------------------------ audit

    async def audit(
        self,
        actor: Actor,
        action: str,
        account_id: str | None,
        amount_nano: int | None,
        reason: str,
    ) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(audit_log).values(
                    actor=actor.name[:320],
                    action=action,
                    account_id=account_id,
                    amount_nano=amount_nano,
                    reason=reason[:MAX_REASON],
                    created_at=dt.datetime.now(dt.UTC),
                )
            )


async def _version(
    conn: AsyncConnection,
    actor: Actor,
    group: str,
    model_id: str | None,
    old: int | None,
    new: int | None,
) -> None:
    """A price multiplier changed (model_id None: the group's own): who, when, old, new."""
    await conn.execute(
        insert(price_multiplier_versions).values(
            group_name=group,
            model_id=model_id,
            old_ppm=old,
            new_ppm=new,
            actor=actor.name[:320],
            created_at=dt.datetime.now(dt.UTC),
        )
    )


def multiplier_ppm(value: str | Decimal) -> int:
    """A price multiplier such as "1.25" as parts per million (at least 1 ppm)."""
    try:
        ppm = Decimal(value) * 1_000_000
    except (InvalidOperation, ValueError, TypeError):
        ppm = Decimal(-1)
    if not ppm.is_finite() or ppm != int(ppm) or not 1 <= ppm <= 1_000_000_000:
        raise ActionError("multiplier: a number such as 1.25 (at most 6 decimals)", "multiplier")
    return int(ppm)


def _base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url) or len(url) > 500:
        raise ActionError("base_url: an http(s) URL such as https://api.openai.com", "base_url")
    return url


def _address(ip: str) -> str:
    """An IP address as the portal records it (v4 or v6)."""
    try:
        return str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        raise ActionError("ip: an IPv4 or IPv6 address", "ip") from None


def _weight(weight: str | int) -> int:
    raw = str(weight).strip()
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw[:6]) <= MAX_WEIGHT:
        raise ActionError(f"weight: a whole number from 1 to {MAX_WEIGHT}", "weight")
    return int(raw)


def _reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise ActionError("reason: a reason is required", "reason")
    if len(reason) > MAX_REASON:
        raise ActionError(f"reason: at most {MAX_REASON} characters", "reason")
    return reason
