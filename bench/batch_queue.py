"""Which job queue runs batch lines (issue 24 item 3): our own claim loop against procrastinate
(PostgreSQL) and saq (Redis), each integrated as tokenrelay would use it — the lines' state in
our `batch_lines` rows (claimed and recorded by `BatchStore`), the queue only dispatching jobs
(a job per line, or per chunk of lines), noticing dead workers and retrying their jobs.

    .venv/bin/python -m bench.batch_queue [--lines 10000] [--modes loop,procrastinate-chunk,...]
                                          [--kill] [--vendor-ms 20] [--concurrency 16]

Each mode runs a batch of `--lines` lines in a worker process (a line: a stand-in vendor call
of `--vendor-ms`, then its result recorded in batch_lines as the runner records them, several
ended lines per transaction). `--kill`: the worker is SIGKILLed half-way and a new one started;
every line's start is logged by the worker with an unbuffered write, so a line run twice (it
was in flight at the kill, or its end was not yet recorded) and a line never finished are
counted. Figures per mode: wall time, the worker processes' CPU and peak RSS, PostgreSQL
transactions (pg_stat_database.xact_commit of the bench database: nothing else uses it),
Redis commands (counted in the clients), and the time from the kill until the dead worker's
lines ran again.

Dead-worker detection, as each would run in production but with shorter timings here (the
figures give them): the loop's lease (`_LEASE`: 15 min in jobs.py, above the vendor call's
timeout, since it cannot tell a dead runner from a slow call; `--lease` here), procrastinate's
worker heartbeats (`--stalled` s) and saq's job heartbeats (`--stalled` s, swept as often).

Needs PostgreSQL at 127.0.0.1 (database `queue_bench`, created if missing) and Redis db 5.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

PG = "postgresql://postgres@127.0.0.1:5432/queue_bench"
REDIS = "redis://127.0.0.1:6379/5"
MODES = [
    "loop",
    "procrastinate-line",
    "procrastinate-chunk",
    "saq-line",
    "saq-chunk",
]
BATCH = "batch_bench"
CHUNK = 100  # lines per job in the -chunk modes
HZ = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- shared: store and recorder


class Recorder:
    """Ended lines recorded like jobs.BatchJobs._flush: whatever ended since the last write,
    in one transaction."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.done: list[int] = []
        self.wake = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    def add(self, line_id: int) -> None:
        self.done.append(line_id)
        self.wake.set()

    async def _run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            await self.flush()

    async def flush(self) -> None:
        done, self.done = self.done, []
        if done:
            await self.store.record((i, "succeeded", 200, "{}", 1) for i in done)


class Runner:
    """What every mode does with a claimed line: log its start, wait like a vendor call,
    hand it to the recorder."""

    def __init__(self, store: Any, vendor_s: float, log_path: str) -> None:
        self.store = store
        self.vendor_s = vendor_s
        self.fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self.recorder = Recorder(store)

    async def line(self, line_id: int) -> None:
        os.write(self.fd, f"{line_id}\n".encode())
        await asyncio.sleep(self.vendor_s)
        self.recorder.add(line_id)

    async def claim_range(self, first: int, last: int, retry: bool) -> list[int]:
        """A job's lines still to run (a retried job's also those its dead worker held)."""
        from sqlalchemy import update

        from tokenrelay.batches.store import PENDING, RUNNING, now
        from tokenrelay.store.tables import batch_lines

        statuses = (PENDING, RUNNING) if retry else (PENDING,)
        q = (
            update(batch_lines)
            .where(
                batch_lines.c.batch_id == BATCH,
                batch_lines.c.line_no.between(first, last),
                batch_lines.c.status.in_(statuses),
            )
            .values(status=RUNNING, claimed_at=now())
            .returning(batch_lines.c.id)
        )
        async with self.store.engine.begin() as conn:
            return sorted(r.id for r in (await conn.execute(q)).all())

    async def job(self, first: int, last: int, retry: bool) -> None:
        for line_id in await self.claim_range(first, last, retry):
            await self.line(line_id)


def _redis_counter() -> Counter[str]:
    """Counts every Redis command this process sends (pipelines count their commands)."""
    import redis.asyncio.client as rc

    counts: Counter[str] = Counter()
    execute = rc.Redis.execute_command
    pipe = rc.Pipeline.execute

    async def counted(self: Any, *args: Any, **kw: Any) -> Any:
        counts["redis"] += 1
        return await execute(self, *args, **kw)

    async def counted_pipe(self: Any, *args: Any, **kw: Any) -> Any:
        counts["redis"] += max(len(self.command_stack), 1)
        counts["redis_round_trips"] += 1
        return await pipe(self, *args, **kw)

    rc.Redis.execute_command = counted  # type: ignore[method-assign]
    rc.Pipeline.execute = counted_pipe  # type: ignore[method-assign]
    return counts


# ---------------------------------------------------------------- the worker process


