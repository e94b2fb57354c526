"""The dashboard's Batches section (issue 24, item 4): a batch created through the official
openai SDK shows with its lines' counts, the cost its lines' usage records add up to (to the
nano) and no hold left once it ended; another account sees none of it, only how to make one."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from portal_support import Browser

from backends import BACKENDS
from batch_pages_support import (
    batch_row,
    billed_nano,
    cell,
    gateway,
    lines_hold_nano,
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
    yield from gateway(request.param, tmp_path_factory.mktemp("dash-batches"))


def test_dashboard_lists_the_accounts_batches_with_counts_and_cost(gw: RunningGateway) -> None:
    owner = Browser(gw.url)
    owner.sign_up("batcher@example.com")
    empty = owner.http.get("/dashboard").text
    assert 'data-testid="no-batches"' in empty and 'href="/docs"' in empty

    batch = run_batch(gw, owner.create_key("batch"))
    cost = billed_nano(gw, batch.id)
    assert cost > 0
    row = batch_row(owner.http.get("/dashboard").text, batch.id)
    assert "/v1/chat/completions" in row and "openai" in row and "ended" in row
    assert cell(row, "lines") == ("2 / 1 / 3", None)
    assert cell(row, "cost") == (dollars(cost), str(cost))
    assert cell(row, "held") == (dollars(0), "0")

    # Another customer sees the empty state, never this batch.
    other = Browser(gw.url)
    other.sign_up("neighbour@example.com")
    page = other.http.get("/dashboard").text
    assert batch.id not in page and 'data-testid="no-batches"' in page


def test_a_running_batch_shows_the_hold_its_lines_keep(gw: RunningGateway) -> None:
    b = Browser(gw.url)
    b.sign_up("slow-batcher@example.com")
    key = b.create_key("batch")
    batch = slow_batch(gw, key)
    held = lines_hold_nano(gw, batch.id)
    assert held > 0
    # Both lines run at once for 8 s; held from the moment each is claimed (on Redis a line
    # waiting to run holds nothing yet: the batch's admission check held the sum).
    for _ in range(50):
        row = batch_row(b.http.get("/dashboard").text, batch.id)
        if cell(row, "held")[1] == str(held):
            break
        time.sleep(0.1)
    assert "in progress" in row
    assert cell(row, "lines") == ("0 / 0 / 2", None)
    assert cell(row, "held") == (dollars(held), str(held))
    assert wait_batch(gw, key, batch.id).status == "completed"
    row = batch_row(b.http.get("/dashboard").text, batch.id)
    assert cell(row, "lines") == ("2 / 0 / 2", None)
    assert cell(row, "held") == (dollars(0), "0")
    assert cell(row, "cost")[1] == str(billed_nano(gw, batch.id, lines=2))
