"""Fixtures for the fuzz suite: the probe on the session's gateway, and the run's totals."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fuzz_support import TALLY, Probe


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TALLY.bodies:
        statuses = dict(sorted(TALLY.statuses.items()))
        terminalreporter.write_line(
            f"fuzz: {TALLY.bodies} bodies, {len(TALLY.server_errors)} 5xx (statuses {statuses})"
        )
        for line in TALLY.server_errors[:10]:
            terminalreporter.write_line("  5xx: " + line)


@pytest.fixture(scope="session")
def probe(gateway) -> Iterator[Probe]:
    # Plenty of credit: thousands of bodies, some with large max_tokens reservations.
    key = gateway.create_key("fuzz", credits_usd="1000000.00")
    headers = {
        "x-api-key": key,
        "authorization": f"Bearer {key}",
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as client:
        listing = client.get("/api/proxy/v1/models").json()["data"]
        by_vendor: dict[str, list[str]] = {}
        for model in listing:
            by_vendor.setdefault(model.get("vendor", "?"), []).append(model["id"])
        # A few models of every vendor: enough for each adapter and emulator dialect.
        models = sorted(m for ids in by_vendor.values() for m in sorted(ids)[:3])
        yield Probe(client, models)