async def worker(mode: str, args: argparse.Namespace, log_path: str) -> None:
    from tokenrelay.batches.store import BatchStore
    from tokenrelay.store.db import create_engine

    counts = _redis_counter()
    engine = create_engine(PG)
    store = BatchStore(engine)
    run = Runner(store, args.vendor_ms / 1000, log_path)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    stats = Path(log_path + ".redis")

    async def report() -> None:
        while True:
            stats.write_text(json.dumps(counts))
            await asyncio.sleep(0.2)

    reporter = asyncio.create_task(report())
    if mode == "loop":
        await _loop_worker(run, store, args, stop)
    elif mode.startswith("procrastinate"):
        await _procrastinate_worker(run, args, stop)
    else:
        await _saq_worker(run, args, stop)
    reporter.cancel()
    stats.write_text(json.dumps(counts))
    await engine.dispose()


async def _loop_worker(run: Runner, store: Any, args: argparse.Namespace, stop: Any) -> None:
    """jobs.BatchJobs._run's shape: claim up to the free slots (SKIP LOCKED), run, and on
    each housekeeping round release lines claimed longer ago than the lease."""
    import datetime as dt

    from tokenrelay.batches.store import now

    inflight: set[asyncio.Task[None]] = set()
    wake = asyncio.Event()
    last_housekeeping = 0.0
    while not stop.is_set():
        if time.monotonic() - last_housekeeping > min(args.lease / 2, 10):
            last_housekeeping = time.monotonic()
            await store.release_stale(now() - dt.timedelta(seconds=args.lease))
        free = args.concurrency - len(inflight)
        claimed = await store.claim(free) if free > 0 else []
        for line in claimed:
            task = asyncio.create_task(run.line(line.id))
            inflight.add(task)
            task.add_done_callback(lambda t: (inflight.discard(t), wake.set()))
        if claimed and free > len(claimed):
            continue
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), 0.5)


def procrastinate_app(args: argparse.Namespace, run: Runner | None = None) -> Any:
    import procrastinate

    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=PG, min_size=1, max_size=4)
    )

    @app.task(name="line_range", pass_context=True)
    async def line_range(context: Any, first: int, last: int) -> None:
        assert run is not None
        await run.job(first, last, retry=context.job.attempts > 0)

    @app.periodic(cron="* * * * * */2")  # the stalled-job sweep, as production would run it
    @app.task(name="retry_stalled", queueing_lock="retry_stalled", pass_context=True)
    async def retry_stalled(context: Any, timestamp: int) -> None:
        for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=args.stalled):
            await app.job_manager.retry_job(job)

    return app


async def _procrastinate_worker(run: Runner, args: argparse.Namespace, stop: Any) -> None:
    app = procrastinate_app(args, run)
    async with app.open_async():
        task = asyncio.create_task(
            app.run_worker_async(
                concurrency=args.concurrency,
                install_signal_handlers=False,
                update_heartbeat_interval=max(args.stalled / 3, 0.5),
                stalled_worker_timeout=args.stalled,
                delete_jobs="successful",
            )
        )
        await stop.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def saq_queue() -> Any:
    from saq import Queue

    return Queue.from_url(REDIS, name="bench")


