"""Page weight and server time of the storefront's pages: `/`, `/pricing`, `/docs` and a
signed-in `/dashboard` (200 requests on it, two keys, two models), against a gateway on this
machine.

    .venv/bin/python -m bench.storefront_pages

Weight: the HTML plus every stylesheet, script and image it links (uncompressed bytes, what a
first visit downloads). Server time: the median and 95th percentile of 50 sequential GETs over
one keep-alive connection on localhost (so network time is ~0). Targets: < 300 KB, < 50 ms.
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx
import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "portal"))

from portal_support import Browser

from gateway_support import start_gateway

ASSET = re.compile(r'<(?:link[^>]+href|script[^>]+src|img[^>]+src)="(/[^"]+)"')
RUNS = 50


def main() -> None:
    gw, thread = start_gateway(
        Path(tempfile.mkdtemp()),
        session_secret="bench-storefront-secret-01",
        signup_credit_usd=Decimal("5.00"),
    )
    b = Browser(gw.url)
    b.sign_up("bench@example.com")
    # Two keys and two models: the dashboard's charts and tables have a line of each.
    clients = [
        openai.OpenAI(api_key=b.create_key(name), base_url=gw.proxy + "/v1", max_retries=0)
        for name in ("bench", "ci")
    ]
    for i in range(200):
        clients[i % 2].chat.completions.create(
            model=("gpt-4o-mini", "claude-haiku-4-5")[i // 2 % 2],
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=5,
        )
    print(f"{'page':<12}{'weight KB':>10}{'html KB':>9}{'median ms':>11}{'p95 ms':>8}")
    for path in ("/", "/pricing", "/docs", "/dashboard"):
        http: httpx.Client = b.http if path == "/dashboard" else httpx.Client(base_url=gw.url)
        html = http.get(path).content
        assets = set(ASSET.findall(html.decode()))
        weight = len(html) + sum(len(http.get(a).content) for a in assets)
        times = []
        for _ in range(RUNS):
            start = time.perf_counter()
            assert http.get(path).status_code == 200
            times.append((time.perf_counter() - start) * 1000)
        p95 = sorted(times)[int(RUNS * 0.95) - 1]
        print(
            f"{path:<12}{weight / 1024:>10.1f}{len(html) / 1024:>9.1f}"
            f"{statistics.median(times):>11.1f}{p95:>8.1f}"
        )
    gw.server.should_exit = True
    thread.join(timeout=10)


if __name__ == "__main__":
    main()
