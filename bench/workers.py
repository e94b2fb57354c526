"""RPS with `tokenrelay serve --workers N`: `python -m bench.workers [--workers 1,2]`.

Each N runs the gateway on PostgreSQL (a database of its own, dropped after) and a Redis of its
own (what several workers need to share balances, holds and limits), `serve --workers N`
pinned to cores 0..N-1, and wrk c=64 (OpenAI client, fast path, non-stream) against the Node
mock, both on the last core. Reports req/s (median over rounds) and the gateway's CPU per
request (all its processes), and its memory after the load: RSS and PSS summed over the
supervisor and its workers (PSS counts a page the forked workers share once in all; RSS counts
it in each). On a 2-core machine the load generator shares a core with the second worker: read
N=2 as a lower bound of what two dedicated cores give. `--source DIR` runs another tree's
`src/` (e.g. `git archive`d), for a before/after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

from bench import loadgen, phases, proc
from bench.contenders import OPENAI_MODEL, REPO
from bench.procstats import tree_cpu_s, tree_pss_mb, tree_rss_mb

PG = "postgresql://postgres@127.0.0.1:5432"
ADMIN = "bench-workers-admin"


async def _pg(sql: str) -> None:
    conn = await asyncpg.connect(f"{PG}/postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def run(
    workers: int, rounds: int, seconds: float, mock_port: int, tmp: Path, source: str | None
) -> dict[str, float]:
    db = f"tokenrelay_bench_workers_{os.getpid()}_{workers}"
    redis_port = proc.free_port()
    redis = proc.spawn(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp)],
        proc.LOAD_CORE, tmp / f"redis-{workers}.log",
    )  # fmt: skip
    asyncio.run(_pg(f'CREATE DATABASE "{db}"'))
    port = proc.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENRELAY_")}
    env |= {
        "TOKENRELAY_OPENAI_BASE_URL": f"http://127.0.0.1:{mock_port}/v1",
        "OPENAI_API_KEY": "bench",
        "TOKENRELAY_EMULATE": "none",
        "TOKENRELAY_DATABASE_URL": f"{PG}/{db}",
        "TOKENRELAY_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "TOKENRELAY_SESSION_SECRET": "bench-workers-session-secret-0123456789",
        "TOKENRELAY_ADMIN_TOKEN": ADMIN,
        "TOKENRELAY_LOG_LEVEL": "warning",
    }
    if source:
        env["PYTHONPATH"] = source
    cores = ",".join(str(c) for c in range(workers))
    cmd = [str(REPO / ".venv" / "bin" / "tokenrelay"), "serve", "--port", str(port)]
    gw = proc.spawn([*cmd, "--workers", str(workers)], cores, tmp / f"gw-{workers}.log", env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        proc.wait_http(base + "/", gw, 90, tmp / f"gw-{workers}.log")
        time.sleep(2)  # every worker up, not only the first
        req = urllib.request.Request(
            base + "/admin/v1/keys",
            data=json.dumps({"name": "bench", "credits_usd": "1000000"}).encode(),
            headers={"authorization": f"Bearer {ADMIN}", "content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            key = json.loads(resp.read())["key"]
        target = loadgen.Target(
            base + "/api/proxy/v1/chat/completions",
            "openai",
            OPENAI_MODEL,
            {"authorization": f"Bearer {key}"},
        )
        loadgen.wrk(target, 64, 2)  # warm-up: every worker's pools and caches
        rps, cpu = [], []
        for _ in range(rounds):
            before = tree_cpu_s(gw.pid)
            res = loadgen.wrk(target, 64, seconds)
            used = tree_cpu_s(gw.pid) - before
            if res["errors"]:
                raise RuntimeError(f"workers={workers}: {res['errors']} errors")
            rps.append(res["rps"])
            cpu.append(used * 1e6 / max(res["requests"], 1))
        return {
            "rss_mb": round(tree_rss_mb(gw.pid), 1),
            "pss_mb": round(tree_pss_mb(gw.pid), 1),
            "rps": round(statistics.median(rps), 1),
            "rps_spread": round(max(rps) - min(rps), 1),
            "cpu_us_per_request": round(statistics.median(cpu), 1),
        }
    finally:
        proc.stop(gw)
        proc.stop(redis)
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--source", help="another tree's src/ directory, run instead of this one")
    args = ap.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    if max(counts) >= (os.cpu_count() or 1) + 1:
        raise SystemExit(f"--workers up to {os.cpu_count()} on this machine")
    results = {}
    with tempfile.TemporaryDirectory(prefix="tokenrelay-workers-") as tmp:
        mock, port = phases.start_mock(Path(tmp))
        try:
            for n in counts:
                results[n] = run(n, args.rounds, args.seconds, port, Path(tmp), args.source)
                r = results[n]
                print(
                    f"workers {n}: {r['rps']:8.0f} req/s (spread {r['rps_spread']:.0f})   "
                    f"{r['cpu_us_per_request']:.1f} µs CPU/request   "
                    f"memory: RSS {r['rss_mb']:.1f} MB, PSS {r['pss_mb']:.1f} MB in all",
                    flush=True,
                )
        finally:
            proc.stop(mock)
    if 1 in results and len(results) > 1:
        for n, r in results.items():
            if n != 1:
                print(f"workers {n} ÷ 1: {r['rps'] / results[1]['rps']:.2f}× req/s")


if __name__ == "__main__":
    main()
