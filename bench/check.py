"""The speed regression gate: `make bench-check` (= `python -m bench.check`).

Measures the two figures that do not move with the machine's noise — the gateway's CPU per
request (billing on and off, `bench.cpu_cost`: wrk c=64 against the Node mock, an OpenAI
client on the fast path) and CPU per stream chunk (`bench.chunk_cost`) — for this tree and for
the baseline's code, in the same run, and fails (exit 1) when a figure of this tree is more
than 10 % above the baseline code's. The baseline's code is the commit that last wrote
bench/results/baseline.json (`--update` writes this tree's figures there: commit it with the
change that earned it). About two minutes.

Why both in one run, not against the committed figures alone: CPU time moves with the machine.
The same commit read 30 % more per chunk on one VM than on another, and a fixed interpreter
workload (`calibration_us`, still recorded with the baseline) scaled only part of it away: on a
new VM an unchanged tree failed the gate by 12-18 %. Rounds alternate between the two codes,
so a drifting neighbour hits both alike. `--calibrated` is the old quick gate (this tree alone,
scaled by the calibration; about a minute), used also when the baseline's code cannot run with
today's dependencies.

Each figure is the lowest over the rounds, not the median: on a shared VM other work only ever
adds CPU time (cache misses, steal counted as ours), so the minimum is the steadiest estimate.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from bench import contenders as cmod
from bench import cpu_cost, phases, proc

BASELINE = Path(__file__).parent / "results" / "baseline.json"
TOLERANCE = 0.10
CHUNK_STREAMS, CHUNK_ROUNDS = 60, 15
Figures = dict[str, float]


def baseline_commit() -> str | None:
    """The commit that last wrote the baseline: its src/ is the code the figures came from."""
    out = subprocess.run(
        ["git", "log", "-1", "--format=%H", "--", str(BASELINE)],
        cwd=cmod.REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or None


def src_changed_since(commit: str) -> bool:
    """Whether this tree's src/ differs from `commit`'s (uncommitted changes included)."""
    diff = ["git", "diff", "--quiet", commit, "--", "src"]
    return subprocess.run(diff, cwd=cmod.REPO, check=False).returncode != 0


def export_ref(commit: str, into: Path) -> Path:
    """`commit`'s src/ and bench/: its code, and the harness that drives that code's own
    interfaces (bench.chunk_cost builds exchanges by hand)."""
    return cmod.export_tree(commit, into, "src", "bench")


def request_figures(rounds: int, seconds: float, ref: Path | None = None) -> dict[str, Figures]:
    """CPU µs a request, billing on and off, for this tree ("tree") and, given `ref` (another
    tree's root), for its code ("ref"): all four gateways up at once, wrk rounds alternating."""
    variants: list[cmod.Contender] = [
        cmod.TokenRelay("tokenrelay"),
        cmod.TokenRelay("tokenrelay-nobilling", billing=False),
    ]
    labels = ["on", "off"]
    if ref is not None:
        variants += [
            cmod.TokenRelay("ref", source=ref / "src"),
            cmod.TokenRelay("ref-nobilling", source=ref / "src", billing=False),
        ]
        labels += ["ref_on", "ref_off"]
    with tempfile.TemporaryDirectory(prefix="tokenrelay-check-") as tmp:
        mock, port = phases.start_mock(Path(tmp))
        try:
            ctx = cmod.Ctx(mock_port=port, workdir=Path(tmp))
            med = cpu_cost.alternate(
                ctx, variants, tuple(labels), "openai", rounds, seconds, "check", lambda _: None
            )
        finally:
            proc.stop(mock)
    out: dict[str, Figures] = {"tree": {}, "ref": {}}
    for label, m in med.items():
        side, _, billing = label.rpartition("_")
        out[side or "tree"][f"request_billing_{billing}_cpu_us"] = m["cpu_us_min"]
    return out


def _chunks_in(root: Path | None, rounds: int) -> Figures:
    """`chunk_cost` in a process of its own on the gateway's core: the tree at `root`'s (its
    tokenrelay and its bench), or this one's."""
    path = [str(root / "src"), str(root)] if root is not None else [str(cmod.REPO)]
    env = os.environ | {"PYTHONPATH": os.pathsep.join(path)}
    code = (
        "import json; from bench import chunk_cost; "
        f"print(json.dumps(chunk_cost.per_chunk_us({CHUNK_STREAMS}, {rounds}, min)))"
    )
    cmd = ["taskset", "-c", proc.GATEWAY_CORE, sys.executable, "-c", code]
    cwd = root or cmod.REPO  # `-c` puts the working directory first on sys.path
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"chunk_cost failed:\n{done.stderr[-2000:]}")
    return {f"chunk_{k}_cpu_us": v for k, v in json.loads(done.stdout.splitlines()[-1]).items()}