async def _saq_worker(run: Runner, args: argparse.Namespace, stop: Any) -> None:
    from saq import Worker

    queue = saq_queue()

    async def line_range(ctx: Any, *, first: int, last: int) -> None:
        job = ctx["job"]

        async def touch() -> None:  # the job's heartbeat: a line may take minutes
            while True:
                await asyncio.sleep(max(args.stalled / 3, 0.5))
                await job.update()

        toucher = asyncio.create_task(touch())
        try:
            await run.job(first, last, retry=job.attempts > 1)
        finally:
            toucher.cancel()

    w = Worker(
        queue,
        functions=[("line_range", line_range)],
        concurrency=args.concurrency,
        timers={"sweep": max(int(args.stalled / 2), 1)},
    )
    task = asyncio.create_task(w.start())
    await stop.wait()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(w.stop(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


# ---------------------------------------------------------------- the parent


async def _setup(lines: int) -> None:
    """Fresh batch_lines (and queue state) holding one batch of `lines` pending lines."""
    import asyncpg

    from tokenrelay.batches.store import BatchStore, NewLine, now
    from tokenrelay.store.db import create_engine, migrate_async

    await migrate_async(PG)  # procrastinate's schema too (0018)
    conn = await asyncpg.connect(PG)
    try:
        await conn.execute(
            "TRUNCATE batch_lines, batches, procrastinate_jobs, procrastinate_workers CASCADE"
        )
    finally:
        await conn.close()
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(REDIS)
    await r.flushdb()
    await r.aclose()
    engine = create_engine(PG)
    created = now()
    row = {
        "id": BATCH,
        "api": "openai",
        "account_id": "a",
        "key_id": "k",
        "endpoint": "/v1/chat/completions",
        "status": "in_progress",
        "multiplier_ppm": 1_000_000,
        "hold_nano": 0,
        "total": lines,
        "meta": {},
        "created_at": created,
        "expires_at": created,
    }
    await BatchStore(engine).create(row, [NewLine(f"c{i}", "{}") for i in range(lines)])
    await engine.dispose()


async def _enqueue(mode: str, lines: int, args: argparse.Namespace) -> int:
    """The batch's jobs, deferred as batch creation would; Redis commands sent."""
    size = CHUNK if mode.endswith("-chunk") else 1
    ranges = [(s, min(s + size, lines) - 1) for s in range(0, lines, size)]
    if mode.startswith("procrastinate"):
        app = procrastinate_app(args)
        async with app.open_async():
            task = app.tasks["line_range"]
            await task.batch_defer_async(*({"first": a, "last": b} for a, b in ranges))
        return 0
    if mode.startswith("saq"):
        counts = _redis_counter()
        queue = saq_queue()
        await queue.connect()
        from saq import Job

        batch = 1000  # what one pipeline carries
        for start in range(0, len(ranges), batch):
            async with queue.batch():
                await asyncio.gather(
                    *(
                        queue.enqueue(Job("line_range", kwargs={"first": a, "last": b}, retries=5))
                        for a, b in ranges[start : start + batch]
                    )
                )
        await queue.disconnect()
        return counts["redis"]
    return 0


async def _pg_scalar(sql: str) -> Any:
    import asyncpg

    conn = await asyncpg.connect(PG)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def _xacts() -> int:
    return int(
        asyncio.run(
            _pg_scalar(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database "
                "WHERE datname = 'queue_bench'"
            )
        )
    )


def _done() -> int:
    return int(
        asyncio.run(_pg_scalar("SELECT count(*) FROM batch_lines WHERE status = 'succeeded'"))
    )


def _proc_stats(pid: int) -> tuple[float, float]:
    """CPU seconds and peak RSS (MB) of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / HZ
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            rss = int(line.split()[1]) / 1024
    return cpu, rss


def measure(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    asyncio.run(_setup(args.lines))
    tmp = Path(tempfile.mkdtemp(prefix="tr-queue-"))
    xacts0 = _xacts()
    t0 = time.perf_counter()
    redis_enqueue = asyncio.run(_enqueue(mode, args.lines, args))
    enqueue_s = time.perf_counter() - t0
    cpu = peak = 0.0
    logs: list[Path] = []

    def start() -> subprocess.Popen[bytes]:
        log = tmp / f"w{len(logs)}.log"
        logs.append(log)
        argv = [sys.executable, "-m", "bench.batch_queue", "--worker", mode, "--log", str(log)]
        argv += sys.argv[1:]
        return subprocess.Popen(argv, cwd=Path(__file__).resolve().parent.parent)

    proc = start()
    killed_at = recovered_s = None
    while True:
        time.sleep(0.1)
        done = _done()
        c, p = _proc_stats(proc.pid)
        if args.kill and killed_at is None and done >= args.lines // 2:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            cpu, peak = cpu + c, max(peak, p)
            killed_at, done_at_kill = time.perf_counter(), done
            held = set(_read(logs[0]).split())  # started before the kill
            proc = start()
            continue
        if killed_at is not None and recovered_s is None:
            orphans = held - set(_succeeded_ids())
            runs = Counter(_read(logs[-1]).split())
            if not orphans or all(runs[i] for i in orphans):
                recovered_s = time.perf_counter() - killed_at
        if done >= args.lines:
            break
        if time.perf_counter() - t0 > args.timeout:
            break
    wall = time.perf_counter() - t0
    c, p = _proc_stats(proc.pid)
    cpu, peak = cpu + c, max(peak, p)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    xacts = _xacts() - xacts0
    runs = Counter(x for log in logs for x in _read(log).split())
    redis_cmds = redis_enqueue + sum(
        json.loads(Path(str(log) + ".redis").read_text()).get("redis", 0)
        for log in logs
        if Path(str(log) + ".redis").exists()
    )
    return {
        "mode": mode,
        "lines": args.lines,
        "enqueue_s": round(enqueue_s, 2),
        "wall_s": round(wall, 2),
        "worker_cpu_s": round(cpu, 2),
        "worker_peak_rss_mb": round(peak, 1),
        "pg_transactions": xacts,
        "redis_commands": redis_cmds,
        "lost": args.lines - _done(),
        "run_twice": sum(1 for n in runs.values() if n > 1),
        **(
            {"done_at_kill": done_at_kill, "recovered_after_kill_s": _round(recovered_s)}
            if killed_at is not None
            else {}
        ),
    }


def _read(log: Path) -> str:
    return log.read_text() if log.exists() else ""  # a worker just started writes it soon


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def _succeeded_ids() -> list[str]:
    async def q() -> list[str]:
        import asyncpg

        conn = await asyncpg.connect(PG)
        try:
            rows = await conn.fetch("SELECT id FROM batch_lines WHERE status = 'succeeded'")
            return [str(r["id"]) for r in rows]
        finally:
            await conn.close()

    return asyncio.run(q())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--kill", action="store_true")
    ap.add_argument("--vendor-ms", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--lease", type=float, default=30.0, help="the loop's lease, s")
    ap.add_argument("--stalled", type=float, default=6.0, help="heartbeat timeout, s")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--log", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        asyncio.run(worker(args.worker, args, args.log))
        return
    for mode in args.modes.split(","):
        print(json.dumps(measure(mode, args)), flush=True)


if __name__ == "__main__":
    main()
