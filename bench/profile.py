"""Where a request's CPU goes: `python -m bench.profile [--scenario openai] [--stream]`.

Runs the gateway under cProfile timed by the event loop thread's CPU clock (billing on, SQLite,
the Node mock upstream), drives it with wrk c=8 for a few seconds, stops it, and writes the top
functions per request (CPU µs a request) and by own time to
bench/results/profile-<scenario>[-stream].txt (the raw stats to /tmp/<name>.prof, for
`python -m pstats`). Start-up (imports) is in it too; the absolute figures carry cProfile's
overhead: read the request path's shares.

`--flame` samples instead with py-spy (no overhead in the process; `pip install py-spy` anywhere,
found on PATH or as $PY_SPY) under wrk c=64, billing on, and writes the flame graph
bench/results/flame-<scenario>[-stream].svg and its collapsed stacks (.txt): native frames of
uvloop and the kernel show as their Python caller's own time. `--flame --streams 1000` samples
the main run's 1000-stream phase instead (64 chunks 20 ms apart, opened over 1 s):
bench/results/flame-1000-streams.{svg,txt}.
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import contenders as cmod
from bench import loadgen, phases, proc

OUT = Path(__file__).parent / "results"


def per_request(stats: pstats.Stats, n: int) -> str:
    """The request path's functions (ours and the server's) called at least once a request:
    CPU µs a request, cumulative and own (a coroutine counts once per resumption)."""
    rows = []
    for (path, line, func), (_, calls, own, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        if calls >= n and any(p in path for p in ("tokenrelay/", "uvicorn/", "aiohttp/")):
            where = path.split("site-packages/")[-1].split("src/")[-1]
            rows.append((cum / n * 1e6, own / n * 1e6, calls / n, f"{where}:{line}({func})"))
    rows.sort(reverse=True)
    lines = ["  cum µs  own µs  calls/req  function (CPU per request, cProfile's overhead in it)"]
    lines += [f"{c:8.1f} {o:7.1f} {k:9.1f}  {f}" for c, o, k, f in rows[:50]]
    return "\n".join(lines) + "\n\n"


def flame(scenario: str, stream: bool, seconds: float, streams: int = 0) -> None:
    spy = (
        os.environ.get("PY_SPY")
        or shutil.which("py-spy")
        or shutil.which("py-spy", path=os.path.dirname(sys.executable))
    )
    if spy is None:
        raise SystemExit("--flame needs py-spy: pip install py-spy (or set PY_SPY)")
    name = f"flame-{scenario}{'-stream' if stream else ''}"
    if streams:
        name = f"flame-{streams}-streams"
    with tempfile.TemporaryDirectory(prefix="tokenrelay-flame-") as tmp:
        mock, port = phases.start_mock(Path(tmp))
        gw = cmod.TokenRelay("tokenrelay-flame")
        try:
            gw.start(cmod.Ctx(mock_port=port, workdir=Path(tmp)))
            target = gw.target(scenario)
            marker = loadgen.stream_marker(64, 0) if stream else ""
            loadgen.wrk(target, 64, 2, marker=marker)  # warm-up
            for fmt, ext in (("flamegraph", "svg"), ("raw", "txt")):
                cmd = [spy, "record", "-p", str(gw.pid), "-r", "500", "-d", str(round(seconds))]
                cmd += ["-f", fmt, "-o", str(OUT / f"{name}.{ext}"), "--nonblocking"]
                sampler = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
                time.sleep(0.5)
                if streams:  # the main run's phase: 64 chunks 20 ms apart, opened over 1 s
                    loadgen.streams(
                        target, streams, duration_s=seconds, chunks=64, interval_ms=20, ramp_ms=1000
                    )
                else:
                    loadgen.wrk(target, 64, seconds, marker=marker)
                sampler.wait(60)
        finally:
            gw.stop()
            proc.stop(mock)
    print(f"written: {OUT / name}.svg and .txt")


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    ap.add_argument("--scenario", default="openai", choices=cmod.CPU_SCENARIOS)
    ap.add_argument("--stream", action="store_true", help="64-chunk streams instead of unary")
    ap.add_argument("--seconds", type=float, default=6)
    ap.add_argument("--flame", action="store_true", help="py-spy flame graph (wrk c=64)")
    ap.add_argument(
        "--streams",
        type=int,
        default=0,
        help="with --flame: N concurrent 64-chunk streams at 20 ms instead of wrk",
    )
    args = ap.parse_args()
    if args.flame:
        flame(args.scenario, args.stream, args.seconds, args.streams)
        return
    name = f"profile-{args.scenario}{'-stream' if args.stream else ''}"
    with tempfile.TemporaryDirectory(prefix="tokenrelay-profile-") as tmp:
        mock, port = phases.start_mock(Path(tmp))
        gw = cmod.TokenRelay("tokenrelay-profile", profile=Path(tmp) / "gw.prof")
        try:
            gw.start(cmod.Ctx(mock_port=port, workdir=Path(tmp)))
            target = gw.target(args.scenario)
            marker = loadgen.stream_marker(64, 0) if args.stream else ""
            res = loadgen.wrk(target, 8, args.seconds, marker=marker)
        finally:
            # SIGINT: uvicorn re-raises the signal it stopped on, and a KeyboardInterrupt still
            # lets the profile be written (a SIGTERM's default action would not).
            if gw.process is not None:
                gw.process.send_signal(signal.SIGINT)
                gw.process.wait(30)
            gw.stop()
            proc.stop(mock)
        text = io.StringIO()
        stats = pstats.Stats(str(Path(tmp) / "gw.prof"), stream=text)
        n = max(res["requests"], 1)
        text.write(f"{name}: {n} requests under wrk c=8, {args.seconds} s\n\n")
        text.write(per_request(stats, n))
        stats.sort_stats("tottime").print_stats(30)
        shutil.copy(Path(tmp) / "gw.prof", f"/tmp/{name}.prof")
    (OUT / f"{name}.txt").write_text(text.getvalue().replace(str(Path.cwd()), "."))
    print(f"written: {OUT / name}.txt")


if __name__ == "__main__":
    main()
