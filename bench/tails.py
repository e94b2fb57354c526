"""Stream tails and memory against nginx, in one short run: `python -m bench.tails`.

For each contender (nginx, then tokenrelay with billing on), pinned as in the main run:
- idle RSS, a second after start (tokenrelay: after its first request);
- c256: wrk with 256 connections of 64-chunk streams (no delay between chunks), whole-answer
  latency p99;
- the ramp: `--streams` streams (default 3,000) of 64 chunks 20 ms apart, 1,000 at a time,
  opened over 1 s, time to first chunk p99 and the gateway's peak RSS.
Every figure is given as tokenrelay ÷ nginx from the same run.

`--memory-only` measures tokenrelay's memory alone (no nginx): for each count in `--counts`
(default 0,250,500,1000) a fresh gateway, its idle RSS after its first request, then that many
`--scenario` streams (default openai) open at once (64 chunks `--interval-ms` apart, opened
over 1 s) and the peak RSS while they are open; KB per live stream is the least-squares slope
of peak over count; `--wait-ms 3000` has the vendor think 3 s before it answers (the streams'
requests all waiting on it at once). `--prompt-kb 40` sends a coding agent's request of about
40 KB (a long system prompt, a dozen tools, a session's history: bench/codex_prompt.py) instead of a
one-line prompt: what a live stream keeps of its request (up to ~100 KB: the body travels to
the load generator on its command line).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import contenders as cmod
from bench import loadgen, phases, proc
from bench.procstats import Monitor, tree_rss_mb


def run(c: cmod.Contender, ctx: cmod.Ctx, streams: int, mock_pid: int) -> dict[str, Any]:
    c.start(ctx)
    try:
        t = c.target("openai")
        loadgen.check(t, False)
        time.sleep(1)
        out: dict[str, Any] = {"idle_rss_mb": round(tree_rss_mb(c.pid), 1) if c.pid else None}
        loadgen.streams(t, 8, total=50)  # warm-up
        c256 = loadgen.wrk(t, 256, 5, marker=loadgen.stream_marker(64, 0))
        out["c256_p99_ms"] = c256["lat_ms"]["p99"]
        out["c256_errors"] = c256["errors"]
        ramp = phases.measured(
            c.pid,
            mock_pid,
            lambda: loadgen.streams(
                t, 1000, total=streams, chunks=64, interval_ms=20, ramp_ms=1000
            ),
        )
        out["ramp_ttfc_p99_ms"] = ramp["load"]["ttfc_ms"]["p99"]
        out["ramp_errors"] = ramp["load"]["errors"]
        if ramp["gateway"]:
            out["ramp_rss_peak_mb"] = ramp["gateway"]["rss_peak_mb"]
        return out
    finally:
        c.stop()


def held_streams(
    c: cmod.Contender,
    ctx: cmod.Ctx,
    n: int,
    interval_ms: int,
    scenario: str = "openai",
    prompt_kb: int = 0,
    wait_ms: int = 0,
) -> dict[str, Any]:
    """A fresh gateway's idle RSS, then its peak RSS while `n` slow streams are open at once
    (each first waiting `wait_ms` on the vendor, when set)."""
    c.start(ctx)
    try:
        assert c.pid is not None
        t = dataclasses.replace(c.target(scenario), prompt_kb=prompt_kb)
        loadgen.check(t, True)
        time.sleep(1)
        out: dict[str, Any] = {"streams": n, "idle_rss_mb": round(tree_rss_mb(c.pid), 1)}
        if n:
            with Monitor(c.pid, interval=0.1) as gw:
                load = loadgen.streams(
                    t, n, total=n, chunks=64, interval_ms=interval_ms, ramp_ms=1000, wait_ms=wait_ms
                )
            out |= {"peak_rss_mb": round(gw.result.rss_peak_mb, 1), "errors": load["errors"]}
        return out
    finally:
        c.stop()


def memory(
    ctx: cmod.Ctx, counts: list[int], interval_ms: int, scenario: str, prompt_kb: int, wait_ms: int
) -> None:
    rows = []
    for n in counts:
        c = cmod.make("tokenrelay", True)
        rows.append(held_streams(c, ctx, n, interval_ms, scenario, prompt_kb, wait_ms))
        print(rows[-1], flush=True)
    idle = statistics.median(r["idle_rss_mb"] for r in rows)
    loaded = [(r["streams"], r.get("peak_rss_mb", r["idle_rss_mb"])) for r in rows]
    print(f"tokenrelay RSS: idle {idle} MB (median of {len(rows)} starts)")
    if len({n for n, _ in loaded}) > 1:
        slope, intercept = statistics.linear_regression(*zip(*loaded, strict=True))
        print(f"per live stream {slope * 1024:.1f} KB (peak = {intercept:.1f} MB + n × slope); "
              + ", ".join(f"{n}: {mb} MB" for n, mb in loaded))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.tails", description=__doc__)
    ap.add_argument("--streams", type=int, default=3000)
    ap.add_argument("--memory-only", action="store_true")
    ap.add_argument("--counts", default="0,250,500,1000")
    ap.add_argument("--interval-ms", type=int, default=100)
    ap.add_argument("--scenario", default="openai", choices=cmod.SCENARIOS)
    ap.add_argument("--prompt-kb", type=int, default=0, help="a coding agent's body of ~N KB")
    ap.add_argument("--wait-ms", type=int, default=0, help="the vendor thinks N ms first")
    args = ap.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="tokenrelay-tails-") as tmp:
        mock, port = phases.start_mock(Path(tmp))
        ctx = cmod.Ctx(mock_port=port, workdir=Path(tmp))
        try:
            if args.memory_only:
                counts = [int(n) for n in args.counts.split(",")]
                memory(ctx, counts, args.interval_ms, args.scenario, args.prompt_kb, args.wait_ms)
                return
            for name in ("nginx", "tokenrelay"):
                results[name] = run(cmod.make(name, True), ctx, args.streams, mock.pid)
                print(name, results[name], flush=True)
        finally:
            proc.stop(mock)
    tr, ng = results["tokenrelay"], results["nginx"]
    for k in ("c256_p99_ms", "ramp_ttfc_p99_ms"):
        if tr.get(k) and ng.get(k):
            print(f"{k}: tokenrelay {tr[k]} ÷ nginx {ng[k]} = {tr[k] / ng[k]:.2f}×")
    print(f"tokenrelay RSS: idle {tr['idle_rss_mb']} MB, peak at 1000 streams "
          f"{tr.get('ramp_rss_peak_mb')} MB")  # fmt: skip


if __name__ == "__main__":
    main()
