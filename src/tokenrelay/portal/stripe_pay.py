"""Stripe Checkout top-ups and the webhook that moves money for payment events.

The webhook is verified with the `stripe` library (the Stripe-Signature header, a 5-minute
tolerance) after its body is read within MAX_BODY (a larger one gets 413 unread). Money moves
once per Stripe object, whatever the delivery order or count, each under its own idempotency
key:

- a paid checkout session credits `stripe:checkout:<session id>`;
- each refund debits `stripe:refund:<refund id>` as soon as Stripe reports it (`refund.created`,
  `refund.updated`, `refund.failed`, `charge.refund.updated` carry the refund itself;
  `charge.refunded` carries a charge whose `refunds` list the API left out since 2022-11-15, so
  its refunds are listed through the API, every page); a refund that failed or was canceled
  credits back `stripe:refund-reversed:<refund id>`;
- each dispute debits `stripe:dispute:<dispute id>` (`charge.dispute.created`,
  `funds_withdrawn`, a lost `closed`) and one won or withdrawn as an inquiry
  (`charge.dispute.closed` won or warning_closed, `charge.dispute.funds_reinstated`) credits
  back `stripe:dispute-reinstated:<dispute id>`.

A reversal also writes its debit (a no-op when done), so events in any order end at the same
balance. A refund or dispute for a payment not credited yet is answered 409, and Stripe
delivers it again later (its retries are the ordering mechanism). Amounts are bounded by
Stripe's own ceiling per charge, refunds and disputes by their payment: anything else is a 400
that moves nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, NamedTuple

import stripe
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tokenrelay.asgi import BodyTooLarge, ClientDisconnected, read_body
from tokenrelay.billing.engine import BillingEngine
from tokenrelay.settings import Settings
from tokenrelay.store.db import dialect_insert
from tokenrelay.store.tables import stripe_payments

log = logging.getLogger("tokenrelay.portal")
NANO_PER_CENT = 10_000_000
MAX_BODY = 256 * 1024
# Stripe's ceiling for one USD charge ($999,999.99): a signed amount above it is no payment.
MAX_CENTS = 99_999_999

CHECKOUT_PAID = frozenset(
    {"checkout.session.completed", "checkout.session.async_payment_succeeded"}
)
REFUND_EVENTS = frozenset(
    {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}
)
REFUND_UNDONE = frozenset({"failed", "canceled"})
DISPUTE_DEBITS = frozenset({"charge.dispute.created", "charge.dispute.funds_withdrawn"})
# An inquiry (`warning_*`) that closes never took the funds; a won dispute gave them back.
DISPUTE_UNDONE = frozenset({"won", "warning_closed"})


class Payment(NamedTuple):
    account_id: str
    cents: int


class StripeUnavailable(Exception):
    """Stripe's API did not answer a read the event needs; Stripe delivers the event again."""


