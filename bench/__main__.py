"""`python -m bench`: run every contender through every phase, write results.json + results.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import contenders as cmod
from bench import cpu_cost, install, phases, proc, report

REPO = cmod.REPO


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _cmd_out(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (r.stdout + r.stderr).strip().splitlines()[0] if (r.stdout + r.stderr).strip() else "?"


def meta(args: argparse.Namespace) -> dict[str, Any]:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ll = cmod.LITELLM_VENV / "bin" / "python"
    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "mode": "quick" if args.quick else "full",
        "cpu": f"{cpu} × {os.cpu_count()}",
        "kernel": platform.release(),
        "gateway_core": proc.GATEWAY_CORE,
        "load_core": proc.LOAD_CORE,
        "tokenrelay_rev": _cmd_out(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "nginx_version": _cmd_out(["nginx", "-v"]).replace("nginx version: ", ""),
        "wrk_version": _cmd_out(["wrk", "-v"]),
        "node_version": _cmd_out(["node", "--version"]),
        "litellm_version": _cmd_out(
            [str(ll), "-c", "import importlib.metadata as m; print(m.version('litellm'))"]
        )
        if ll.exists()
        else None,
        "budget": vars(phases.QUICK if args.quick else phases.FULL),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="short phases: a smoke run of minutes")
    ap.add_argument(
        "--soak-minutes",
        type=float,
        default=None,
        help="soak length against tokenrelay (default 30; 1 with --quick; 0 skips)",
    )
    ap.add_argument(
        "--only",
        default=",".join(cmod.ALL),
        help=f"comma list of contenders (default all: {','.join(cmod.ALL)}); 'tokenrelay' "
        "includes its billing-off variant; direct always runs (it is the baseline)",
    )
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--no-setup", action="store_true", help="skip apt / LiteLLM venv setup")
    return ap.parse_args(argv)


def selected(only: str) -> list[str]:
    names = [n.strip() for n in only.split(",") if n.strip()]
    if "tokenrelay" in names and "tokenrelay-nobilling" not in names:
        names.append("tokenrelay-nobilling")
    for n in names:
        if n not in cmod.ALL:
            sys.exit(f"unknown contender {n!r}; known: {', '.join(cmod.ALL)}")
    return [n for n in cmod.ALL if n in names or n == "direct"]


def write(results: dict[str, Any], out: Path, final: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results["figures"] = report.figures(results["contenders"])
    results["ratios"] = [
        r.as_dict()
        for r in report.ratios(results["figures"], results.get("soak"), results.get("billing_ab"))
    ]
    suffix = "" if final else ".tmp"
    (out / f"results.json{suffix}").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"results.md{suffix}").write_text(report.markdown(results))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = selected(args.only)
    soak_min = args.soak_minutes if args.soak_minutes is not None else (1 if args.quick else 30)
    budget = phases.QUICK if args.quick else phases.FULL
    if os.cpu_count() is None or (os.cpu_count() or 0) < 2:
        sys.exit("needs at least 2 cores (gateway on core 0, mock + load generator on core 1)")
    if not args.no_setup:
        install.ensure(names, log)
    results: dict[str, Any] = {"meta": meta(args), "contenders": {}, "notes": []}
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tokenrelay-bench-") as tmp:
        workdir = Path(tmp)
        mock, mock_port = phases.start_mock(workdir)
        ctx = cmod.Ctx(mock_port=mock_port, workdir=workdir)
        log(f"mock on :{mock_port} (pid {mock.pid}, core {proc.LOAD_CORE}); contenders: "
            f"{', '.join(names)}")  # fmt: skip
        try:
            for name in names:
                c = cmod.make(name, args.quick)
                entry: dict[str, Any] = {"scenarios": {}}
                results["contenders"][name] = entry
                log(f"{name}: starting")
                try:
                    c.start(ctx)
                    if c.pid:
                        time.sleep(1)
                    for scen in c.scenarios:
                        log(f"  {name} / {scen}")
                        entry["scenarios"][scen] = phases.run_scenario(
                            c, scen, budget, mock.pid, log
                        )
                        if "error" in entry["scenarios"][scen]:
                            log(f"    {entry['scenarios'][scen]['error']}")
                    if name == "tokenrelay" and soak_min > 0:
                        log(f"tokenrelay: soak {soak_min:g} min")
                        results["soak"] = phases.soak(c, soak_min, mock.pid, log)
                except Exception as e:
                    entry["error"] = f"{type(e).__name__}: {e}"
                    log(f"{name}: FAILED {entry['error']}")
                finally:
                    entry["notes"] = c.notes
                    results["notes"].extend(f"{name}: {n}" for n in c.notes)
                    c.stop()
                write(results, args.out, final=False)
            if "tokenrelay" in names and "tokenrelay-nobilling" in names:
                # The sequential phases run billing on and off minutes apart (the soak in
                # between), and this VM's CPU steal drifts by ±25% over minutes: the on ÷ off
                # target is taken from interleaved rounds instead.
                results["billing_ab"] = {}
                for scen in ("openai", "anthropic"):
                    results["billing_ab"][scen] = cpu_cost.compare(
                        ctx, scen, 3 if args.quick else 5, budget.rps_s / 4, log
                    )
                write(results, args.out, final=False)
        finally:
            proc.stop(mock)
    results["meta"]["total_s"] = round(time.monotonic() - t_start, 1)
    write(results, args.out, final=True)
    for suffix in (".tmp",):
        for f in ("results.json", "results.md"):
            (args.out / f"{f}{suffix}").unlink(missing_ok=True)
    md = (args.out / "results.md").read_text()
    print(md)
    log(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'} "
        f"in {results['meta']['total_s']:.0f}s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
