"""The measured phases, each wrapped in gateway and mock CPU/RSS monitors."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import loadgen, proc
from bench.contenders import Contender
from bench.loadgen import STREAM_CHUNKS, STREAM_INTERVAL_MS, Target
from bench.procstats import Monitor, tree_rss_mb

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Budget:
    warm_s: float
    lat_s: float  # c=1 non-stream (wrk --latency)
    ttfc_n: int  # c=1 small streams, sequential
    rps_s: float  # c=64 non-stream
    streams_total: int  # streams of 64 chunks at 20 ms, 1000 at a time
    streams_conc: int = 1000
    ramp_ms: int = 1000
    rps_conns: int = 64


QUICK = Budget(warm_s=1, lat_s=3, ttfc_n=150, rps_s=4, streams_total=1000)
FULL = Budget(warm_s=3, lat_s=15, ttfc_n=1000, rps_s=20, streams_total=3000)


def start_mock(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = proc.free_port()
    log = workdir / "mock.log"
    p = proc.spawn(["node", str(HERE / "mock" / "server.js"), str(port)], proc.LOAD_CORE, log)
    proc.wait_http(f"http://127.0.0.1:{port}/", p, 20, log)
    return p, port


def measured(
    gw_pid: int | None, mock_pid: int, run: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    with Monitor(gw_pid) as gw, Monitor(mock_pid) as mock:
        load = run()
    return {
        "load": load,
        "wall_s": round(gw.result.wall_s, 3),
        "gateway": gw.result.as_dict() if gw_pid else None,
        "mock": {k: v for k, v in mock.result.as_dict().items() if k.startswith("cpu")},
    }


def run_scenario(
    c: Contender, scenario: str, b: Budget, mock_pid: int, log: Callable[[str], None]
) -> dict[str, Any]:
    t = c.target(scenario)
    for stream in (False, True):
        err = loadgen.check(t, stream)
        if err:
            return {"error": f"{'stream' if stream else 'non-stream'} check failed: {err}"}
    pid = c.pid
    out: dict[str, Any] = {"url": t.url, "model": t.model, "format": t.fmt}
    loadgen.wrk(t, 8, b.warm_s)  # warm-up: pools, caches, JIT-free but lazy imports
    loadgen.streams(t, 8, total=50)

    def phase(name: str, run: Callable[[], dict[str, Any]]) -> None:
        if name not in c.phases:
            return
        res = measured(pid, mock_pid, run)
        out[name] = res
        log(f"    {name:<10} {_brief(res)}")

    phase("latency", lambda: loadgen.wrk(t, 1, b.lat_s))
    phase("ttfc", lambda: loadgen.streams(t, 1, total=b.ttfc_n))
    phase("rps", lambda: loadgen.wrk(t, b.rps_conns, b.rps_s))
    phase(
        "streams",
        lambda: loadgen.streams(
            t,
            b.streams_conc,
            total=b.streams_total,
            chunks=STREAM_CHUNKS,
            interval_ms=STREAM_INTERVAL_MS,
            ramp_ms=b.ramp_ms,
        ),
    )
    return out


def _brief(res: dict[str, Any]) -> str:
    load = res["load"]
    gw = res["gateway"] or {}
    parts = []
    if "rps" in load:
        lat = load["lat_ms"]
        parts.append(f"rps={load['rps']:.0f} p50={lat['p50']:.3f}ms p99={lat['p99']:.3f}ms")
    else:
        parts.append(
            f"ttfc p50={load['ttfc_ms']['p50']}ms p99={load['ttfc_ms']['p99']}ms"
            f" gap p99={load['gap_ms']['p99']}ms"
        )
    parts.append(f"err={load['errors']}")
    if gw:
        parts.append(f"gw cpu={gw['cpu_util']:.0%} rss={gw['rss_peak_mb']:.0f}MB")
    parts.append(f"mock cpu={res['mock']['cpu_util']:.0%}")
    return " ".join(parts)


def soak(c: Contender, minutes: float, mock_pid: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Mixed load (non-stream + streams, both formats) for `minutes`; RSS sampled throughout."""
    assert c.pid is not None
    total_s = minutes * 60
    warm_s = min(60.0, total_s / 3)
    targets = [c.target("openai"), c.target("anthropic")]
    results: dict[str, Any] = {}

    def worker(key: str, fn: Callable[[], dict[str, Any]]) -> None:
        try:
            results[key] = fn()
        except Exception as e:  # reported, not raised: the soak must finish its samples
            results[key] = {"error": f"{type(e).__name__}: {e}", "errors": 1}

    jobs: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    for t in targets:
        jobs.append((f"wrk-{t.fmt}", lambda t=t: loadgen.wrk(t, 4, total_s)))
        jobs.append(
            (
                f"streams-{t.fmt}",
                lambda t=t: loadgen.streams(
                    t,
                    50,
                    duration_s=total_s,
                    chunks=STREAM_CHUNKS,
                    interval_ms=STREAM_INTERVAL_MS,
                    ramp_ms=1000,
                ),
            )
        )
    threads = [threading.Thread(target=worker, args=j, daemon=True) for j in jobs]
    samples: list[tuple[float, float]] = []
    t0 = time.monotonic()
    with Monitor(c.pid) as gw, Monitor(mock_pid) as mock:
        for th in threads:
            th.start()
        rss_warm = 0.0
        next_log = 60.0
        while any(th.is_alive() for th in threads):
            el = time.monotonic() - t0
            rss = tree_rss_mb(c.pid)
            samples.append((round(el, 1), round(rss, 1)))
            if not rss_warm and el >= warm_s:
                rss_warm = rss
                log(f"    soak warm-up done at {el:.0f}s: rss={rss:.1f}MB")
            if el >= next_log:
                log(f"    soak {el / 60:.1f} min: rss={rss:.1f}MB")
                next_log += 60
            time.sleep(2)
        for th in threads:
            th.join()
    rss_end = tree_rss_mb(c.pid)
    errors = sum(int(r.get("errors", 0)) for r in results.values())
    return {
        "minutes": minutes,
        "warmup_s": warm_s,
        "rss_after_warmup_mb": round(rss_warm, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_ratio": round(rss_end / rss_warm, 3) if rss_warm else None,
        "errors": errors,
        "gateway": gw.result.as_dict(),
        "mock": mock.result.as_dict(),
        "load": results,
        "rss_samples": samples[:: max(1, len(samples) // 200)],
    }


def target_summary(t: Target) -> str:
    return f"{t.fmt} {t.model} {t.url}"