class StripeTopUps:
    def __init__(self, settings: Settings, billing: BillingEngine) -> None:
        assert settings.stripe_secret_key is not None
        base = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
        self.client = stripe.StripeClient(
            settings.stripe_secret_key.get_secret_value(),
            base_addresses=base,  # type: ignore[arg-type]
            max_network_retries=1,
        )
        self.webhook_secret = (
            settings.stripe_webhook_secret.get_secret_value()
            if settings.stripe_webhook_secret
            else None
        )
        self.amounts = [int(a) for a in settings.stripe_amounts_usd.split(",") if a.strip()]
        self.billing = billing

    async def checkout_url(self, account_id: str, usd: int, base_url: str) -> str:
        if usd not in self.amounts:
            raise ValueError(f"choose one of {', '.join(map(str, self.amounts))} USD")
        session = await self.client.v1.checkout.sessions.create_async(
            params={
                "mode": "payment",
                "client_reference_id": account_id,
                "metadata": {"account_id": account_id},
                "payment_intent_data": {"metadata": {"account_id": account_id}},
                "line_items": [
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": "usd",
                            "unit_amount": usd * 100,
                            "product_data": {"name": "tokenrelay prepaid credit"},
                        },
                    }
                ],
                "success_url": f"{base_url}/dashboard?notice=paid",
                "cancel_url": f"{base_url}/dashboard",
            }
        )
        return str(session.url)

    async def webhook(self, request: Request) -> Response:
        if self.webhook_secret is None:
            return _answer(404, "webhook not configured")
        declared = request.headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > MAX_BODY:
            return _answer(413, "payload too large")  # before reading a byte of it
        try:
            payload = await read_body(request.receive, MAX_BODY)  # chunked bodies: counted
        except BodyTooLarge:
            return _answer(413, "payload too large")
        except ClientDisconnected:
            return _answer(400, "payload cut short")
        try:
            event = stripe.Webhook.construct_event(
                payload, request.headers.get("stripe-signature", ""), self.webhook_secret
            )
        except (ValueError, stripe.SignatureVerificationError):
            return _answer(400, "invalid payload or signature")
        try:
            return await self._handle(event.type, event.data.object.to_dict())
        except (KeyError, TypeError, AttributeError, ValueError):
            return _answer(400, "event without the expected fields")
        except StripeUnavailable:
            return _answer(503, "Stripe's API did not answer; deliver again later")

    async def _handle(self, kind: str, obj: Any) -> Response:
        if kind in CHECKOUT_PAID:
            return await self._checkout(obj)
        if kind in REFUND_EVENTS:
            return await self._refunds(obj["payment_intent"], [obj])
        if kind == "charge.refunded":
            return await self._refunds(obj["payment_intent"], None, charge=obj)
        if kind in DISPUTE_DEBITS or kind == "charge.dispute.closed":
            undone = kind == "charge.dispute.closed" and obj["status"] in DISPUTE_UNDONE
            return await self._dispute(obj, undone=undone)
        if kind == "charge.dispute.funds_reinstated":
            return await self._dispute(obj, undone=True)
        return _answer(200, "ignored")

    async def _checkout(self, session: Any) -> Response:
        if session["payment_status"] != "paid":
            return _answer(200, "not paid yet")
        account_id = session["metadata"]["account_id"]
        amount = _cents(session, MAX_CENTS, "amount_total") * NANO_PER_CENT
        await self.billing.credit_account(
            account_id,
            amount,
            f"stripe checkout {session['id']}",
            f"stripe:checkout:{session['id']}",
        )
        if session.get("payment_intent"):
            await self._remember(str(session["payment_intent"]), account_id, amount)
        return _answer(200, "credited")

    async def _refunds(
        self, payment_intent: Any, refunds: list[Any] | None, *, charge: Any = None
    ) -> Response:
        payment = await self._payment(payment_intent)
        if payment is None:
            return _answer(409, "payment not credited yet; deliver again later")
        for refund in refunds if refunds is not None else await self._charge_refunds(charge):
            cents = _cents(refund, payment.cents, "amount")
            what = f"refund:{refund['id']}"
            await self._move(payment.account_id, -cents, what)
            if refund.get("status") in REFUND_UNDONE:
                await self._move(payment.account_id, cents, f"refund-reversed:{refund['id']}")
        return _answer(200, "debited")

    async def _charge_refunds(self, charge: Any) -> list[Any]:
        inline = charge.get("refunds")
        if isinstance(inline, dict) and inline.get("has_more") is False:
            return list(inline["data"])  # expanded by the endpoint's settings, and complete
        try:
            page = await self.client.v1.refunds.list_async(
                params={"charge": str(charge["id"]), "limit": 100}
            )
            return [r.to_dict() async for r in page.auto_paging_iter()]
        except stripe.StripeError as exc:
            log.warning("stripe refunds of a charge not listed: %s", type(exc).__name__)
            raise StripeUnavailable from exc

    async def _dispute(self, dispute: Any, *, undone: bool) -> Response:
        payment = await self._payment(dispute["payment_intent"])
        if payment is None:
            return _answer(409, "payment not credited yet; deliver again later")
        cents = _cents(dispute, payment.cents, "amount")
        await self._move(payment.account_id, -cents, f"dispute:{dispute['id']}")
        if not undone:
            return _answer(200, "debited")
        await self._move(payment.account_id, cents, f"dispute-reinstated:{dispute['id']}")
        return _answer(200, "credited back")

    async def _move(self, account_id: str, cents: int, what: str) -> None:
        await self.billing.credit_account(
            account_id, cents * NANO_PER_CENT, f"stripe {what}", f"stripe:{what}"
        )

    async def _remember(self, payment_intent: str, account_id: str, amount: int) -> None:
        async with self.billing.engine.begin() as conn:
            await conn.execute(
                dialect_insert(conn, stripe_payments)
                .values(
                    payment_intent=payment_intent,
                    account_id=account_id,
                    amount_nano=amount,
                    created_at=dt.datetime.now(dt.UTC),
                )
                .on_conflict_do_nothing(index_elements=["payment_intent"])
            )

    async def _payment(self, payment_intent: Any) -> Payment | None:
        if not isinstance(payment_intent, str):
            raise ValueError("no payment_intent")
        async with self.billing.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(stripe_payments.c.account_id, stripe_payments.c.amount_nano).where(
                        stripe_payments.c.payment_intent == payment_intent
                    )
                )
            ).first()
        return (
            None if row is None else Payment(row.account_id, int(row.amount_nano) // NANO_PER_CENT)
        )


def _cents(obj: Any, most: int, field: str) -> int:
    """A USD amount in cents within 1..`most`; ValueError (a 400, nothing moved) otherwise."""
    cents = obj[field]
    if obj.get("currency", "usd") != "usd":
        raise ValueError("not a USD amount")
    if type(cents) is not int or not 0 < cents <= most:
        raise ValueError(f"{field} out of range")
    return cents


def _answer(status: int, message: str) -> Response:
    return JSONResponse({"status": message}, status_code=status)
