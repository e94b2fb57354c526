"""How long a price change made through one replica takes to show on another's /v1/models.

    python -m bench.price_propagation [--db NAME] [--redis redis://127.0.0.1:6379/4] [--runs 5]

Two gateway apps (two replicas) on one PostgreSQL database and one Redis, in this process.
Each run sets a new list price for gpt-4o-mini through replica A's admin API and polls
replica B's GET /v1/models until it shows that price; prints each delay and the median.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg
import httpx

PG = "postgresql://postgres@127.0.0.1:5432"
TOKEN = "bench-admin-token-0123456789"


async def run(db: str, redis_url: str, runs: int) -> None:
    from tokenrelay.server.app import create_app
    from tokenrelay.settings import Settings

    admin = await asyncpg.connect(f"{PG}/postgres")
    await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{db}"')
    await admin.close()
    settings = {
        "database_url": f"{PG}/{db}",
        "redis_url": redis_url,
        "emulate": "all",
        "admin_token": TOKEN,
        "redis_prefix": "pricebench:",
    }
    a, b = create_app(Settings(**settings)), create_app(Settings(**settings))  # type: ignore[arg-type]
    await a.startup()
    await b.startup()
    headers = {"authorization": f"Bearer {TOKEN}"}
    delays = []
    try:
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://a") as ca,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=b), base_url="http://b") as cb,
        ):
            key = (await ca.post("/admin/v1/keys", headers=headers, json={"name": "p"})).json()
            auth = {"authorization": f"Bearer {key['key']}"}
            for i in range(runs):
                price = f"0.{i + 11}"
                started = time.perf_counter()
                r = await ca.post(
                    "/admin/v1/prices",
                    headers=headers,
                    json={"model": "gpt-4o-mini", "input": price, "output": "1.00"},
                )
                assert r.status_code == 201, r.text
                while True:
                    listed = (await cb.get("/api/proxy/v1/models", headers=auth)).json()
                    mini = next(m for m in listed["data"] if m["id"] == "gpt-4o-mini")
                    if mini["pricing"]["input_per_mtok"] == price:
                        break
                    await asyncio.sleep(0.005)
                delays.append((time.perf_counter() - started) * 1000)
                print(f"run {i + 1}: {delays[-1]:.0f} ms")
    finally:
        await a.shutdown()
        await b.shutdown()
    print(f"median {statistics.median(delays):.0f} ms from the change on A to /v1/models on B")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="tokenrelay_price_bench")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/4")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(run(args.db, args.redis, args.runs))


if __name__ == "__main__":
    main()
