"""Chaos run (issue 21): does every cent stay accounted through crashes, a Redis pause, client
disconnects and vendor faults? `make chaos` (or `python -m bench.chaos --requests 5000`).

Three `tokenrelay serve` replicas on one fresh PostgreSQL database and a Redis server of the
run's own (it gets paused, so never the shared one), vendors emulated. Requests go round-robin
over the four client APIs, 60 % streams, with the emulator's fault triggers and client
disconnects; one replica is SIGKILLed at 30 % and another at 70 % of the run (each restarted),
and Redis is paused (`CLIENT PAUSE 5000 ALL`) at 50 %. Each request names a session id of its
own, which its usage record keeps, so every record is matched with what its client saw.

Prints, 10 s after the last request:
- Redis − database balance, summed over every account Redis holds (target 0 nano);
- holds left (target 0);
- requests billed beyond the declared policy (target 0): records whose cost is not the policy
  table's charge of their usage recomputed here with exact fractions, or that bill a client
  that received no output;
- `tokenrelay ledger verify`'s verdict, and the billing policy table.
Requests billed although their replica was SIGKILLed between the commit and the response are
counted apart: the kill, not the policy, cut them off.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx

from bench.proc import free_port
from tokenrelay import ir
from tokenrelay.billing import policy
from tokenrelay.catalog import Catalog

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
ADMIN_TOKEN = "chaos-admin-token"
MODELS = ["gpt-4o", "claude-sonnet-4-6", "gemini-2.5-flash", "deepseek-chat", "grok-4.3"]
APIS = ["anthropic", "chat", "responses", "gemini"]
TOKENRELAY = Path(sys.executable).with_name("tokenrelay")
KEYS = 12


@dataclass
class Seen:
    """What one request's client saw."""

    session: str
    api: str
    stream: bool
    scenario: str
    status: int | None = None
    delivered: bool = False  # any output text reached the client
    failure: str = ""  # a transport error (a killed replica, a client timeout)
    replica: int = 0
    started: float = 0.0
    ended: float = 0.0


@dataclass
class Run:
    urls: list[str]
    procs: list[subprocess.Popen[bytes]]
    env: dict[str, str]
    log_dir: Path
    alive: list[bool] = field(default_factory=list)
    kills: list[tuple[int, float]] = field(default_factory=list)  # (replica, when)

    def killed_during(self, seen: Seen) -> bool:
        """Its replica was SIGKILLed while it ran."""
        return any(r == seen.replica and seen.started <= t <= seen.ended for r, t in self.kills)


# ------------------------------------------------------------------------------ requests


def _prompt(rng: random.Random, stream: bool) -> tuple[str, str, int | None]:
    """(scenario, prompt, max_tokens)."""
    roll = rng.random()
    n = rng.randint(5, 30)
    if roll < 0.66:
        return "normal", f"[[words:{n}]] chaos", None
    if roll < 0.73:
        return "midstream_error", "[[words:20]] [[midstream-error]] chaos", None
    if roll < 0.78:
        if stream:
            return "error_only_stream", "[[words:0]] [[midstream-error]] chaos", None
        return "vendor_500", "[[error:500]] chaos", None
    if roll < 0.82:
        return "length", "[[words:40]] chaos", 5
    if roll < 0.88:
        return "disconnect_mid", "[[words:30]] [[delay:30]] chaos", None
    if roll < 0.94:
        return "disconnect_early", "[[first-delay:1500]] [[words:10]] chaos", None
    return "cut", "[[words:20]] [[cut]] chaos", None


def _request(api: str, model: str, prompt: str, stream: bool, max_tokens: int | None) -> Any:
    """(path, json body) in the client API's own format."""
    cap = max_tokens or 200
    if api == "anthropic":
        body = {
            "model": model,
            "max_tokens": cap,
            "stream": stream,
            "messages": [{"role": "user", "content": prompt}],
        }
        return "/api/proxy/v1/messages", body
    if api == "chat":
        body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": prompt}]}
        if max_tokens:
            body["max_tokens"] = max_tokens
        return "/api/proxy/v1/chat/completions", body
    if api == "responses":
        body = {"model": model, "stream": stream, "input": prompt, "max_output_tokens": cap}
        return "/api/proxy/v1/responses", body
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    body = {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "generationConfig": {"maxOutputTokens": cap},
    }
    return f"/api/proxy/v1beta/models/{model}:{method}", body


