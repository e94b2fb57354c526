"""Figures for batches and embeddings (issue 24), each against the vendor emulator:

    .venv/bin/python -m bench.batches table        # batch API × vendor: how the lines ran (the
                                                   # vendor's batch API, or the gateway),
                                                   # created, completed, results read, cost =
                                                   # Σ lines at batch price, cancel mid-way
                                                   # bills finished lines
    .venv/bin/python -m bench.batches restart [--lines 10000] [--kill] [--vendor] [--postgres]
                                                   # time and memory of a batch through the
                                                   # gateway-run path (--vendor: the vendors'
                                                   # batch APIs), the gateway stopped (SIGTERM,
                                                   # or SIGKILL) half-way and started again:
                                                   # lines lost, lines sent twice
    .venv/bin/python -m bench.batches holds [--n 10000] [--redis URL]
                                                   # Redis calls of a batch's creation hold:
                                                   # a hold per line (as before) or one of
                                                   # the sum (jobs._hold_all); and of a
                                                   # vendor batch's settlement: a call per
                                                   # line or Holds.settle_many's pipelines
    .venv/bin/python -m bench.batches embeddings [--n 300]
                                                   # added latency over a direct emulator call

Gateways run as `tokenrelay serve` processes on one SQLite file; the emulator runs in this
process and counts the vendor calls each batch line made (tests/batches/counting_emulator.py).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from bench.emulator_overhead import _free_port, _wait

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "batches"))
from counting_emulator import CountingEmulator  # noqa: E402

NANO = Decimal("1e-9")
MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-haiku-4-5",
    "gemini": "gemini-2.5-flash",
    "xai": "grok-3-mini",
    "deepseek": "deepseek-chat",
}
ADMIN = {"authorization": "Bearer adm"}
# restart --postgres: the gateways on this database (created afresh) and Redis db.
PG_URL = "postgresql://postgres@127.0.0.1:5432/queue_restart"
REDIS_URL = "redis://127.0.0.1:6379/5"


class Gateway:
    def __init__(self, db: Path, emulator: str, **env: str) -> None:
        self.port = _free_port()
        self.db = db
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "TOKENRELAY_EMULATE": "all",
            "TOKENRELAY_EMULATOR_URL": emulator,
            "TOKENRELAY_DATABASE_URL": f"sqlite:///{db}",
            **(
                {"TOKENRELAY_DATABASE_URL": PG_URL, "TOKENRELAY_REDIS_URL": REDIS_URL}
                if db.name == "postgres"
                else {}
            ),
            "TOKENRELAY_ADMIN_TOKEN": "adm",
            "TOKENRELAY_LOG_LEVEL": "warning",
            "TOKENRELAY_BATCH_POLL_S": "0.2",
            **env,
        }
        exe = Path(sys.executable).with_name("tokenrelay")
        self.proc = subprocess.Popen([str(exe), "serve", "--port", str(self.port)], env=self.env)
        for attempt in range(5):  # a loaded machine may take minutes to start it
            try:
                _wait(self.url + "/healthz", self.proc)
                break
            except SystemExit:
                if attempt == 4 or self.proc.poll() is not None:
                    raise

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self, sig: int = signal.SIGTERM) -> float:
        peak = self.peak_rss_mb()
        self.proc.send_signal(sig)
        self.proc.wait(timeout=60)
        return peak

    def key(self, credits: str = "100000") -> tuple[str, str]:
        r = httpx.post(
            self.url + "/admin/v1/keys", headers=ADMIN, json={"name": "b", "credits_usd": credits}
        ).json()
        return r["key"], r["id"]

    def usage(self, key_id: str, prefix: str) -> list[dict[str, Any]]:
        """The usage records of a batch's lines (read from the database: the admin API pages
        at 1000)."""
        if self.db.name == "postgres":
            out = subprocess.run(
                ["psql", PG_URL, "-Atc", "SELECT request_id, cost_nano FROM usage_records "
                 f"WHERE key_id = '{key_id}' AND request_id LIKE '{prefix}-%'"],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            rows = [tuple(x.split("|")) for x in out.splitlines() if x]
        else:
            with sqlite3.connect(self.db) as conn:
                rows = conn.execute(
                    "SELECT request_id, cost_nano FROM usage_records WHERE key_id = ? "
                    "AND request_id LIKE ?",
                    (key_id, prefix + "-%"),
                ).fetchall()
        return [{"request_id": r, "cost_usd": str(Decimal(c) * NANO)} for r, c in rows]


def _chat(model: str, text: str) -> dict[str, Any]:
    return {"model": model, "max_tokens": 30, "messages": [{"role": "user", "content": text}]}


def _auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", "x-api-key": key}


def _nano(usd: str) -> int:
    return int(Decimal(usd) / NANO)


def _balance(gw: Gateway, key: str) -> Decimal:
    return Decimal(httpx.get(gw.url + PROXY + "/account", headers=_auth(key)).json()["balance_usd"])


PROXY = "/api/proxy/v1"


def _openai_batch(gw: Gateway, key: str, bodies: list[dict[str, Any]]) -> str:
    url = "/v1/chat/completions"
    rows = [
        {"custom_id": f"c{i}", "method": "POST", "url": url, "body": b}
        for i, b in enumerate(bodies)
    ]
    data = "\n".join(json.dumps(r) for r in rows).encode()
    f = httpx.post(
        gw.url + PROXY + "/files",
        headers=_auth(key),
        files={"file": ("in.jsonl", data)},
        data={"purpose": "batch"},
        timeout=120,
    ).json()
    body = {"input_file_id": f["id"], "endpoint": url, "completion_window": "24h"}
    b = httpx.post(gw.url + PROXY + "/batches", headers=_auth(key), json=body, timeout=600)
    return str(b.json()["id"])


def _anthropic_batch(gw: Gateway, key: str, bodies: list[dict[str, Any]]) -> str:
    reqs = [{"custom_id": f"c{i}", "params": b} for i, b in enumerate(bodies)]
    r = httpx.post(
        gw.url + PROXY + "/messages/batches", headers=_auth(key), json={"requests": reqs}
    )
    return str(r.json()["id"])


def _path(api: str, batch_id: str) -> str:
    return (
        f"{PROXY}/batches/{batch_id}" if api == "openai" else f"{PROXY}/messages/batches/{batch_id}"
    )


def _ended(b: dict[str, Any]) -> bool:
    return b.get("status") in ("completed", "cancelled", "expired") or (
        b.get("processing_status") == "ended"
    )


def _finished(b: dict[str, Any]) -> int:
    counts = b["request_counts"]
    return int(counts.get("completed", counts.get("succeeded", 0)))


def _wait_batch(gw: Gateway, key: str, path: str, done: Any, timeout_s: float = 3600) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        b = httpx.get(gw.url + path, headers=_auth(key)).json()
        if done(b):
            return b
        time.sleep(0.1)
    raise SystemExit(f"{path} did not end")


def _results(gw: Gateway, key: str, api: str, b: dict[str, Any]) -> int:
    """Lines read back that answered."""
    if api == "openai":
        url = f"{gw.url}{PROXY}/files/{b['output_file_id']}/content"
        lines = [json.loads(x) for x in httpx.get(url, headers=_auth(key)).text.splitlines()]
        return sum(1 for x in lines if x["response"]["status_code"] == 200)
    lines = [
        json.loads(x) for x in httpx.get(b["results_url"], headers=_auth(key)).text.splitlines()
    ]
    return sum(1 for x in lines if x["result"]["type"] == "succeeded")


def _emulator_seq(emu: CountingEmulator) -> int:
    seen = httpx.get(emu.url + "/_requests").json()["data"]
    return max((r["seq"] for r in seen), default=0)


def _ran_at(emu: CountingEmulator, mark: int) -> str:
    """Where the vendor saw the lines since `mark`: its batch API (the create call's path), or
    the standard API (the gateway ran them)."""
    seen = httpx.get(emu.url + "/_requests").json()["data"]
    posts = [r["path"] for r in seen if r["seq"] > mark and r["method"] == "POST"]
    batch = [p for p in posts if p.endswith(("/batches", ":batchGenerateContent"))]
    return f"vendor batch `POST {batch[0]}`" if batch else f"gateway, {len(posts)} calls"


def table() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="tr-batches-"))
    with CountingEmulator() as emu:
        gw = Gateway(tmp / "gw.db", emu.url, TOKENRELAY_BATCH_CONCURRENCY="4")
        try:
            print("| batch API | vendor | model | lines ran at | created | completed "
                  "| results read | Σ lines (nano-USD) | Σ direct ÷ 2, rounded up "
                  "| equal |")  # fmt: skip
            print("|---|---|---|---|---|---|---|---:|---:|---|")
            for vendor, model in MODELS.items():
                key, key_id = gw.key()
                bodies = [_chat(model, f"line {i}") for i in range(3)]
                direct = [
                    httpx.post(gw.url + PROXY + "/chat/completions", headers=_auth(key), json=b)
                    for b in bodies
                ]
                want = sum(-((-_nano(r.headers["x-tokenrelay-cost-usd"]) * 500_000) // 1_000_000)
                           for r in direct)  # fmt: skip
                for api in ("openai", "anthropic"):
                    make = _openai_batch if api == "openai" else _anthropic_batch
                    mark = _emulator_seq(emu)
                    bid = make(gw, key, bodies)
                    b = _wait_batch(gw, key, _path(api, bid), _ended)
                    read = _results(gw, key, api, b)
                    got = sum(_nano(u["cost_usd"]) for u in gw.usage(key_id, bid))
                    via = _ran_at(emu, mark)
                    print(f"| {api} | {vendor} | {model} | {via} | yes | {_finished(b)}/3 "
                          f"| {read} | {got} | {want} | {got == want} |")  # fmt: skip
            # Cancel mid-way: 40 slow lines over every vendor, cancelled once the first answered.
            for api in ("openai", "anthropic"):
                key, key_id = gw.key("50")
                before = _balance(gw, key)
                bodies = [
                    _chat(list(MODELS.values())[i % 5], f"slow {i} [[first-delay:300]]")
                    for i in range(40)
                ]
                make = _openai_batch if api == "openai" else _anthropic_batch
                bid = make(gw, key, bodies)
                _wait_batch(gw, key, _path(api, bid), lambda b: _finished(b) > 0)
                httpx.post(gw.url + _path(api, bid) + "/cancel", headers=_auth(key))
                b = _wait_batch(gw, key, _path(api, bid), _ended)
                usage = gw.usage(key_id, bid)
                spent = sum(Decimal(u["cost_usd"]) for u in usage)
                drop = before - _balance(gw, key)
                print(f"cancel mid-way, {api}: {b['request_counts']}; lines billed "
                      f"{len(usage)}, Σ ${spent} = balance drop ${drop}: "
                      f"{spent == drop}")  # fmt: skip
        finally:
            gw.stop()


def restart(lines: int, kill: bool, vendor: bool, postgres: bool = False) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="tr-batches-"))
    db = tmp / ("postgres" if postgres else "gw.db")
    if postgres:
        admin = PG_URL.rsplit("/", 1)[0] + "/postgres"
        for sql in ("DROP DATABASE IF EXISTS queue_restart WITH (FORCE)",
                    "CREATE DATABASE queue_restart"):  # fmt: skip
            subprocess.run(["psql", admin, "-qc", sql], check=True)
        subprocess.run(["redis-cli", "-u", REDIS_URL, "flushdb"], check=True, capture_output=True)
    # The gateway-run path unless --vendor: every line through the gateway's request path.
    env = {"TOKENRELAY_BATCH_VENDOR_APIS": "1" if vendor else "0"}
    with CountingEmulator() as emu:
        gw = Gateway(db, emu.url, **env)
        key, key_id = gw.key()
        models = list(MODELS.values())
        bodies = [_chat(models[i % 5], f"#line-{i} summarise") for i in range(lines)]
        t0 = time.perf_counter()
        bid = _openai_batch(gw, key, bodies)
        created_s = time.perf_counter() - t0
        path = _path("openai", bid)
        # Half-way: half the lines answered (gateway-run), or sent to the vendors' batches
        # (their answers come when a vendor batch ends).
        _wait_batch(
            gw,
            key,
            path,
            lambda b: _finished(b) >= lines // 2 or (vendor and len(emu.calls) >= lines // 2),
        )
        t_stop = time.perf_counter()
        peak1 = gw.stop(signal.SIGKILL if kill else signal.SIGTERM)
        t_stopped = time.perf_counter()
        sent_before = sum(emu.calls.values())
        gw = Gateway(db, emu.url, **env)
        t_up = time.perf_counter()
        b = _wait_batch(gw, key, path, _ended)
        total_s = time.perf_counter() - t0
        url = f"{gw.url}{PROXY}/files/{b['output_file_id']}/content"
        out = httpx.get(url, headers=_auth(key)).text.splitlines()
        answered = {json.loads(x)["custom_id"] for x in out}
        usage = gw.usage(key_id, bid)
        peak2 = gw.stop()
        running_s = total_s - created_s - (t_up - t_stop)
        print(json.dumps({
            "lines": lines, "restart": "SIGKILL" if kill else "SIGTERM",
            "path": "vendor batch APIs" if vendor else "gateway-run",
            "store": "postgres+redis" if postgres else "sqlite",
            "create_s": round(created_s, 2), "total_s": round(total_s, 2),
            "stop_s": round(t_stopped - t_stop, 2), "start_s": round(t_up - t_stopped, 2),
            "lines_per_s_running": round(lines / running_s, 1),
            "sent_before_restart": sent_before, "status": b["status"],
            "completed": b["request_counts"]["completed"], "lost": lines - len(answered),
            "sent_to_vendor_twice": sum(1 for n in emu.calls.values() if n > 1),
            "never_sent": lines - len(emu.calls), "usage_records": len(usage),
            "billed_nano": sum(_nano(u["cost_usd"]) for u in usage),
            "peak_rss_mb_first": round(peak1, 1), "peak_rss_mb_second": round(peak2, 1),
        }))  # fmt: skip


def holds(n: int, url: str) -> None:
    import asyncio

    import redis.asyncio as aioredis

    from tokenrelay.billing.holds import RedisHolds

    async def run() -> None:
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=256)
        r = aioredis.Redis(connection_pool=pool)

        async def loader(key_id: str) -> int:
            return 10**15

        h = RedisHolds(r, loader, prefix="bench-holds:")
        try:
            t = time.perf_counter()
            for i in range(n):
                await h.reserve("acct", f"b-{i}", 1000)
            per_line = time.perf_counter() - t
            for i in range(n):
                await h.release("acct", f"b-{i}")
            t = time.perf_counter()
            await h.reserve("acct", "b", 1000 * n)
            await h.release("acct", "b")
            one = time.perf_counter() - t
            # A vendor batch's n answers settled: a settle call per line (as before), or
            # settle_many's pipelines (jobs.VendorBatches._poll_one now).
            t = time.perf_counter()
            for i in range(n):
                await h.settle("acct", f"s-{i}", 1)
            settle_per_line = time.perf_counter() - t
            t = time.perf_counter()
            await h.settle_many([("acct", f"m-{i}", 1) for i in range(n)])
            settle_many = time.perf_counter() - t
        finally:
            keys = [k async for k in r.scan_iter("bench-holds:*")]
            if keys:
                await r.delete(*keys)
            await r.aclose()
        print(json.dumps({"lines": n, "hold_per_line_s": round(per_line, 3),
                          "one_hold_of_the_sum_s": round(one, 4),
                          "settle_per_line_s": round(settle_per_line, 3),
                          "settle_many_s": round(settle_many, 3),
                          "settle_round_trips": [n, -(-n // 1000)]}))  # fmt: skip

    asyncio.run(run())


def embeddings(n: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="tr-embed-"))
    with CountingEmulator() as emu:
        gw = Gateway(tmp / "gw.db", emu.url)
        key, _ = gw.key()
        texts = ["the quick brown fox jumps over the lazy dog", "a second input"]
        openai = {"model": "text-embedding-3-small", "input": texts, "encoding_format": "float"}
        model = "models/gemini-embedding-001"
        gemini = {
            "requests": [{"model": model, "content": {"parts": [{"text": t}]}} for t in texts]
        }
        verb = "gemini-embedding-001:batchEmbedContents"
        cells = {
            "openai /v1/embeddings": (
                (f"{emu.url}/openai/v1/embeddings", openai, _auth("k")),
                (f"{gw.url}{PROXY}/embeddings", openai, _auth(key)),
            ),
            "gemini :batchEmbedContents": (
                (f"{emu.url}/gemini/v1beta/models/{verb}", gemini, {"x-goog-api-key": "k"}),
                (f"{gw.url}/api/proxy/v1beta/models/{verb}", gemini, {"x-goog-api-key": key}),
            ),
        }
        try:
            with httpx.Client(timeout=30) as client:
                for name, sides in cells.items():
                    added = []
                    for i in range(n + 20):  # alternating: both sides see the same noise
                        times = []
                        for url, body, headers in sides:
                            t = time.perf_counter()
                            client.post(url, json=body, headers=headers).raise_for_status()
                            times.append(time.perf_counter() - t)
                        if i >= 20:  # warm-up
                            added.append((times[1] - times[0]) * 1000)
                    p50, p90 = statistics.median(added), statistics.quantiles(added, n=10)[8]
                    print(f"{name}: added p50 {p50:.3f} ms, p90 {p90:.3f} ms (n={n})")
        finally:
            gw.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    sub.add_parser("table")
    r = sub.add_parser("restart")
    r.add_argument("--lines", type=int, default=10_000)
    r.add_argument("--kill", action="store_true")
    r.add_argument("--vendor", action="store_true")
    r.add_argument("--postgres", action="store_true", help="PostgreSQL + Redis db 5")
    h = sub.add_parser("holds")
    h.add_argument("--n", type=int, default=10_000)
    h.add_argument("--redis", default="redis://127.0.0.1:6379/7")
    e = sub.add_parser("embeddings")
    e.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    if args.what == "table":
        table()
    elif args.what == "restart":
        restart(args.lines, args.kill, args.vendor, args.postgres)
    elif args.what == "holds":
        holds(args.n, args.redis)
    else:
        embeddings(args.n)


if __name__ == "__main__":
    main()
