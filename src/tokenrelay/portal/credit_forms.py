"""Credit forms: redeem a code, pay by card through Stripe Checkout."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tokenrelay.portal.dashboard import DashboardPages
from tokenrelay.portal.security import Session
from tokenrelay.portal.throttle import client_ip
from tokenrelay.portal.topups import RedeemError, redeem
from tokenrelay.portal.web import dollars, plain

log = logging.getLogger("tokenrelay.portal")


class CreditForms(DashboardPages):
    async def redeem_code(
        self, request: Request, session: Session, account: Any, form: dict[str, str]
    ) -> Response:
        names = (f"account:{account.id}", f"ip:{client_ip(request)}")
        wait = await self.code_throttle.wait(*names)
        if wait is not None:
            error = f"Too many wrong codes: try again in {int(wait) + 1} seconds."
            return await self.dashboard(request, session, account, error=error, status=429)
        try:
            amount = await redeem(self.billing, account.id, form.get("code", ""))
        except RedeemError as exc:
            await self.code_throttle.failed(*names)
            return await self.dashboard(request, session, account, error=str(exc), status=400)
        response = RedirectResponse("/dashboard", status_code=303)
        self.sessions.flash(response, session, message=f"{dollars(amount)} added to your balance.")
        return response

    async def stripe_checkout(
        self, request: Request, session: Session, account: Any, form: dict[str, str]
    ) -> Response:
        if self.stripe is None:
            return plain(404, "card payments are not configured")
        raw = form.get("usd", "")
        amount = int(raw) if raw.isdigit() else -1
        if amount not in self.stripe.amounts:
            error = f"choose one of {', '.join(map(str, self.stripe.amounts))} USD"
            return await self.dashboard(request, session, account, error=error, status=400)
        if not await self.once(account.id, form):
            return RedirectResponse("/dashboard?notice=again", status_code=303)
        try:
            url = await self.stripe.checkout_url(account.id, amount, self.settings.public_base())
        except ValueError as exc:
            return await self.dashboard(request, session, account, error=str(exc), status=400)
        except Exception as exc:  # Stripe unreachable or refusing: nothing was charged
            log.warning("stripe checkout failed: %s", type(exc).__name__)
            return await self.dashboard(
                request, session, account, error="Card payments are unavailable.", status=502
            )
        return RedirectResponse(url, status_code=303)
