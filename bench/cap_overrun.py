"""Spend over a key's daily cap when its model falls back to a dearer one (issue 20's figure).

Two gateways (in this process, each its own app, as two workers or replicas would be) on one
fresh PostgreSQL database and one Redis db; gpt-4o-mini's only deployment is a dead port, its
fallback is gpt-4o (about 16x its price); a key with a $0.01 daily cap sends 50 concurrent
requests spread over both. Prints what was spent, the cap, and the largest single hold (the
target: spent <= cap + one request's hold; with shared caps, spent <= cap).

    python -m bench.cap_overrun [--requests 50] [--cap 0.01]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import tempfile
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import redis
import uvicorn

ADMIN = "cap-bench-admin"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(settings_kw: dict[str, object]) -> tuple[uvicorn.Server, str]:
    from tokenrelay.server.app import create_app
    from tokenrelay.settings import Settings

    port = _port()
    settings = Settings(host="127.0.0.1", port=port, **settings_kw)  # type: ignore[arg-type]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), port=port, log_level="error"))
    threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server, f"http://127.0.0.1:{port}"


async def _burst(urls: list[str], key: str, n: int) -> list[int]:
    body = {
        "model": "gpt-4o-mini",
        "max_tokens": 200,
        "messages": [{"role": "user", "content": "hi [[words:40]]"}],
    }
    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(i: int) -> int:
            r = await client.post(
                urls[i % 2] + "/api/proxy/v1/chat/completions", json=body, headers=headers
            )
            return r.status_code

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--cap", default="0.01")
    args = ap.parse_args()
    db = "tokenrelay_cap_" + uuid.uuid4().hex[:8]

    async def create() -> None:
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        await conn.execute(f'CREATE DATABASE "{db}"')
        await conn.close()

    asyncio.run(create())
    redis_url = "redis://127.0.0.1:6379/12"
    redis.Redis.from_url(redis_url).flushdb()
    tmp = Path(tempfile.mkdtemp())
    emu = _port()
    dead = f"http://127.0.0.1:{_port()}"
    os.environ["CAP_BENCH_KEY"] = "sk-bench"
    catalog = tmp / "catalog.toml"
    catalog.write_text(
        f'[[deployments.openai]]\nname = "down"\nbase_url = "{dead}/openai/v1"\n'
        'api_key_env = "CAP_BENCH_KEY"\nmodels = ["gpt-4o-mini"]\n'
        f'[[deployments.openai]]\nname = "up"\nbase_url = "http://127.0.0.1:{emu}/openai/v1"\n'
        'api_key_env = "CAP_BENCH_KEY"\nmodels = ["gpt-4o"]\n'
        '[fallbacks]\n"gpt-4o-mini" = ["gpt-4o"]\n'
    )
    common: dict[str, object] = {
        "database_url": f"postgresql://postgres@127.0.0.1:5432/{db}",
        "redis_url": redis_url,
        "admin_token": ADMIN,
        "emulate": "keyless",
        "catalog_path": str(catalog),
        "upstream_retries": 0,
        "session_secret": "cap-bench-session-secret-0123456789",
    }
    first, url1 = _start({**common, "emulator_port": emu})
    second, url2 = _start({**common, "emulator_url": f"http://127.0.0.1:{emu}"})
    admin = {"authorization": f"Bearer {ADMIN}"}
    r = httpx.post(
        url1 + "/admin/v1/keys",
        headers=admin,
        json={"name": "capped", "credits_usd": "10.00", "daily_cap_usd": args.cap},
    )
    key, key_id = r.json()["key"], r.json()["id"]
    statuses = asyncio.run(_burst([url1, url2], key, args.requests))
    time.sleep(1)
    rows = httpx.get(
        url1 + "/admin/v1/usage", headers=admin, params={"key_id": key_id, "limit": 1000}
    ).json()["data"]
    spent = sum(Decimal(u["cost_usd"]) for u in rows)
    served = [u for u in rows if Decimal(u["cost_usd"]) > 0]
    models = sorted({u["model"] for u in served})
    print(f"requests={args.requests} statuses={ {s: statuses.count(s) for s in set(statuses)} }")
    print(
        f"served by {models}; spent ${spent} on a ${args.cap} cap; "
        f"over the cap: ${max(spent - Decimal(args.cap), Decimal(0))}"
    )
    first.should_exit = second.should_exit = True
    time.sleep(1)
    os._exit(0)


if __name__ == "__main__":
    main()
