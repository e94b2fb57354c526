"""Stripe Checkout top-ups and the webhook that credits them.

The webhook is verified with the `stripe` library (the Stripe-Signature header, a 5-minute
tolerance). Money moves once per Stripe object, whatever the delivery order or count: a paid
checkout session credits under the idempotency key `stripe:checkout:<session id>`, each refund
debits under `stripe:refund:<refund id>`, each dispute under `stripe:dispute:<dispute id>`. A
refund or dispute for a payment not credited yet is answered 409, and Stripe delivers it again
later (its retries are the ordering mechanism).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import stripe
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tokenrelay.billing.engine import BillingEngine
from tokenrelay.settings import Settings
from tokenrelay.store.tables import stripe_payments

log = logging.getLogger("tokenrelay.portal")
NANO_PER_CENT = 10_000_000
MAX_BODY = 256 * 1024


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
        payload = await request.body()
        if len(payload) > MAX_BODY:
            return _answer(413, "payload too large")
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

    async def _handle(self, kind: str, obj: Any) -> Response:
        if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
            if obj["payment_status"] != "paid":
                return _answer(200, "not paid yet")
            account_id = obj["metadata"]["account_id"]
            amount = int(obj["amount_total"]) * NANO_PER_CENT
            if amount <= 0:
                return _answer(400, "no amount")
            await self.billing.credit_account(
                account_id, amount, f"stripe checkout {obj['id']}", f"stripe:checkout:{obj['id']}"
            )
            if obj.get("payment_intent"):
                await self._remember(str(obj["payment_intent"]), account_id, amount)
            return _answer(200, "credited")
        if kind == "charge.refunded":
            account_id = await self._account(obj["payment_intent"])
            if account_id is None:
                return _answer(409, "payment not credited yet; deliver again later")
            for refund in obj["refunds"]["data"]:
                await self._debit(account_id, int(refund["amount"]), f"refund:{refund['id']}")
            return _answer(200, "debited")
        if kind == "charge.dispute.created":
            account_id = await self._account(obj["payment_intent"])
            if account_id is None:
                return _answer(409, "payment not credited yet; deliver again later")
            await self._debit(account_id, int(obj["amount"]), f"dispute:{obj['id']}")
            return _answer(200, "debited")
        return _answer(200, "ignored")

    async def _debit(self, account_id: str, cents: int, what: str) -> None:
        if cents > 0:
            await self.billing.credit_account(
                account_id, -cents * NANO_PER_CENT, f"stripe {what}", f"stripe:{what}"
            )

    async def _remember(self, payment_intent: str, account_id: str, amount: int) -> None:
        async with self.billing.engine.begin() as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            await conn.execute(
                dialect.insert(stripe_payments)
                .values(
                    payment_intent=payment_intent,
                    account_id=account_id,
                    amount_nano=amount,
                    created_at=dt.datetime.now(dt.UTC),
                )
                .on_conflict_do_nothing(index_elements=["payment_intent"])
            )

    async def _account(self, payment_intent: Any) -> str | None:
        async with self.billing.engine.connect() as conn:
            return await conn.scalar(
                select(stripe_payments.c.account_id).where(
                    stripe_payments.c.payment_intent == str(payment_intent)
                )
            )


def _answer(status: int, message: str) -> Response:
    return JSONResponse({"status": message}, status_code=status)
