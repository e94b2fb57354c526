"""The dashboard's Batches section in a real browser at 390 px (a phone): the empty state links
to the docs, and a finished batch's row shows its counts, cost and hold without the page
scrolling sideways."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batch_pages_support import billed_nano, gateway, run_batch
from gateway_support import RunningGateway
from mail_outbox import last_link
from tokenrelay.portal.web import dollars

pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    yield from gateway("sqlite", Path(tmp_path_factory.mktemp("batches-browser")))


def test_batches_section_on_a_phone(gw: RunningGateway, browser: Any) -> None:
    ctx = browser.new_context(viewport={"width": 390, "height": 800})
    page = ctx.new_page()
    email = "phone-batcher@example.com"
    page.goto(gw.url + "/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password (at least 10 characters)").fill("correct horse battery")
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url("**/dashboard")
    page.goto(last_link("email verification", email))
    page.wait_for_url("**/dashboard?notice=verified")
    empty = page.get_by_test_id("no-batches")
    assert empty.get_by_role("link").get_attribute("href") == "/docs"

    page.get_by_text("Create a key").click()
    page.get_by_label("Name").fill("phone")
    page.get_by_role("button", name="Create key").click()
    batch = run_batch(gw, page.get_by_test_id("new-key").inner_text().strip())
    cost = billed_nano(gw, batch.id)
    page.goto(gw.url + "/dashboard")
    row = page.locator(f'tr[data-batch-id="{batch.id}"]')
    assert row.get_by_test_id("lines").inner_text().endswith("2 / 1 / 3")
    assert row.get_by_test_id("cost").inner_text().endswith(dollars(cost))
    assert row.get_by_test_id("held").inner_text().endswith(dollars(0))
    # Stacked as label: value on a narrow screen, the page no wider than the phone.
    assert not page.locator('[data-testid="batches"] thead').is_visible()
    box = row.get_by_test_id("cost").bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    ctx.close()
