"""Where one request's latency goes at c=1: `python -m bench.critical_path [--scenario openai]`.

The added-latency cells (c=1) are wall time, but what the gateway adds to them is the CPU its
event loop spends between the client's bytes arriving and the answer's write. This runs the
gateway (billing on, SQLite, the Node mock) with bench/critical_path_hook/sitecustomize.py
loaded, which marks the loop thread's CPU clock at the path's edges (uvicorn's parse, the
app, our parse/decide/admit, the vendor write and read, settlement, the answer's write), drives
it with wrk c=1, and prints the median CPU µs of each span of a unary request, in path order.
Syscalls (the vendor write, the read behind `upstream_data`, the answer's write) are in the
spans around them. Every mark costs ~1 µs itself; a c=1 request runs with cold caches, so
each span reads several times its share of a c=64 profile (bench/results/flame-*.txt).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench import contenders as cmod
from bench import loadgen, phases, proc

HOOK = Path(__file__).parent / "critical_path_hook"


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.critical_path", description=__doc__)
    ap.add_argument("--scenario", default="openai", choices=["openai", "anthropic", "translated"])
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tokenrelay-critical-") as tmp:
        out = Path(tmp) / "spans.tsv"
        os.environ["BENCH_GATEWAY_PYTHONPATH"] = str(HOOK)
        os.environ["CRITICAL_PATH_OUT"] = str(out)
        mock, port = phases.start_mock(Path(tmp))
        c = cmod.make("tokenrelay", True)
        try:
            c.start(cmod.Ctx(mock_port=port, workdir=Path(tmp)))
            t = c.target(args.scenario)
            loadgen.check(t, False)
            r = loadgen.wrk(t, 1, args.seconds)
        finally:
            c.stop()
            proc.stop(mock)
        time.sleep(0.2)
        if not out.exists():
            raise SystemExit("no request was marked (did the hook load? see the gateway's log)")
        rows = [line.split("\t") for line in out.read_text().splitlines()]
    print(f"{args.scenario}: wrk c=1 p50 {r['lat_ms']['p50']} ms; loop CPU per span, median µs")
    for median, n, span in rows:
        print(f"{float(median):8.1f}  {span}  (n={n})")


if __name__ == "__main__":
    main()
