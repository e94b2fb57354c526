"""The speed regression gate: `make bench-check` (= `python -m bench.check`).

Measures the two figures that do not move with the machine's noise — the gateway's CPU per
request (billing on and off, `bench.cpu_cost`: wrk c=64 against the Node mock, an OpenAI
client on the fast path) and CPU per stream chunk (`bench.chunk_cost`, in process) — and
compares them with the committed baseline, bench/results/baseline.json. Any figure more than
10 % above its baseline fails the gate (exit 1). `--update` writes the figures measured as the
new baseline (commit it with the change that earned it). About a minute.

Each figure is the lowest over the rounds, not the median: on a shared VM other work only ever
adds CPU time (cache misses, steal counted as ours), so the minimum is the steadiest estimate.

CPU time still moves with the machine: the same commit read 30 % higher per chunk on one VM
than on the one the baseline came from. So the gate also times a fixed interpreter workload on
the gateway's core (`calibration_us`, JSON and dict work like a request's), stores it with the
baseline, and compares each figure scaled by baseline machine ÷ this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson

from bench import chunk_cost, cpu_cost, phases, proc
from bench import contenders as cmod

BASELINE = Path(__file__).parent / "results" / "baseline.json"
TOLERANCE = 0.10


def request_figures(rounds: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tokenrelay-check-") as tmp:
        mock, port = phases.start_mock(Path(tmp))
        try:
            ctx = cmod.Ctx(mock_port=port, workdir=Path(tmp))
            med = cpu_cost.compare(ctx, "openai", rounds, seconds, log=lambda _: None)
        finally:
            proc.stop(mock)
    return {f"request_billing_{k}_cpu_us": v["cpu_us_min"] for k, v in med.items()}


def chunk_figures(streams: int, rounds: int) -> dict[str, float]:
    figures = chunk_cost.per_chunk_us(streams, rounds, min)
    return {f"chunk_{name}_cpu_us": us for name, us in figures.items()}


_BODY = orjson.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello " * 40}] * 6}
)


def _workload() -> None:
    for i in range(300):
        d = orjson.loads(_BODY)
        headers = {f"x-h{j}": str(j) for j in range(12)}
        line = f"{d['model']}:{len(d['messages'])}:{headers.get('x-h3')}:{i}"
        orjson.dumps({k: v for k, v in d.items() if k != "stream"} | {"line": line})


def calibration_us(rounds: int = 25) -> float:
    """CPU µs of a fixed interpreter workload on the gateway's core (lowest of the rounds)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(proc.GATEWAY_CORE)})
    try:
        warm_until = time.monotonic() + 0.5  # an idle core runs the first ~50 ms 1.5x slower
        while time.monotonic() < warm_until:
            _workload()
        best = float("inf")
        for _ in range(rounds):
            start = time.thread_time()
            _workload()
            best = min(best, time.thread_time() - start)
    finally:
        os.sched_setaffinity(0, before)
    return round(best * 1e6, 1)


def verdict(measured: dict[str, float], baseline: dict[str, float], scale: float) -> list[str]:
    """One line per figure (read × `scale`: the baseline machine's speed ÷ this one's); those
    past the tolerance start with FAIL."""
    lines = []
    for name, value in measured.items():
        base = baseline.get(name)
        if base is None:
            lines.append(f"new   {name:36s} {value:8.2f} (no baseline)")
            continue
        ratio = value * scale / base
        mark = "FAIL" if ratio > 1 + TOLERANCE else "ok  "
        lines.append(f"{mark}  {name:36s} {value:8.2f} µs  baseline {base:8.2f}  ×{ratio:.3f}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.check", description=__doc__)
    ap.add_argument("--update", action="store_true", help="write the figures as the baseline")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2)
    ap.add_argument("--no-requests", action="store_true", help="per-chunk figures only (5 s)")
    args = ap.parse_args()
    if args.update and args.no_requests:  # one calibration for every figure of a baseline
        ap.error("--update measures every figure: drop --no-requests")
    calibration = calibration_us()
    measured = chunk_figures(60, 15)
    if not args.no_requests:
        measured |= request_figures(args.rounds, args.seconds)
    doc = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    baseline: dict[str, float] = doc.get("figures", {})
    base_calibration = doc.get("calibration_us")
    scale = base_calibration / calibration if base_calibration else 1.0
    lines = verdict(measured, baseline, scale)
    load = [round(x, 1) for x in os.getloadavg()]  # a busy machine reads high: say so
    speed = f"calibration {calibration} µs, the baseline's {base_calibration} (×{scale:.3f})"
    print("\n".join(lines) + f"\n{speed}\nload average {load}")
    if args.update:
        note = (
            "CPU µs (lowest over rounds); `make bench-check` fails past +10 %, figures scaled by "
            "calibration_us (a fixed workload on the gateway's core: the machine's speed)"
        )
        doc = {"note": note, "load": load, "calibration_us": calibration, "figures": measured}
        BASELINE.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"baseline written: {BASELINE}")
    elif any(line.startswith("FAIL") for line in lines):
        sys.exit(f"bench-check: a figure is more than {TOLERANCE:.0%} above its baseline")


if __name__ == "__main__":
    main()