def chunk_figures(ref: Path | None = None, turns: int = 3) -> dict[str, Figures]:
    """CPU µs a chunk for this tree and `ref`, in turns (lowest over all rounds of each)."""
    sides: dict[str, Path | None] = {"tree": None} | ({"ref": ref} if ref is not None else {})
    out: dict[str, Figures] = {side: {} for side in sides}
    for _ in range(turns):
        for side, src in sides.items():
            for name, us in _chunks_in(src, CHUNK_ROUNDS // turns).items():
                out[side][name] = min(us, out[side].get(name, us))
    return out


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


def verdict(measured: Figures, baseline: Figures, scale: float = 1.0, what: str = "") -> list[str]:
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
        lines.append(f"{mark}  {name:36s} {value:8.2f} µs  {what}{base:8.2f}  ×{ratio:.3f}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.check", description=__doc__)
    ap.add_argument("--update", action="store_true", help="write the figures as the baseline")
    ap.add_argument(
        "--calibrated",
        action="store_true",
        help="this tree alone, against the committed figures scaled by the calibration",
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2)
    ap.add_argument("--no-requests", action="store_true", help="per-chunk figures only")
    args = ap.parse_args()
    if args.update and args.no_requests:  # one calibration for every figure of a baseline
        ap.error("--update measures every figure: drop --no-requests")
    doc = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    committed: Figures = doc.get("figures", {})
    commit = baseline_commit()
    same_run = not (args.update or args.calibrated) and commit is not None
    unchanged = same_run and commit is not None and not src_changed_since(commit)
    if unchanged:  # the figures below are for information: there is nothing to gate
        print(f"src/ is the baseline's ({commit}): nothing on the request path changed")
        same_run = False
    calibration = calibration_us()
    with tempfile.TemporaryDirectory(prefix="tokenrelay-check-ref-") as tmp:
        ref = export_ref(commit, Path(tmp)) if same_run and commit is not None else None
        try:
            figures = chunk_figures(ref)
            if not args.no_requests:
                for side, fs in request_figures(args.rounds, args.seconds, ref).items():
                    figures.setdefault(side, {}).update(fs)
        except RuntimeError as exc:  # e.g. the baseline's code needs another dependency
            if ref is None:
                raise
            print(f"the baseline's code does not run here ({exc}); comparing calibrated")
            ref, figures = None, chunk_figures()
            if not args.no_requests:
                figures["tree"] |= request_figures(args.rounds, args.seconds)["tree"]
    measured = figures["tree"]
    base_calibration = doc.get("calibration_us")
    scale = base_calibration / calibration if base_calibration else 1.0
    if ref is not None:
        lines = verdict(measured, figures["ref"], what=f"{commit[:10] if commit else ''} ")
        speed = (
            f"against the baseline's code ({commit}) in this run; the committed figures "
            f"({base_calibration} µs calibration) scale ×{scale:.3f} here: "
            + ", ".join(
                f"{n.removesuffix('_cpu_us')} {v * scale / committed[n]:.3f}"
                for n, v in measured.items()
                if n in committed
            )
        )
    else:
        lines = verdict(measured, committed, scale, "baseline ")
        speed = f"calibration {calibration} µs, the baseline's {base_calibration} (×{scale:.3f})"
    load = [round(x, 1) for x in os.getloadavg()]  # a busy machine reads high: say so
    print("\n".join(lines) + f"\n{speed}\nload average {load}")
    if args.update:
        note = (
            "CPU µs (lowest over rounds) of the code of the commit that last wrote this file; "
            "`make bench-check` measures that code beside the tree in one run and fails past "
            "+10 %. calibration_us: a fixed workload on the gateway's core (the machine's speed)"
        )
        doc = {"note": note, "load": load, "calibration_us": calibration, "figures": measured}
        BASELINE.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"baseline written: {BASELINE}")
    elif not unchanged and any(line.startswith("FAIL") for line in lines):
        sys.exit(f"bench-check: a figure is more than {TOLERANCE:.0%} above its baseline")


if __name__ == "__main__":
    main()
