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
from collections.abc import Callable
from pathlib import Path

from bench import contenders as cmod
from bench import loadgen, phases, proc
from bench.procstats import cpu_s, tree_cpu_s

Sample = tuple[float, float, float]  # CPU µs per request: all, main thread; req/s


def measure(c: cmod.Contender, scenario: str, seconds: float) -> Sample:
    """One wrk run against `c`."""
    assert c.pid is not None
    # The main thread (its id is the pid) runs the event loop; the others are helpers, such
    # as the settlement journal's commit thread.
    before, main_before = tree_cpu_s(c.pid), cpu_s(c.pid, c.pid)
    res = loadgen.wrk(c.target(scenario), 64, seconds)
    used, main_used = tree_cpu_s(c.pid) - before, cpu_s(c.pid, c.pid) - main_before
    if res["errors"]:
        raise RuntimeError(f"{c.name}: {res['errors']} errors: {res['error_kinds']}")
    n = max(res["requests"], 1)
    return used * 1e6 / n, main_used * 1e6 / n, res["rps"]


def compare(
    ctx: cmod.Ctx, scenario: str, rounds: int, seconds: float, log: Callable[[str], None] = print
) -> dict[str, dict[str, float]]:
    """Billing on and off, started side by side, wrk rounds alternating between them (so the
    VM's drifting CPU steal hits both alike); medians per variant."""
    variants = [cmod.make("tokenrelay", True), cmod.make("tokenrelay-nobilling", True)]
    for v in variants:
        v.name += f"-ab-{scenario}"  # its own database file beside the main run's
    samples: dict[str, list[Sample]] = {v.name: [] for v in variants}
    try:
        for v in variants:
            v.start(ctx)
            loadgen.wrk(v.target(scenario), 64, 2)  # warm-up
        for i in range(rounds):
            for v in variants:
                samples[v.name].append(measure(v, scenario, seconds))
                time.sleep(0.5)
            log(f"    billing A/B [{scenario}] round {i + 1}/{rounds}")
    finally:
        for v in variants:
            v.stop()
    out: dict[str, dict[str, float]] = {}
    for v, label in zip(variants, ("on", "off"), strict=True):
        xs = samples[v.name]
        out[label] = {
            "cpu_us_per_request": round(statistics.median(x[0] for x in xs), 1),
            "main_thread_cpu_us_per_request": round(statistics.median(x[1] for x in xs), 1),
            "rps": round(statistics.median(x[2] for x in xs), 1),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.cpu_cost", description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--scenario", default="openai", choices=(*cmod.SCENARIOS, "gemini"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tokenrelay-cpu-") as tmp:
        mock, port = phases.start_mock(Path(tmp))
        try:
            ctx = cmod.Ctx(mock_port=port, workdir=Path(tmp))
            med = compare(ctx, args.scenario, args.rounds, args.seconds, log=lambda _: None)
        finally:
            proc.stop(mock)
    for label, m in med.items():
        print(
            f"billing {label:3s} {m['cpu_us_per_request']:7.1f} µs CPU/request "
            f"({m['main_thread_cpu_us_per_request']:.1f} in the event loop's thread)"
            f"   {m['rps']:8.0f} req/s   ({args.scenario})"
        )
    on, off = med["on"]["cpu_us_per_request"], med["off"]["cpu_us_per_request"]
    rps_ratio = med["on"]["rps"] / med["off"]["rps"]
    print(
        f"billing costs {on - off:.1f} µs/request; on÷off req/s {rps_ratio:.3f}"
        f" (at equal CPU {off / on:.3f})"
    )


if __name__ == "__main__":
    main()
