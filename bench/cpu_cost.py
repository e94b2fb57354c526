"""Gateway CPU per request, billing on and off: `python -m bench.cpu_cost [--rounds 3]`.

req/s on this VM moves ±25% with CPU steal; the gateway's own CPU time per request (utime +
stime of its process, /proc) does not, so this is the figure to optimise the hot path against.
Both variants run side by side (one core each is not possible: they alternate, pinned to the
gateway core), wrk at c=64 on the other core, several short rounds, medians reported.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench import contenders as cmod
from bench import loadgen, phases, proc
from bench.procstats import tree_cpu_s


def measure(c: cmod.Contender, scenario: str, seconds: float) -> tuple[float, float]:
    """(gateway CPU µs per request, req/s) over one wrk run."""
    assert c.pid is not None
    before = tree_cpu_s(c.pid)
    res = loadgen.wrk(c.target(scenario), 64, seconds)
    used = tree_cpu_s(c.pid) - before
    if res["errors"]:
        raise RuntimeError(f"{c.name}: {res['errors']} errors: {res['error_kinds']}")
    return used * 1e6 / max(res["requests"], 1), res["rps"]


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.cpu_cost", description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--scenario", default="openai", choices=cmod.SCENARIOS)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tokenrelay-cpu-") as tmp:
        mock, port = phases.start_mock(Path(tmp))
        ctx = cmod.Ctx(mock_port=port, workdir=Path(tmp))
        variants = [cmod.make("tokenrelay", True), cmod.make("tokenrelay-nobilling", True)]
        samples: dict[str, list[tuple[float, float]]] = {v.name: [] for v in variants}
        try:
            for v in variants:
                v.start(ctx)
                loadgen.wrk(v.target(args.scenario), 64, 2)  # warm-up
            for _ in range(args.rounds):
                for v in variants:
                    samples[v.name].append(measure(v, args.scenario, args.seconds))
                    time.sleep(0.5)
        finally:
            for v in variants:
                v.stop()
            proc.stop(mock)
    med = {n: (statistics.median(s[0] for s in xs), statistics.median(s[1] for s in xs))
           for n, xs in samples.items()}  # fmt: skip
    for name, (us, rps) in med.items():
        print(f"{name:22s} {us:7.1f} µs CPU/request   {rps:8.0f} req/s   ({args.scenario})")
    on, off = med["tokenrelay"][0], med["tokenrelay-nobilling"][0]
    print(f"billing costs {on - off:.1f} µs/request: on÷off req/s at equal CPU = {off / on:.3f}")


if __name__ == "__main__":
    main()