async def one_request(
    run: Run, client: httpx.AsyncClient, i: int, key: str, rng: random.Random
) -> Seen:
    api = APIS[i % 4]
    stream = rng.random() < 0.6
    scenario, prompt, max_tokens = _prompt(rng, stream)
    model = MODELS[rng.randrange(len(MODELS))]
    seen = Seen(f"chaos-{uuid.uuid4().hex}", api, stream, scenario)
    path, body = _request(api, model, prompt, stream, max_tokens)
    live = [r for r, ok in enumerate(run.alive) if ok] or [0]
    seen.replica = live[i % len(live)]
    headers = {
        "authorization": f"Bearer {key}",
        "x-api-key": key,
        "x-goog-api-key": key,
        "anthropic-version": "2023-06-01",
        "x-claude-code-session-id": seen.session,
    }
    # Gone before the first byte: the status line comes with the first output, 1.5 s later.
    timeout = 0.6 if scenario == "disconnect_early" else 30.0
    seen.started = time.monotonic()
    try:
        async with client.stream(
            "POST", run.urls[seen.replica] + path, json=body, headers=headers, timeout=timeout
        ) as resp:
            seen.status = resp.status_code
            got = b""
            async for chunk in resp.aiter_bytes():
                got += chunk
                if b"w1" in got:
                    seen.delivered = True
                if scenario == "disconnect_mid" and stream and seen.delivered:
                    break  # the client leaves mid-stream
            if resp.status_code == 200 and not stream and b"w1" in got:
                seen.delivered = True
    except httpx.HTTPError as exc:
        seen.failure = type(exc).__name__
    finally:
        seen.ended = time.monotonic()
    return seen


