"""Alerts on a real gateway: the operator's webhook hears of a vendor with every deployment
out of service and of a model sold below upstream cost (once per condition, not once per
check); a customer whose balance falls below their own threshold gets one email."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from portal_support import Browser

from gateway_support import ADMIN_TOKEN, RunningGateway, free_port, served
from tokenrelay.admin.operators import OperatorStore
from tokenrelay.customers.accounts import AccountStore
from tokenrelay.store.db import create_engine

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
received: list[dict[str, Any]] = []


class Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    port = free_port()
    hook = ThreadingHTTPServer(("127.0.0.1", port), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    yield from served(
        tmp_path_factory.mktemp("alerts"),
        session_secret="alerts-test-secret-0123",
        signup_credit_usd=Decimal("1.00"),
        alert_webhook_url=f"http://127.0.0.1:{port}/hook",
        alert_interval_s=0.2,
    )
    hook.shutdown()


def wait_for(alert: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        hits = [r for r in received if r["alert"] == alert]
        if hits:
            return hits
        time.sleep(0.1)
    raise AssertionError(f"no {alert!r} alert; got {received}")


def db(gw: RunningGateway, op: Any) -> Any:
    async def run() -> Any:
        engine = create_engine(gw.settings.database_url)
        try:
            return await op(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_vendor_down_and_below_cost_page_the_operator_once(gw: RunningGateway) -> None:
    deployments = httpx.get(f"{gw.url}/admin/v1/deployments", headers=ADMIN).json()["data"]
    for d in deployments:
        if d["vendor"] == "xai":
            r = httpx.post(f"{gw.url}/admin/v1/deployments/{d['id']}/drain", headers=ADMIN)
            assert r.status_code == 200
    wait_for("down:xai")

    db(gw, lambda e: OperatorStore(e).create("alerts@example.com", "operator password 1"))
    ops = Browser(gw.url)
    ops.post("/admin/login", {"email": "alerts@example.com", "password": "operator password 1"})
    r = ops.post(
        "/admin/price-overrides",
        {"group": "default", "model": "gpt-4o", "multiplier": "0.5"},
        "/admin/models",
    )
    assert r.url.path == "/admin/models"
    wait_for("below:default:gpt-4o")
    assert "Sells below upstream cost" in ops.http.get("/admin").text
    time.sleep(1.0)  # several more checks: the condition still holds, nobody is paged again
    assert len([r for r in received if r["alert"] == "down:xai"]) == 1


def test_low_balance_email_once_per_fall(
    gw: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    customer = Browser(gw.url)
    customer.sign_up("low@example.com")  # $1.00 of starting credit
    caplog.set_level(logging.WARNING, logger="tokenrelay.portal")

    async def threshold(engine: Any) -> None:
        store = AccountStore(engine)
        account = await store.by_email("low@example.com")
        assert account is not None
        await store.set_low_balance(account.id, 5 * 10**9)

    db(gw, threshold)
    deadline = time.monotonic() + 30
    while "running low" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    mails = [r.getMessage() for r in caplog.records if "low@example.com" in r.getMessage()]
    assert len([m for m in mails if "running low" in m]) == 1, mails
