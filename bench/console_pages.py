"""Server time of the operator console's heaviest pages at scale, on PostgreSQL.

    python -m bench.console_pages seed    [--db NAME] [--customers 10000] [--records 1000000]
    python -m bench.console_pages measure [--db NAME] [--runs 15]

`seed` creates the database (dropped first) with 10,000 customers (a key each) and 1,000,000
usage records spread over the last 30 days, and fills the daily roll-up from them, in a few
SQL statements (generate_series; a minute or so). `measure` starts the gateway app in this
process (no network between) and prints the median and p95 server time of the overview (7 d
and 24 h), the customer list (page one and a search), a customer's page and the request log
(page one and a filtered page) as an operator sees them.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time

import asyncpg
import httpx

PG = "postgresql://postgres@127.0.0.1:5432"

SEED = """
INSERT INTO price_groups (name, multiplier_ppm) VALUES ('default', 1000000)
  ON CONFLICT DO NOTHING;
INSERT INTO accounts (id, name, email, balance_nano, price_group, created_at)
SELECT 'acct_' || lpad(to_hex(i), 12, '0'), 'c' || i, 'c' || i || '@example.com',
       (i % 50)::bigint * 100000000, 'default', now() - (i || ' minutes')::interval
FROM generate_series(1, $1) i;
INSERT INTO api_keys (id, name, key_hash, key_hint, created_at, account_id)
SELECT 'key_' || lpad(to_hex(i), 12, '0'), 'k', md5(i::text) || md5((-i)::text),
       'sk-aic-...' || lpad(to_hex(i), 4, '0'), now(), 'acct_' || lpad(to_hex(i), 12, '0')
FROM generate_series(1, $1) i;
INSERT INTO usage_records (request_id, key_id, model, model_asked, vendor, stream, fast_path,
  input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,
  reasoning_tokens, usage_source, cost_nano, price_version_id, status, attempts, started_at,
  duration_ms, ttft_ms, account_id, upstream_cost_nano)
SELECT 'req_' || lpad(to_hex(r), 16, '0'), 'key_' || lpad(to_hex(1 + r % $1), 12, '0'),
       m.model, m.model, m.vendor, r % 2 = 0, r % 3 = 0, 800 + r % 500, 120 + r % 300,
       r % 200, 0, 0, r % 50, 'vendor', 4000 + r % 3000, 'catalog',
       CASE WHEN r % 40 = 0 THEN 'error' ELSE 'ok' END, 1,
       now() - ((r::float / $2) * interval '30 days'), 200 + r % 1800, 80 + r % 400,
       'acct_' || lpad(to_hex(1 + r % $1), 12, '0'), 3000 + r % 2000
FROM generate_series(1, $2) r
JOIN (VALUES (0, 'gpt-4o-mini', 'openai'), (1, 'claude-haiku-4-5', 'anthropic'),
             (2, 'gemini-2.5-flash', 'gemini'), (3, 'deepseek-chat', 'deepseek'))
     AS m(n, model, vendor) ON m.n = r % 4;
INSERT INTO usage_daily (account_id, day, model, vendor, requests, errors, input_tokens,
  output_tokens, cost_nano, upstream_cost_nano)
SELECT account_id, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), model, vendor,
       count(*), count(*) FILTER (WHERE status <> 'ok'), sum(input_tokens + cache_read_tokens),
       sum(output_tokens), sum(cost_nano), sum(upstream_cost_nano)
FROM usage_records GROUP BY 1, 2, 3, 4;
"""


async def seed(db: str, customers: int, records: int) -> None:
    from tokenrelay.store.db import create_engine, migrate_async

    admin = await asyncpg.connect(f"{PG}/postgres")
    await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{db}"')
    await admin.close()
    engine = create_engine(f"{PG}/{db}")
    await migrate_async(engine)
    await engine.dispose()
    conn = await asyncpg.connect(f"{PG}/{db}")
    started = time.perf_counter()
    for statement in SEED.split(";\n"):
        if statement.strip():
            used = max((int(n) for n in re.findall(r"\$(\d)", statement)), default=0)
            await conn.execute(statement, *[customers, records][:used])
    await conn.execute("ANALYZE")
    await conn.close()
    took = time.perf_counter() - started
    print(f"seeded {customers} customers, {records} usage records in {took:.0f} s")


async def measure(db: str, runs: int) -> None:
    from tokenrelay.admin.operators import OperatorStore
    from tokenrelay.server.app import create_app
    from tokenrelay.settings import Settings
    from tokenrelay.store.db import create_engine

    url = f"{PG}/{db}"
    engine = create_engine(url)
    store = OperatorStore(engine)
    if await store.get("bench@example.com") is None:
        await store.create("bench@example.com", "bench operator password")
    await engine.dispose()
    app = create_app(Settings(database_url=url, emulate="all", session_secret="bench-secret-01"))
    await app.startup()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench"
        ) as client:
            login = await client.get("/admin/login")
            csrf = login.text.split('name="csrf" value="')[1].split('"')[0]
            await client.post(
                "/admin/login",
                data={
                    "email": "bench@example.com",
                    "password": "bench operator password",
                    "csrf": csrf,
                },
            )
            pages = {
                "overview 7d": "/admin?range=7d",
                "overview 24h": "/admin?range=24h",
                "overview 30d": "/admin?range=30d",
                "customers": "/admin/customers",
                "customers search": "/admin/customers?q=c42%40",
                "customer page": "/admin/customers/acct_" + format(42, "012x"),
                "requests": "/admin/requests",
                "requests by customer": "/admin/requests?account=acct_" + format(42, "012x"),
                "requests by model+status": "/admin/requests?model=gpt-4o-mini&status=error",
            }
            for name, path in pages.items():
                times = []
                for _ in range(runs):
                    t = time.perf_counter()
                    r = await client.get(path)
                    times.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200, (path, r.status_code, r.text[:200])
                times.sort()
                p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
                print(f"{name:26s} median {statistics.median(times):6.1f} ms   p95 {p95:6.1f} ms")
    finally:
        await app.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["seed", "measure"])
    parser.add_argument("--db", default="tokenrelay_console_bench")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    if args.what == "seed":
        asyncio.run(seed(args.db, args.customers, args.records))
    else:
        asyncio.run(measure(args.db, args.runs))


if __name__ == "__main__":
    main()
