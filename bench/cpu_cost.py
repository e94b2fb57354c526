"""Gateway CPU per request, billing on and off: `python -m bench.cpu_cost [--rounds 3]`.

req/s on this VM moves ±25% with CPU steal; the gateway's own CPU time per request (utime +
stime of its process, /proc) does not, so this is the figure to optimise the hot path against.
Both variants run side by side (one core each is not possible: they alternate, pinned to the
gateway core), wrk at c=64 on the other core, several short rounds, medians reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench import contenders as cmod
from bench import loadgen, phases, proc
from bench.procstats import tree_cpu_s

_TICK = os.sysconf("SC_CLK_TCK")


def main_thread_cpu_s(pid: int) -> float:
    """CPU seconds of the process's main thread (the event loop; the rest is helper threads,
    such as the settlement journal's commit thread)."""
    with open(f"/proc/{pid}/task/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


Sample = tuple[float, float, float]  # CPU µs per request: all, main thread; req/s


def measure(c: cmod.Contender, scenario: str, seconds: float) -> Sample:
    """One wrk run against `c`."""
    assert c.pid is not None
    before, main_before = tree_cpu_s(c.pid), main_thread_cpu_s(c.pid)
    res = loadgen.wrk(c.target(scenario), 64, seconds)
    used, main_used = tree_cpu_s(c.pid) - before, main_thread_cpu_s(c.pid) - main_before
    if res["errors"]:
        raise RuntimeError(f"{c.name}: {res['errors']} errors: {res['error_kinds']}")
    n = max(res["requests"], 1)
    return used * 1e6 / n, main_used * 1e6 / n, res["rps"]


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
        samples: dict[str, list[Sample]] = {v.name: [] for v in variants}
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
    med = {n: [statistics.median(s[i] for s in xs) for i in range(3)] for n, xs in samples.items()}
    for name, (us, main_us, rps) in med.items():
        print(
            f"{name:22s} {us:7.1f} µs CPU/request ({main_us:.1f} in the event loop's thread)"
            f"   {rps:8.0f} req/s   ({args.scenario})"
        )
    on, off = med["tokenrelay"][0], med["tokenrelay-nobilling"][0]
    print(f"billing costs {on - off:.1f} µs/request: on÷off req/s at equal CPU = {off / on:.3f}")


if __name__ == "__main__":
    main()
