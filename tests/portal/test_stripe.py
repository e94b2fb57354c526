"""Stripe top-ups: the Checkout session is created through the `stripe` library against a
local stand-in for Stripe's API; the webhook gets payloads signed with Stripe's scheme (HMAC
SHA-256 of "<t>.<body>" under the endpoint secret). Credits once per payment however often or
in whatever order events arrive; refunds and disputes debit; bad bodies change nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from portal_support import Browser

from gateway_support import RunningGateway, start_gateway

SECRET = "whsec_test_0123456789"
SEEN: list[dict[str, list[str]]] = []


class StandIn(BaseHTTPRequestHandler):
    """POST /v1/checkout/sessions, as Stripe answers it (the fields the gateway reads)."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"])).decode()
        SEEN.append(parse_qs(body))
        answer = json.dumps(
            {"id": "cs_test_1", "object": "checkout.session", "url": "https://pay.example/cs_1"}
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    gateway, thread = start_gateway(
        tmp_path_factory.mktemp("stripe"),
        session_secret="test-secret-0123456789",
        stripe_secret_key="sk_test_standin",
        stripe_webhook_secret=SECRET,
        stripe_api_base=f"http://127.0.0.1:{server.server_address[1]}",
    )
    yield gateway
    gateway.server.should_exit = True
    thread.join(timeout=10)
    server.shutdown()


def deliver(gw: RunningGateway, event: dict[str, Any], secret: str = SECRET) -> httpx.Response:
    payload = json.dumps(event).encode()
    t = int(time.time())
    sig = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return httpx.post(
        f"{gw.url}/stripe/webhook",
        content=payload,
        headers={"stripe-signature": f"t={t},v1={sig}", "content-type": "application/json"},
    )


def event(event_id: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": kind, "data": {"object": obj}}


def paid(session_id: str, account_id: str, cents: int, intent: str) -> dict[str, Any]:
    return {
        "id": session_id,
        "object": "checkout.session",
        "payment_status": "paid",
        "amount_total": cents,
        "payment_intent": intent,
        "metadata": {"account_id": account_id},
    }


def test_checkout_webhook_credits_once_and_refunds_and_disputes_debit(gw: RunningGateway) -> None:
    b = Browser(gw.url)
    b.sign_up("payer@example.com")
    tokens = b.form_tokens("/dashboard")  # CSRF and the form's one-time token
    token = tokens["csrf"]
    assert "Pay with Stripe" in b.http.get("/dashboard").text
    r = b.http.post("/dashboard/stripe", data={"usd": "25", **tokens}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "https://pay.example/cs_1"
    sent = SEEN[-1]
    assert sent["line_items[0][price_data][unit_amount]"] == ["2500"]
    account_id = sent["metadata[account_id]"][0]
    assert sent["payment_intent_data[metadata][account_id]"] == [account_id]
    r = b.http.post("/dashboard/stripe", data={"usd": "7", "csrf": token})
    assert r.status_code == 400  # not an offered amount

    # A refund of a payment not credited yet: refused, so Stripe delivers it again later.
    refund = event(
        "evt_refund",
        "charge.refunded",
        {
            "id": "ch_1",
            "payment_intent": "pi_1",
            "refunds": {"data": [{"id": "re_1", "amount": 500}]},
        },
    )
    assert deliver(gw, refund).status_code == 409
    done = event("evt_paid", "checkout.session.completed", paid("cs_1", account_id, 2500, "pi_1"))
    for _ in range(2):  # delivered twice
        assert deliver(gw, done).status_code == 200
    # The same payment reported again by another event type credits nothing more.
    late = event(
        "evt_async",
        "checkout.session.async_payment_succeeded",
        paid("cs_1", account_id, 2500, "pi_1"),
    )
    assert deliver(gw, late).status_code == 200
    assert Decimal(b.balance()) == Decimal("25.00")

    for _ in range(2):
        assert deliver(gw, refund).status_code == 200
    assert Decimal(b.balance()) == Decimal("20.00")
    dispute = event(
        "evt_dispute",
        "charge.dispute.created",
        {"id": "dp_1", "payment_intent": "pi_1", "amount": 1000},
    )
    assert deliver(gw, dispute).status_code == 200
    assert deliver(gw, dispute).status_code == 200
    assert Decimal(b.balance()) == Decimal("10.00")


def test_bad_webhook_bodies_get_a_4xx_and_change_nothing(gw: RunningGateway) -> None:
    b = Browser(gw.url)
    b.sign_up("mallory@example.com")
    before = b.balance()
    forged = event("evt_x", "checkout.session.completed", paid("cs_x", "acct_x", 10**6, "pi_x"))
    assert deliver(gw, forged, secret="whsec_wrong").status_code == 400
    r = httpx.post(
        f"{gw.url}/stripe/webhook", content=b"{not json", headers={"stripe-signature": "t=1,v1=00"}
    )
    assert r.status_code == 400
    r = httpx.post(f"{gw.url}/stripe/webhook", content=json.dumps(forged).encode())
    assert r.status_code == 400  # unsigned
    missing = event("evt_y", "checkout.session.completed", {"id": "cs_y", "payment_status": "paid"})
    assert deliver(gw, missing).status_code == 400
    unknown = event("evt_z", "checkout.session.completed", paid("cs_z", "acct_nobody", 100, "pi_z"))
    assert deliver(gw, unknown).status_code == 400
    assert b.balance() == before
