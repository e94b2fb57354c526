"""What billing costs the event loop, in process: `python -m bench.billing_path [--n 20000]`.

One request's billing as the relay does it on the embedded store (SQLite, the settlement
journal's commit thread running): `BillingMeter.admit`, then, the vendor having answered with
its usage, `finish`, `settle` and the cost header — and nothing else, so the figure is that
part alone, without a server, a client or a vendor around it. Reports the event loop thread's
CPU µs a request (`time.thread_time`, the lowest of `--rounds`: other work on a shared VM only
ever adds to it) and the journal thread's. `PYTHONPATH=<another tree>/src` runs another
version against the same bench.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from tokenrelay import ir
from tokenrelay.billing.engine import BillingEngine
from tokenrelay.billing.meter import BillingMeter
from tokenrelay.billing.metering import RequestContext
from tokenrelay.billing.receipts import load_signer
from tokenrelay.catalog import Catalog
from tokenrelay.customers.keys import KeyStore
from tokenrelay.settings import Settings
from tokenrelay.store.db import create_engine, migrate_async

MODEL = "gpt-4o"


def _process_cpu_s() -> float:
    """CPU seconds of all of this process's threads (/proc: utime + stime)."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _run(n: int, rounds: int, tmp: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp}/billing.db")
    await migrate_async(engine)
    key, _ = await KeyStore(engine).create("bench", Decimal(1_000_000))
    settings = Settings(TOKENRELAY_DATABASE_URL=str(engine.url))  # type: ignore[call-arg]
    billing = BillingEngine(settings, engine, Catalog.load())
    await billing.start()
    meter = BillingMeter(billing, await load_signer(None, engine, None))
    try:
        best = float("inf")
        for r in range(rounds):
            process_before = _process_cpu_s()  # every thread: the loop's is taken off below
            start = time.thread_time()
            for i in range(n):
                ctx = RequestContext(
                    request_id=f"req_{r:02d}{i:010d}",
                    client_format="openai",
                    key_id=key.id,
                    model_id=MODEL,
                    model_asked=MODEL,
                    vendor="openai",
                    fast_path=True,
                    input_bound=40,
                )
                admission = await meter.admit(key, ctx, MODEL, 256)
                ctx.upstream_answered = True
                ctx.apply_usage(ir.Usage(input=12, output=7))
                ctx.finish("ok")
                await meter.settle(admission, ctx)
                meter.cost_headers(ctx)
            loop_s = time.thread_time() - start
            await billing.writer.flush()
            others_s = _process_cpu_s() - process_before - loop_s
            best = min(best, loop_s)
            print(
                f"round {r + 1}: event loop {loop_s / n * 1e6:.2f} µs a request, "
                f"other threads (the journal's commits) {others_s / n * 1e6:.2f}",
                flush=True,
            )
        print(f"billing on the event loop: {best / n * 1e6:.2f} µs a request (lowest of {rounds})")
    finally:
        await billing.close()
        await engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.billing_path", description=__doc__)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tokenrelay-billing-path-") as tmp:
        asyncio.run(_run(args.n, args.rounds, Path(tmp)))


if __name__ == "__main__":
    main()
