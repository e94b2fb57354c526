"""Gateway CPU per request, billing on and off: `python -m bench.cpu_cost [--rounds 3]`;
`--pools 3` compares instead the single-key path with 3 deployments per vendor (same mock);
`--against REF` compares instead this tree with git REF (e.g. main), both billing on.

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

Sample = tuple[float, float, float, float]  # CPU µs/request: all, main thread; req/s; p50 ms


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
    # The added latency one request sees: c=1, a short run after the loaded one.
    lat = loadgen.wrk(c.target(scenario), 1, max(1.0, seconds / 2))
    return used * 1e6 / n, main_used * 1e6 / n, res["rps"], lat["lat_ms"]["p50"]


def compare(
    ctx: cmod.Ctx, scenario: str, rounds: int, seconds: float, log: Callable[[str], None] = print
) -> dict[str, dict[str, float]]:
    """Billing on and off, started side by side, wrk rounds alternating between them (so the
    VM's drifting CPU steal hits both alike); medians per variant."""
    variants = [cmod.make("tokenrelay", True), cmod.make("tokenrelay-nobilling", True)]
    return alternate(ctx, variants, ("on", "off"), scenario, rounds, seconds, "billing", log)


def compare_pools(
    ctx: cmod.Ctx,
    scenario: str,
    rounds: int,
    seconds: float,
    pools: int,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, float]]:
    """The single-key path against `pools` deployments per vendor on the same mock."""
    variants: list[cmod.Contender] = [
        cmod.TokenRelay("tokenrelay-single"),
        cmod.TokenRelay(f"tokenrelay-pools{pools}", pools=pools),
    ]
    return alternate(ctx, variants, ("single", "pools"), scenario, rounds, seconds, "pools", log)


def compare_servers(
    ctx: cmod.Ctx, scenario: str, rounds: int, seconds: float, log: Callable[[str], None] = print
) -> dict[str, dict[str, float]]:
    """The same app, billing on, under `tokenrelay serve` (uvicorn + httptools, http_guard)
    and under granian (Rust HTTP, ASGI on uvloop, one worker, one runtime thread)."""
    variants: list[cmod.Contender] = [
        cmod.TokenRelay("tokenrelay-uvicorn"),
        cmod.TokenRelay("tokenrelay-granian", server="granian"),
    ]
    return alternate(
        ctx, variants, ("uvicorn", "granian"), scenario, rounds, seconds, "servers", log
    )


def compare_against(
    ctx: cmod.Ctx,
    scenario: str,
    rounds: int,
    seconds: float,
    ref: str,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, float]]:
    """git `ref`'s code against this tree's, billing on, rounds alternating: a change's
    effect measured in one run, so the machine's drifting load hits both sides alike."""
    tree = cmod.export_tree(ref, ctx.workdir / "against")
    variants: list[cmod.Contender] = [
        cmod.TokenRelay("tokenrelay-ref", source=tree / "src"),
        cmod.TokenRelay("tokenrelay-tree"),
    ]
    return alternate(ctx, variants, (ref, "tree"), scenario, rounds, seconds, "against", log)


def alternate(
    ctx: cmod.Ctx,
    variants: list[cmod.Contender],
    labels: tuple[str, ...],
    scenario: str,
    rounds: int,
    seconds: float,
    what: str,
    log: Callable[[str], None],
) -> dict[str, dict[str, float]]:
    """Variants started side by side, wrk rounds alternating between them; medians (and the
    spread over rounds, the run's noise) per variant."""
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
            log(f"    {what} A/B [{scenario}] round {i + 1}/{rounds}")
    finally:
        for v in variants:
            v.stop()
    out: dict[str, dict[str, float]] = {}
    for v, label in zip(variants, labels, strict=True):
        xs = samples[v.name]
        cpu = [x[0] for x in xs]
        out[label] = {
            "cpu_us_per_request": round(statistics.median(cpu), 1),
            "cpu_us_min": round(min(cpu), 1),  # the gate's figure (bench/check.py)
            "cpu_us_spread": round(max(cpu) - min(cpu), 1),
            "main_thread_cpu_us_per_request": round(statistics.median(x[1] for x in xs), 1),
            "rps": round(statistics.median(x[2] for x in xs), 1),
            "p50_ms_c1": round(statistics.median(x[3] for x in xs), 3),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.cpu_cost", description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--scenario", default="openai", choices=(*cmod.CPU_SCENARIOS, "gemini"))
    ap.add_argument(
        "--pools",
        type=int,
        default=0,
        help="compare the single-key path with N deployments per vendor instead of billing",
    )
    ap.add_argument("--against", metavar="REF", help="compare this tree with git REF instead")
    ap.add_argument(
        "--servers", action="store_true", help="compare uvicorn with granian (pip install granian)"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tokenrelay-cpu-") as tmp:
        mock, port = phases.start_mock(Path(tmp))
        try:
            ctx = cmod.Ctx(mock_port=port, workdir=Path(tmp))
            quiet: Callable[[str], None] = lambda _: None  # noqa: E731
            if args.against:
                med = compare_against(
                    ctx, args.scenario, args.rounds, args.seconds, args.against, quiet
                )
            elif args.servers:
                med = compare_servers(ctx, args.scenario, args.rounds, args.seconds, quiet)
            elif args.pools:
                med = compare_pools(
                    ctx, args.scenario, args.rounds, args.seconds, args.pools, quiet
                )
            else:
                med = compare(ctx, args.scenario, args.rounds, args.seconds, log=quiet)
        finally:
            proc.stop(mock)
    what = (
        "against"
        if args.against
        else "servers"
        if args.servers
        else "pools"
        if args.pools
        else "billing"
    )
    for label, m in med.items():
        print(
            f"{what} {label:6s} {m['cpu_us_per_request']:7.1f} µs CPU/request "
            f"(±{m['cpu_us_spread'] / 2:.1f} over rounds, lowest {m['cpu_us_min']:.1f}; "
            f"{m['main_thread_cpu_us_per_request']:.1f} in the event loop's thread)"
            f"   {m['rps']:8.0f} req/s   p50 {m['p50_ms_c1']:.3f} ms at c=1   ({args.scenario})"
        )
    a, b = med.values()
    on, off = (b, a) if args.pools or args.against or args.servers else (a, b)
    print(
        f"{what} costs {on['cpu_us_per_request'] - off['cpu_us_per_request']:.1f} µs/request; "
        f"on÷off req/s {on['rps'] / off['rps']:.3f} "
        f"(at equal CPU {off['cpu_us_per_request'] / on['cpu_us_per_request']:.3f}); "
        f"p50 at c=1 on÷off {on['p50_ms_c1'] / off['p50_ms_c1']:.3f}"
    )


if __name__ == "__main__":
    main()
