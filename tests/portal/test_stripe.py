"""Stripe top-ups, on SQLite and on PostgreSQL + Redis: the Checkout session is created
through the `stripe` library against a local stand-in for Stripe's API; the webhook gets
payloads of the pinned API version signed with Stripe's scheme (HMAC SHA-256 of "<t>.<body>"
under the endpoint secret). Credits once per payment however often or
in whatever order events arrive; refunds and disputes debit; bad bodies change nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import stripe
from portal_support import Browser

from backends import BACKENDS, backend
from gateway_support import RunningGateway, served

SECRET = "whsec_test_0123456789"
API_VERSION = stripe.api_version  # the version the pinned library speaks (uv.lock)
SEEN: list[dict[str, list[str]]] = []


REFUNDS: dict[str, list[dict[str, Any]]] = {}  # charge id -> its refunds, newest first
PAGE = 2  # smaller pages than the gateway asks for, so it must follow `has_more`


class StandIn(BaseHTTPRequestHandler):
    """POST /v1/checkout/sessions and GET /v1/refunds?charge=, as Stripe answers them."""

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path != "/v1/refunds" or query.get("charge") not in REFUNDS:
            self._send(500, {"error": {"type": "api_error", "message": "unavailable"}})
            return
        refunds = REFUNDS[query["charge"]]
        start = 0
        if "starting_after" in query:
            start = 1 + [r["id"] for r in refunds].index(query["starting_after"])
        page = refunds[start : start + PAGE]
        self._send(
            200,
            {
                "object": "list",
                "url": "/v1/refunds",
                "has_more": start + PAGE < len(refunds),
                "data": page,
            },
        )

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        answer = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

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


@pytest.fixture(scope="module", params=BACKENDS)
def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    """A gateway on each storage set-up, Stripe's API answered by the stand-in."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tmp = tmp_path_factory.mktemp("stripe")
    with backend(request.param, tmp) as store:
        yield from served(
            tmp,
            database_url=store.database_url,
            redis_url=store.redis_url,
            session_secret="test-secret-0123456789",
            stripe_secret_key="sk_test_standin",
            stripe_webhook_secret=SECRET,
            stripe_api_base=f"http://127.0.0.1:{server.server_address[1]}",
        )
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
    """An event envelope as the pinned API version sends it."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": API_VERSION,
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
        "data": {"object": obj},
    }


def paid(session_id: str, account_id: str, cents: int, intent: str) -> dict[str, Any]:
    return {
        "id": session_id,
        "object": "checkout.session",
        "payment_status": "paid",
        "amount_total": cents,
        "payment_intent": intent,
        "metadata": {"account_id": account_id},
    }


def payment_event_object(
    kind: str, object_id: str, charge: str, intent: str, cents: int, status: str
) -> dict[str, Any]:
    """A refund or dispute object of the pinned version (the fields it always has)."""
    extra = (
        {"reason": "requested_by_customer", "balance_transaction": "txn_" + object_id}
        if kind == "refund"
        else {"reason": "fraudulent", "is_charge_refundable": False, "livemode": False}
    )
    return {
        "id": object_id,
        "object": kind,
        "amount": cents,
        "charge": charge,
        "created": int(time.time()),
        "currency": "usd",
        "metadata": {},
        "payment_intent": intent,
        "status": status,
        **extra,
    }


def refund_object(
    refund_id: str, charge: str, intent: str, cents: int, status: str = "succeeded"
) -> dict[str, Any]:
    return payment_event_object("refund", refund_id, charge, intent, cents, status)


def dispute_object(
    dispute_id: str, charge: str, intent: str, cents: int, status: str = "needs_response"
) -> dict[str, Any]:
    return payment_event_object("dispute", dispute_id, charge, intent, cents, status)


def charge_refunded(charge: str, intent: str, paid: int, refunded: int) -> dict[str, Any]:
    """A charge as the pinned version puts it in `charge.refunded`: no `refunds` list."""
    return {
        "id": charge,
        "object": "charge",
        "amount": paid,
        "amount_captured": paid,
        "amount_refunded": refunded,
        "captured": True,
        "currency": "usd",
        "paid": True,
        "payment_intent": intent,
        "refunded": refunded == paid,
        "status": "succeeded",
    }


def paying_customer(gw: RunningGateway, email: str, cents: int, intent: str) -> Browser:
    """A signed-up customer whose Checkout payment of `cents` was credited."""
    b = Browser(gw.url)
    b.sign_up(email)
    form = {"usd": "25", **b.form_tokens("/dashboard")}
    r = b.http.post("/dashboard/stripe", data=form, follow_redirects=False)
    assert r.status_code == 303
    account_id = SEEN[-1]["metadata[account_id]"][0]
    session = paid("cs_" + intent, account_id, cents, intent)
    done = event("evt_" + intent, "checkout.session.completed", session)
    assert deliver(gw, done).status_code == 200
    return b


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
    refund = event("evt_refund", "refund.created", refund_object("re_1", "ch_1", "pi_1", 500))
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
        "evt_dispute", "charge.dispute.created", dispute_object("dp_1", "ch_1", "pi_1", 1000)
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


def test_refunds_debit_once_each_by_refund_id_from_every_event_that_carries_them(
    gw: RunningGateway,
) -> None:
    b = paying_customer(gw, "refunded@example.com", 5000, "pi_r")
    assert Decimal(b.balance()) == Decimal("50.00")
    # A partial refund: refund.created, then charge.refunded (its charge lists no refunds: the
    # gateway asks Stripe for them), then refund.updated; any of them twice.
    first = refund_object("re_r1", "ch_r", "pi_r", 500)
    REFUNDS["ch_r"] = [first]
    for kind in ("refund.created", "refund.created", "refund.updated"):
        assert deliver(gw, event("evt_" + kind, kind, first)).status_code == 200
    charge = event("evt_ch_r1", "charge.refunded", charge_refunded("ch_r", "pi_r", 5000, 500))
    assert deliver(gw, charge).status_code == 200
    assert Decimal(b.balance()) == Decimal("45.00")

    # Three more partial refunds reported first by charge.refunded: more than one page of them.
    more = [refund_object(f"re_r{i}", "ch_r", "pi_r", 100 * i) for i in (4, 3, 2)]
    REFUNDS["ch_r"] = [*more, first]
    charge = event("evt_ch_r2", "charge.refunded", charge_refunded("ch_r", "pi_r", 5000, 1400))
    for _ in range(2):
        assert deliver(gw, charge).status_code == 200
    for refund in more:
        created = event("evt_c" + refund["id"], "refund.created", refund)
        assert deliver(gw, created).status_code == 200
    assert Decimal(b.balance()) == Decimal("36.00")

    # A refund that fails after it was reported gives the money back, once.
    pending = refund_object("re_r5", "ch_r", "pi_r", 1000, status="pending")
    assert deliver(gw, event("evt_r5", "refund.created", pending)).status_code == 200
    assert Decimal(b.balance()) == Decimal("26.00")
    failed = {**pending, "status": "failed", "failure_reason": "expired_or_canceled_card"}
    for kind in ("refund.failed", "refund.updated"):
        assert deliver(gw, event("evt_f" + kind, kind, failed)).status_code == 200
    assert deliver(gw, event("evt_r5", "refund.created", pending)).status_code == 200
    assert Decimal(b.balance()) == Decimal("36.00")

    # Stripe's API down while a charge.refunded needs it: 503, Stripe delivers it again.
    lost = event("evt_ch_x", "charge.refunded", {**charge_refunded("ch_x", "pi_r", 5000, 100)})
    assert deliver(gw, lost).status_code == 503
    assert Decimal(b.balance()) == Decimal("36.00")


def test_disputes_debit_once_and_a_won_dispute_credits_back_once(gw: RunningGateway) -> None:
    b = paying_customer(gw, "disputed@example.com", 4000, "pi_d")
    opened = dispute_object("dp_d1", "ch_d", "pi_d", 1500)
    for kind in ("charge.dispute.created", "charge.dispute.created", "charge.dispute.updated"):
        assert deliver(gw, event("evt_" + kind, kind, opened)).status_code == 200
    withdrawn = event("evt_w", "charge.dispute.funds_withdrawn", opened)
    assert deliver(gw, withdrawn).status_code == 200
    assert Decimal(b.balance()) == Decimal("25.00")
    won = {**opened, "status": "won"}
    reinstated = event("evt_ri", "charge.dispute.funds_reinstated", won)
    closed = event("evt_cl", "charge.dispute.closed", won)
    for e in (reinstated, closed, reinstated, closed):
        assert deliver(gw, e).status_code == 200
    assert Decimal(b.balance()) == Decimal("40.00")
    assert deliver(gw, event("evt_again", "charge.dispute.created", opened)).status_code == 200
    assert Decimal(b.balance()) == Decimal("40.00")

    # Won, delivered before its creation: the same end balance.
    early = dispute_object("dp_d2", "ch_d", "pi_d", 700, status="won")
    assert deliver(gw, event("evt_e1", "charge.dispute.closed", early)).status_code == 200
    late = event("evt_e2", "charge.dispute.created", {**early, "status": "needs_response"})
    assert deliver(gw, late).status_code == 200
    assert Decimal(b.balance()) == Decimal("40.00")

    # Lost: debited once, whichever events arrive.
    lost = dispute_object("dp_d3", "ch_d", "pi_d", 1000, status="lost")
    assert deliver(gw, event("evt_l1", "charge.dispute.closed", lost)).status_code == 200
    assert deliver(gw, event("evt_l2", "charge.dispute.created", lost)).status_code == 200
    assert Decimal(b.balance()) == Decimal("30.00")
    # An inquiry that closes without becoming a dispute never took the funds.
    inquiry = dispute_object("dp_d4", "ch_d", "pi_d", 500, status="warning_needs_response")
    assert deliver(gw, event("evt_i1", "charge.dispute.created", inquiry)).status_code == 200
    assert Decimal(b.balance()) == Decimal("25.00")
    closed_inquiry = {**inquiry, "status": "warning_closed"}
    assert deliver(gw, event("evt_i2", "charge.dispute.closed", closed_inquiry)).status_code == 200
    assert Decimal(b.balance()) == Decimal("30.00")


def raw_post(gw: RunningGateway, head: bytes, body: bytes) -> bytes:
    """Send a request's head and the first bytes of its body, never the rest; the answer."""
    host, port = gw.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_an_oversized_webhook_body_gets_413_before_it_is_read(gw: RunningGateway) -> None:
    # 300 MB announced, 64 KB sent: the answer comes without waiting for the rest.
    head = (
        b"POST /stripe/webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"stripe-signature: t=1,v1=00\r\ncontent-length: %d\r\n\r\n" % (300 * 2**20)
    )
    assert raw_post(gw, head, b" " * 65536).startswith(b"HTTP/1.1 413")
    # Chunked, no length: counted as it arrives; 1 MB of a body that never ends gets a 413.
    head = (
        b"POST /stripe/webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"stripe-signature: t=1,v1=00\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    assert raw_post(gw, head, chunk * 16).startswith(b"HTTP/1.1 413")


def test_signed_amounts_out_of_range_get_400_and_move_nothing(gw: RunningGateway) -> None:
    b = paying_customer(gw, "bounds@example.com", 1000, "pi_b")
    account_id = SEEN[-1]["metadata[account_id]"][0]
    huge = [10**30, 10**8, 0, -500, 12.5, "1000", True]
    for i, cents in enumerate(huge):
        session = paid(f"cs_b{i}", account_id, cents, f"pi_b{i}")  # type: ignore[arg-type]
        r = deliver(gw, event(f"evt_b{i}", "checkout.session.completed", session))
        assert r.status_code == 400, (cents, r.text)
    euros = {**paid("cs_eur", account_id, 1000, "pi_eur"), "currency": "eur"}
    assert deliver(gw, event("evt_eur", "checkout.session.completed", euros)).status_code == 400
    # A refund or dispute larger than its payment, or of no sensible amount.
    for i, cents in enumerate([1001, 10**30, 0]):
        refund = refund_object(f"re_b{i}", "ch_b", "pi_b", cents)
        assert deliver(gw, event(f"evt_rb{i}", "refund.created", refund)).status_code == 400
        dispute = dispute_object(f"dp_b{i}", "ch_b", "pi_b", cents)
        r = deliver(gw, event(f"evt_db{i}", "charge.dispute.created", dispute))
        assert r.status_code == 400
    assert Decimal(b.balance()) == Decimal("10.00")