async def drive(run: Run, keys: list[str], total: int, concurrency: int) -> list[Seen]:
    rng = random.Random(21)
    results: list[Seen] = []
    counter = iter(range(total))
    events = {int(total * 0.3): ("kill", 1), int(total * 0.5): ("pause", 0)}
    events[int(total * 0.7)] = ("kill", 2)
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency)

    happening: list[asyncio.Task[None]] = []

    async def worker(client: httpx.AsyncClient) -> None:
        for i in counter:
            if i in events:
                happening.append(asyncio.create_task(chaos_event(run, *events[i])))
            results.append(await one_request(run, client, i, keys[i % len(keys)], rng))
            if i % 500 == 0:
                print(f"  {i} requests", flush=True)

    async with httpx.AsyncClient(limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    await asyncio.gather(*happening)  # the last restart
    return results


async def chaos_event(run: Run, what: str, replica: int) -> None:
    if what == "pause":
        port = run.env["TOKENRELAY_REDIS_URL"].rsplit(":", 1)[1].split("/")[0]
        subprocess.run(["redis-cli", "-p", port, "client", "pause", "5000", "ALL"], check=True)
        print("  Redis paused for 5 s", flush=True)
        return
    run.alive[replica] = False
    run.kills.append((replica, time.monotonic()))
    run.procs[replica].send_signal(signal.SIGKILL)
    run.procs[replica].wait()
    print(f"  replica {replica} SIGKILLed", flush=True)
    await asyncio.sleep(2.0)
    run.procs[replica] = await asyncio.to_thread(start_replica, run, replica)
    run.alive[replica] = True
    print(f"  replica {replica} restarted", flush=True)


# ------------------------------------------------------------------------------ processes


def start_replica(run: Run, replica: int) -> subprocess.Popen[bytes]:
    port = int(run.urls[replica].rsplit(":", 1)[1])
    log = (run.log_dir / f"replica{replica}.log").open("ab")
    proc = subprocess.Popen(
        [str(TOKENRELAY), "serve", "--port", str(port)],
        env=run.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{run.urls[replica]}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"replica {replica} did not start: see {run.log_dir}")


async def pg(sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


# ------------------------------------------------------------------------------ the audit


def exact_nano(usage: ir.UsageTotals, model: str, catalog: Catalog) -> Fraction:
    entry = catalog.get(model)
    assert entry is not None
    r = entry.price.for_prompt(usage.prompt_total)
    written_5m = max(usage.cache_write - usage.cache_write_1h, 0)
    per_million = (
        usage.input * Fraction(r.input)
        + usage.output * Fraction(r.output)
        + usage.cache_read * Fraction(r.cache_read)
        + written_5m * Fraction(r.cache_write)
        + usage.cache_write_1h * Fraction(r.cache_write_1h)
    )
    return per_million * 1000


def declared_cost(row: Any, catalog: Catalog, billing_policy: str) -> int:
    """The record's cost as the policy table and the catalog say, recomputed exactly (list
    prices: the run's accounts have no price group)."""
    usage = ir.UsageTotals(
        input=row["input_tokens"],
        output=row["output_tokens"],
        cache_read=row["cache_read_tokens"],
        cache_write=row["cache_write_tokens"],
        cache_write_1h=row["cache_write_1h_tokens"],
    )
    charge = policy.RULES[policy.Outcome(row["reason"])].charge(billing_policy)
    if charge is policy.Charge.NOTHING:
        return 0
    if charge is policy.Charge.INPUT:
        usage.output = 0
    return math.floor(exact_nano(usage, row["model"], catalog) + Fraction(1, 2))


async def audit(run: Run, seen: list[Seen], billing_policy: str) -> dict[str, Any]:
    import asyncpg  # type: ignore[import-untyped]
    from redis.asyncio import Redis

    from tokenrelay.billing.holds import RedisHolds

    dsn = run.env["TOKENRELAY_DATABASE_URL"]
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT * FROM usage_records WHERE session_id LIKE 'chaos-%'")
        db_balances = dict(await conn.fetch("SELECT id, balance_nano FROM accounts"))
    finally:
        await conn.close()
    redis = Redis.from_url(run.env["TOKENRELAY_REDIS_URL"])
    try:

        async def unused(_: str) -> int:
            raise AssertionError("only loaded balances are read")

        holds = RedisHolds(redis, unused)
        cached = await holds.balances()
        held = await holds.held_total()
        open_holds = 0
        async for _ in redis.scan_iter(match="tokenrelay:holds:*"):
            open_holds += 1
    finally:
        await redis.aclose()
    diffs = [balance - int(db_balances.get(a, 0)) for a, balance in cached.items()]
    catalog = Catalog.load()
    by_session = {s.session: s for s in seen}
    off_table = beyond = killed = 0
    examples: list[str] = []
    reasons: Counter[str] = Counter()
    for row in rows:
        reasons[row["reason"]] += 1
        if row["cost_nano"] != declared_cost(row, catalog, billing_policy):
            off_table += 1
        client = by_session.get(row["session_id"])
        if client is not None and row["cost_nano"] > 0 and not client.delivered:
            if run.killed_during(client) and client.failure:
                killed += 1
            else:
                beyond += 1
                examples.append(
                    f"{client.api} stream={client.stream} {client.scenario} saw "
                    f"{client.failure or client.status}: {row['reason']} cost {row['cost_nano']}"
                )
    return {
        "records": len(rows),
        "reasons": dict(reasons.most_common()),
        "redis_minus_db_nano": sum(diffs),
        "redis_db_abs_nano": sum(abs(d) for d in diffs),
        "accounts_in_redis": len(cached),
        "held_nano": held,
        "hold_hashes": open_holds,
        "cost_not_as_declared": off_table,
        "billed_without_output": beyond,
        "billed_in_kill_window": killed,
        "examples": examples[:10],
        "unrecorded": Counter(
            f"{s.scenario}/{'stream' if s.stream else 'unary'}/{s.failure or s.status}"
            for s in seen
            if s.session not in {row["session_id"] for row in rows}
        ).most_common(),
    }


# ------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=24)
    args = parser.parse_args()
    asyncio.run(chaos(args.requests, args.concurrency))


async def chaos(total: int, concurrency: int) -> None:
    tag = uuid.uuid4().hex[:8]
    log_dir = Path(f"/tmp/tokenrelay-chaos-{tag}")
    log_dir.mkdir()
    db = f"tokenrelay_chaos_{tag}"
    redis_port = free_port()
    redis_proc = subprocess.Popen(
        [
            *("redis-server", "--port", str(redis_port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(log_dir)),
        ],
        stdout=subprocess.DEVNULL,
    )
    await pg(f'CREATE DATABASE "{db}"')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENRELAY_")}
    env |= {
        "TOKENRELAY_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{db}",
        "TOKENRELAY_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "TOKENRELAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "TOKENRELAY_EMULATE": "all",
        "TOKENRELAY_LOG_LEVEL": "warning",
    }
    billing_policy = env.get("TOKENRELAY_BILLING_POLICY", policy.DEFAULT_POLICY)
    urls = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]
    run = Run(urls, [], env, log_dir, alive=[True] * 3)
    try:
        for replica in range(3):  # the first one migrates the database
            run.procs.append(await asyncio.to_thread(start_replica, run, replica))
        keys = []
        async with httpx.AsyncClient(timeout=30) as admin:
            for k in range(KEYS):
                r = await admin.post(
                    f"{urls[0]}/admin/v1/keys",
                    headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
                    json={"name": f"chaos-{k}", "credits_usd": "500.00"},
                )
                r.raise_for_status()
                keys.append(r.json()["key"])
        print(f"chaos: {total} requests, 3 replicas, logs in {log_dir}", flush=True)
        started = time.monotonic()
        seen = await drive(run, keys, total, concurrency)
        elapsed = time.monotonic() - started
        await asyncio.sleep(10.0)  # then: holds left, Redis against the database
        figures = await audit(run, seen, billing_policy)
        verify = subprocess.run(
            [str(TOKENRELAY), "ledger", "verify"], env=env, capture_output=True, text=True
        )
        report(seen, figures, verify, elapsed, billing_policy)
    finally:
        for proc in run.procs:
            proc.terminate()
        for proc in run.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        redis_proc.terminate()
        redis_proc.wait()
        await pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def report(
    seen: list[Seen],
    f: dict[str, Any],
    verify: subprocess.CompletedProcess[str],
    elapsed: float,
    billing_policy: str,
) -> None:
    by_api = Counter(s.api for s in seen)
    outcomes = Counter(
        s.failure or (f"HTTP {s.status}" if s.status != 200 else "200") for s in seen
    )
    print()
    print(f"requests: {len(seen)} in {elapsed:.0f} s ({len(seen) / elapsed:.0f}/s); by API:")
    print("  " + ", ".join(f"{api} {n}" for api, n in sorted(by_api.items())))
    print("  client saw: " + ", ".join(f"{k} {n}" for k, n in outcomes.most_common()))
    print(f"  streams {sum(s.stream for s in seen)}; scenarios: ", end="")
    print(", ".join(f"{k} {n}" for k, n in Counter(s.scenario for s in seen).most_common()))
    print(f"usage records: {f['records']}; reasons: {f['reasons']}")
    print(f"billing policy: {billing_policy}")
    print()
    print(f"Redis - database balance:      {f['redis_minus_db_nano']} nano "
          f"(|per account| summed: {f['redis_db_abs_nano']}; "
          f"{f['accounts_in_redis']} accounts)")  # fmt: skip
    print(f"holds left 10 s after the end: {f['held_nano']} nano")
    beyond = f["cost_not_as_declared"] + f["billed_without_output"]
    print(f"billed beyond the policy:      {beyond} "
          f"(cost not the table's: {f['cost_not_as_declared']}; "
          f"billed with no output delivered: {f['billed_without_output']})")  # fmt: skip
    for example in f["examples"]:
        print(f"  {example}")
    print(f"billed, answer lost to a SIGKILL after its commit: {f['billed_in_kill_window']}")
    print(f"requests without a usage record (scenario/mode/client saw): {f['unrecorded']}")
    verdict = "ok" if verify.returncode == 0 else verify.stdout.strip()[-2000:]
    print(f"ledger verify: {verdict}")
    print()
    print(policy.render_markdown())


if __name__ == "__main__":
    main()
