"""What an idle gateway spends: `python -m bench.idle_cpu [--seconds 20] [--against REF]`.

Starts `tokenrelay serve` as the bench runs it (billing on, SQLite, one worker), answers one
request, waits 3 s, then reads the CPU time of its event loop's thread and of all its threads
over `--seconds` of silence: the background pollers (revocations, deployment state, batches,
balances), whose cost every request at low concurrency shares. `--against REF` starts git
REF's code beside it and alternates the two (twice each), as `cpu_cost --against` does.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench import contenders as cmod
from bench import loadgen, phases, proc
from bench.procstats import cpu_s, tree_cpu_s


def idle_ms_per_s(c: cmod.TokenRelay, seconds: float) -> tuple[float, float]:
    """(loop thread, whole process) CPU ms per second of silence."""
    assert c.pid is not None
    loop0, all0 = cpu_s(c.pid, c.pid), tree_cpu_s(c.pid)
    time.sleep(seconds)
    loop1, all1 = cpu_s(c.pid, c.pid), tree_cpu_s(c.pid)
    return (loop1 - loop0) * 1000 / seconds, (all1 - all0) * 1000 / seconds


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.idle_cpu", description=__doc__)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--against", metavar="REF", help="also git REF's code, alternating")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tokenrelay-idle-") as tmp:
        mock, port = phases.start_mock(Path(tmp))
        ctx = cmod.Ctx(mock_port=port, workdir=Path(tmp))
        variants = [cmod.TokenRelay("tree")]
        if args.against:
            tree = cmod.export_tree(args.against, Path(tmp) / "against")
            variants.append(cmod.TokenRelay(args.against, source=tree / "src"))
        try:
            for v in variants:
                v.start(ctx)
                loadgen.check(v.target("openai"), False)
            time.sleep(3)
            for _ in range(2 if args.against else 1):
                for v in variants:
                    loop, whole = idle_ms_per_s(v, args.seconds)
                    print(
                        f"{v.name:12s} idle: {loop:5.1f} ms/s in the loop's thread, "
                        f"{whole:5.1f} in all"
                    )
        finally:
            for v in variants:
                v.stop()
            proc.stop(mock)


if __name__ == "__main__":
    main()
