"""Stream tails and memory against nginx, in one short run: `python -m bench.tails`.

For each contender (nginx, then tokenrelay with billing on), pinned as in the main run:
- idle RSS, a second after start (tokenrelay: after its first request);
- c256: wrk with 256 connections of 64-chunk streams (no delay between chunks), whole-answer
  latency p99;
- the ramp: `--streams` streams (default 3,000) of 64 chunks 20 ms apart, 1,000 at a time,
  opened over 1 s, time to first chunk p99 and the gateway's peak RSS.
Every figure is given as tokenrelay ÷ nginx from the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import contenders as cmod
from bench import loadgen, phases, proc
from bench.procstats import tree_rss_mb


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


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.tails", description=__doc__)
    ap.add_argument("--streams", type=int, default=3000)
    args = ap.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="tokenrelay-tails-") as tmp:
        mock, port = phases.start_mock(Path(tmp))
        ctx = cmod.Ctx(mock_port=port, workdir=Path(tmp))
        try:
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
