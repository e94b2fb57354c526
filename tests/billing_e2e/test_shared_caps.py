"""Spend caps hold across workers and replicas (issue 20, hole 11): two gateways on one
PostgreSQL + Redis, 50 concurrent requests on one capped key spread over both. Before caps were
shared through Redis each process counted only its own settlements ($0.0027 spent on a $0.002
cap with two workers)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from backends import Backend, backend
from gateway_support import ADMIN_TOKEN, RunningGateway, start_gateway

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
CAP = Decimal("0.002")
BODY = {
    "model": "claude-haiku-4-5",
    "max_tokens": 40,
    "messages": [{"role": "user", "content": "[[words:30]] [[delay:20]] count"}],
}


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[list[RunningGateway]]:
    with backend("postgres+redis", tmp_path) as store:
        started = [_start(store, tmp_path / f"gw{i}") for i in range(2)]
        yield [gw for gw, _ in started]
        for gw, thread in started:
            gw.server.should_exit = True
            thread.join(timeout=10)


def _start(store: Backend, tmp: Path) -> tuple[RunningGateway, object]:
    tmp.mkdir()
    return start_gateway(tmp, database_url=store.database_url, redis_url=store.redis_url)


async def _burst(gateways: list[RunningGateway], key: str, n: int) -> list[int]:
    """`n` requests, 6 at a time, alternating between the gateways: each one's settlements
    land while the others are still being admitted."""
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    gate = asyncio.Semaphore(6)
    async with httpx.AsyncClient(timeout=30) as client:

        async def one(i: int) -> int:
            url = gateways[i % len(gateways)].proxy + "/v1/messages"
            async with gate:
                return (await client.post(url, json=BODY, headers=headers)).status_code

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def test_a_daily_cap_holds_across_two_gateways(pair: list[RunningGateway]) -> None:
    r = httpx.post(
        pair[0].url + "/admin/v1/keys",
        headers=ADMIN,
        json={"name": "capped", "credits_usd": "5.00", "daily_cap_usd": str(CAP)},
    )
    assert r.status_code == 201, r.text
    key, key_id = r.json()["key"], r.json()["id"]
    statuses = asyncio.run(_burst(pair, key, 50))
    assert statuses.count(200) > 0 and statuses.count(402) > 0, statuses
    assert set(statuses) <= {200, 402}
    rows = httpx.get(
        pair[1].url + "/admin/v1/usage",
        headers=ADMIN,
        params={"key_id": key_id, "limit": 1000},
    ).json()["data"]
    spent = sum(Decimal(u["cost_usd"]) for u in rows)
    assert len(rows) == statuses.count(200)
    assert 0 < spent <= CAP, f"{spent} spent on a {CAP} cap"
