"""The console's Batches page (issue 24, item 4): every customer's batches with the customer's
email, lines' counts, cost (to the nano) and hold, filtered by status; any operator role reads
it, and a signed-out visitor does not."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "portal"))
from portal_support import Browser, operator

from backends import BACKENDS
from batch_pages_support import (
    batch_row,
    billed_nano,
    cell,
    gateway,
    run_batch,
    slow_batch,
    wait_batch,
)
from gateway_support import RunningGateway
from tokenrelay.portal.web import dollars


@pytest.fixture(scope="module", params=BACKENDS)
def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    yield from gateway(request.param, tmp_path_factory.mktemp("console-batches"))


def test_console_batches_page_shows_every_customer_filtered_by_status(
    gw: RunningGateway,
) -> None:
    customer = Browser(gw.url)
    customer.sign_up("batch-customer@example.com")
    key = customer.create_key("batch")
    batch = run_batch(gw, key)
    cost = billed_nano(gw, batch.id)

    anonymous = Browser(gw.url).http.get("/admin/batches")
    assert batch.id not in anonymous.text and anonymous.url.path != "/admin/batches"

    for role in ("owner", "support", "viewer"):
        ops = operator(gw, f"batches-{role}@example.com", role)
        page = ops.http.get("/admin/batches")
        assert page.status_code == 200
        row = batch_row(page.text, batch.id)
        assert cell(row, "customer")[0] == "batch-customer@example.com"
        assert cell(row, "status")[0] == "ended"
        assert cell(row, "lines") == ("2 / 1 / 3", None)
        assert cell(row, "cost") == (dollars(cost), str(cost))
        assert cell(row, "held") == (dollars(0), "0")
        assert "<form method" not in page.text.split('data-testid="batches"')[1]  # read only

    ended = ops.http.get("/admin/batches", params={"status": "ended"}).text
    assert batch.id in ended
    # One customer's batches, reached from the customer's page.
    account = re.search(r'href="/admin/customers/([^"]+)"', batch_row(ended, batch.id))
    assert account
    detail = ops.http.get(f"/admin/customers/{account[1]}").text
    assert f'href="/admin/batches?account={account[1]}"' in detail
    theirs = ops.http.get("/admin/batches", params={"account": account[1]}).text
    assert batch.id in theirs
    other = ops.http.get("/admin/batches", params={"account": "acct_nobody"}).text
    assert batch.id not in other and "No batches" in other
    running = ops.http.get("/admin/batches", params={"status": "in_progress"}).text
    assert batch.id not in running and "No batches in progress." in running

    slow = slow_batch(gw, key)
    running = ops.http.get("/admin/batches", params={"status": "in_progress"}).text
    assert cell(batch_row(running, slow.id), "status")[0] == "in progress"
    assert batch.id not in running
    assert slow.id not in ops.http.get("/admin/batches", params={"status": "ended"}).text
    assert wait_batch(gw, key, slow.id).status == "completed"
