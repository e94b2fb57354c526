"""What the dashboard and console batch tests share: a gateway per store that runs batches,
a batch created through the official openai SDK and run to its end, and what its lines were
billed (their usage records, `<batch id>-<line no>`)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
from sqlalchemy import func, select

from backends import backend
from gateway_support import ADMIN_TOKEN, RunningGateway, served
from tokenrelay.store.db import create_engine
from tokenrelay.store.tables import batch_lines

NANO = Decimal("1e-9")
# A gateway-run line (DeepSeek has no batch API), a vendor-batch line (OpenAI's), and a line
# refused at creation (no such model): two done, one failed.
MODELS = ["deepseek-chat", "gpt-4o-mini", "no-such-model"]


def gateway(store: str, tmp: Path) -> Iterator[RunningGateway]:
    with backend(store, str(tmp)) as b:
        yield from served(
            tmp,
            database_url=b.database_url,
            redis_url=b.redis_url,
            signup_credit_usd=Decimal("5.00"),
            session_secret="batch-pages-secret-0123456789",
            batch_poll_s=0.1,
        )


def create_batch(gw: RunningGateway, key: str, models: list[str], text: str) -> Any:
    """A Chat Completions batch, a line per model, created through the openai SDK."""
    client = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
    lines = [
        json.dumps(
            {
                "custom_id": f"line-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": m,
                    "messages": [{"role": "user", "content": text}],
                    "max_tokens": 30,
                },
            }
        )
        for i, m in enumerate(models)
    ]
    f = client.files.create(file=("in.jsonl", "\n".join(lines).encode()), purpose="batch")
    return client.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
    )


def wait_batch(gw: RunningGateway, key: str, batch_id: str) -> Any:
    client = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
    for _ in range(600):
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "cancelled", "expired", "failed"):
            return batch
        time.sleep(0.1)
    raise AssertionError(f"batch {batch_id} did not end: {batch}")


def run_batch(gw: RunningGateway, key: str) -> Any:
    """A three-line batch (two done, one failed), run to its end."""
    batch = wait_batch(gw, key, create_batch(gw, key, MODELS, "summarise this").id)
    assert batch.status == "completed", batch
    counts = batch.request_counts
    assert counts is not None and (counts.completed, counts.failed) == (2, 1)
    return batch


def slow_batch(gw: RunningGateway, key: str) -> Any:
    """A gateway-run batch whose two lines answer only after 8 s: open meanwhile."""
    return create_batch(gw, key, ["deepseek-chat"] * 2, "slow [[first-delay:8000]]")


def lines_hold_nano(gw: RunningGateway, batch_id: str) -> int:
    """Σ the worst cases the batch's lines hold, as the database has them."""

    async def read() -> int:
        engine = create_engine(gw.settings.database_url)
        try:
            async with engine.connect() as conn:
                q = select(func.sum(batch_lines.c.hold_nano)).where(
                    batch_lines.c.batch_id == batch_id
                )
                return int((await conn.execute(q)).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(read())


def billed_nano(gw: RunningGateway, batch_id: str, lines: int = 2) -> int:
    """Σ the usage records of the batch's lines, from the admin API (to the nano)."""
    r = httpx.get(
        gw.url + "/admin/v1/usage",
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        params={"limit": 1000},
    )
    assert r.status_code == 200, r.text
    rows = [row for row in r.json()["data"] if row["request_id"].startswith(batch_id + "-")]
    assert len(rows) == lines and all(row["status"] == "ok" for row in rows), rows
    return sum(int(Decimal(row["cost_usd"]) / NANO) for row in rows)


def batch_row(page: str, batch_id: str) -> str:
    """The table row of `batch_id` on a page."""
    found = re.search(rf'<tr data-batch-id="{re.escape(batch_id)}">(.*?)</tr>', page, re.S)
    assert found, page[-3000:]
    return found.group(1)


def cell(row: str, testid: str) -> tuple[str, str | None]:
    """A cell's text and its data-nano, if any."""
    found = re.search(
        rf'<td[^>]*data-testid="{testid}"(?: data-nano="(\d+)")?>(.*?)</td>', row, re.S
    )
    assert found, row
    return re.sub(r"<[^>]+>", "", found.group(2)).strip(), found.group(1)
