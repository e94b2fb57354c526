"""Derived figures, target ratios and the markdown report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BASELINE = {"openai": "openai", "anthropic": "anthropic", "translated": "anthropic"}
TR, TR_OFF, LL, NG, DI = "tokenrelay", "tokenrelay-nobilling", "litellm", "nginx", "direct"


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def figures(contenders: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per contender and scenario: the headline numbers, 'added' ones relative to direct."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, c in contenders.items():
        for scen, r in (c.get("scenarios") or {}).items():
            if not isinstance(r, dict) or "error" in r:
                continue
            base = _get(contenders, DI, "scenarios", BASELINE[scen]) or {}
            f: dict[str, Any] = {
                "lat_p50_ms": _get(r, "latency", "load", "lat_ms", "p50"),
                "lat_p99_ms": _get(r, "latency", "load", "lat_ms", "p99"),
                "ttfc_p50_ms": _get(r, "ttfc", "load", "ttfc_ms", "p50"),
                "ttfc_p99_ms": _get(r, "ttfc", "load", "ttfc_ms", "p99"),
                "rps": _get(r, "rps", "load", "rps"),
                "rps_errors": _get(r, "rps", "load", "errors"),
                "s_ttfc_p99_ms": _get(r, "streams", "load", "ttfc_ms", "p99"),
                "s_gap_p99_ms": _get(r, "streams", "load", "gap_ms", "p99"),
                "s_gap_added_p99_ms": _get(r, "streams", "load", "gap_added_ms", "p99"),
                "s_errors": _get(r, "streams", "load", "errors"),
                "s_completed": _get(r, "streams", "load", "completed"),
                "s_wall_s": _get(r, "streams", "load", "wall_s"),
            }
            for k in ("lat_p50", "lat_p99", "ttfc_p50", "ttfc_p99"):
                mine = f[f"{k}_ms"]
                b = {
                    "lat_p50": _get(base, "latency", "load", "lat_ms", "p50"),
                    "lat_p99": _get(base, "latency", "load", "lat_ms", "p99"),
                    "ttfc_p50": _get(base, "ttfc", "load", "ttfc_ms", "p50"),
                    "ttfc_p99": _get(base, "ttfc", "load", "ttfc_ms", "p99"),
                }[k]
                f[f"added_{k}_ms"] = (
                    round(mine - b, 3) if mine is not None and b is not None else None
                )
            for ph in ("latency", "ttfc", "rps", "streams"):
                f[f"gw_cpu_s_{ph}"] = _get(r, ph, "gateway", "cpu_s")
                f[f"gw_rss_peak_mb_{ph}"] = _get(r, ph, "gateway", "rss_peak_mb")
                f[f"mock_cpu_util_{ph}"] = _get(r, ph, "mock", "cpu_util")
            out.setdefault(name, {})[scen] = f
    return out


@dataclass
class Row:
    figure: str
    num: str
    den: str
    a: float | None
    b: float | None
    op: str  # "<=" or ">=" or "==0"
    target: float

    @property
    def ratio(self) -> float | None:
        if self.op == "==0":
            return self.a
        if self.a is None or self.b is None:
            return None
        # 'Added' figures can come out at or below zero within noise; floor them at 1 µs.
        a, b = max(self.a, 0.001), max(self.b, 0.001)
        return a / b

    @property
    def met(self) -> bool | None:
        r = self.ratio
        if r is None:
            return None
        if self.op == "==0":
            return r == 0
        return r <= self.target if self.op == "<=" else r >= self.target

    def as_dict(self) -> dict[str, Any]:
        r = self.ratio
        return {
            "figure": self.figure,
            "numerator": self.num,
            "denominator": self.den,
            "a": self.a,
            "b": self.b,
            "ratio": round(r, 4) if r is not None else None,
            "target": f"{self.op} {self.target:g}" if self.op != "==0" else "== 0",
            "met": self.met,
        }


def ratios(
    fig: dict[str, dict[str, dict[str, Any]]],
    soak: dict[str, Any] | None,
    billing_ab: dict[str, Any] | None = None,
) -> list[Row]:
    def v(c: str, s: str, k: str) -> Any:
        return _get(fig, c, s, k)

    rows: list[Row] = []
    for s in ("openai", "anthropic"):
        tag = f"[{s}]"
        for k, label in (
            ("added_lat_p50_ms", "added latency p50, c=1 non-stream"),
            ("added_ttfc_p50_ms", "added TTFC p50, c=1 stream"),
        ):
            rows.append(Row(f"{label} {tag}", TR, LL, v(TR, s, k), v(LL, s, k), "<=", 0.1))
            rows.append(Row(f"{label} {tag}", TR, NG, v(TR, s, k), v(NG, s, k), "<=", 2))
        rows.append(Row(f"req/s c=64 {tag}", TR, LL, v(TR, s, "rps"), v(LL, s, "rps"), ">=", 30))
        rows.append(Row(f"req/s c=64 {tag}", TR, NG, v(TR, s, "rps"), v(NG, s, "rps"), ">=", 0.2))
        rows.append(Row(f"1000 streams errors {tag}", TR, "", v(TR, s, "s_errors"), 0, "==0", 0))
        for k, label in (("s_ttfc_p99_ms", "TTFC p99"), ("s_gap_p99_ms", "inter-chunk gap p99")):
            rows.append(
                Row(f"1000 streams {label} {tag}", TR, NG, v(TR, s, k), v(NG, s, k), "<=", 1.5)
            )
        k = "gw_rss_peak_mb_streams"
        rows.append(Row(f"1000 streams gateway RSS {tag}", TR, LL, v(TR, s, k), v(LL, s, k), "<=",
                        0.25))  # fmt: skip
        # Issue 26's absolute ceiling, as a ratio to it: 80 MB at 1,000 live streams.
        rows.append(Row(f"1000 streams gateway RSS ÷ 80 MB {tag}", TR, "80 MB", v(TR, s, k),
                        80.0, "<=", 1))  # fmt: skip
        ab = (billing_ab or {}).get(s)  # interleaved rounds (bench/cpu_cost.py): drift-free
        on, off = (
            (ab["on"]["rps"], ab["off"]["rps"]) if ab else (v(TR, s, "rps"), v(TR_OFF, s, "rps"))
        )
        label = "billing on ÷ off, interleaved" if ab else "billing on ÷ off"
        rows.append(Row(f"req/s c=64 {label} {tag}", TR, TR_OFF, on, off, ">=", 0.9))
    fast, tr = "tokenrelay[openai]", "tokenrelay[translated]"
    for k, label, op, tgt in (
        ("added_lat_p50_ms", "added latency p50, c=1", "<=", 1.5),
        ("added_ttfc_p50_ms", "added TTFC p50, c=1", "<=", 1.5),
        ("rps", "req/s c=64", ">=", 1 / 1.5),
        ("s_gap_p99_ms", "1000 streams gap p99", "<=", 1.5),
    ):
        rows.append(
            Row(f"translated ÷ fast: {label}", tr, fast, v(TR, "translated", k),
                v(TR, "openai", k), op, tgt)
        )  # fmt: skip
    if soak and "rss_ratio" in soak:
        rows.append(
            Row("soak RSS end ÷ after warm-up", f"{TR} end", "warm-up", soak["rss_end_mb"],
                soak["rss_after_warmup_mb"], "<=", 1.10)
        )  # fmt: skip
        rows.append(Row("soak errors", TR, "", soak.get("errors"), 0, "==0", 0))
    return [r for r in rows if r.a is not None]


def _fmt(x: Any, nd: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        if abs(x) >= 100:
            return f"{x:.1f}"
        return f"{x:.{nd}f}".rstrip("0").rstrip(".") if "." in f"{x:.{nd}f}" else f"{x}"
    return str(x)


COLUMNS: list[tuple[str, str]] = [
    ("lat_p50_ms", "lat p50 ms"),
    ("lat_p99_ms", "lat p99 ms"),
    ("added_lat_p50_ms", "added p50 ms"),
    ("added_lat_p99_ms", "added p99 ms"),
    ("ttfc_p50_ms", "TTFC p50 ms"),
    ("ttfc_p99_ms", "TTFC p99 ms"),
    ("added_ttfc_p50_ms", "added TTFC p50"),
    ("added_ttfc_p99_ms", "added TTFC p99"),
]
RPS_COLUMNS = [
    ("rps", "req/s c=64"),
    ("rps_errors", "errors"),
    ("gw_cpu_s_rps", "gw CPU s"),
    ("gw_rss_peak_mb_rps", "gw RSS MB"),
    ("mock_cpu_util_rps", "mock CPU util"),
]
STREAM_COLUMNS = [
    ("s_completed", "completed"),
    ("s_errors", "errors"),
    ("s_ttfc_p99_ms", "TTFC p99 ms"),
    ("s_gap_p99_ms", "gap p99 ms"),
    ("s_gap_added_p99_ms", "gap added p99 ms"),
    ("s_wall_s", "wall s"),
    ("gw_cpu_s_streams", "gw CPU s"),
    ("gw_rss_peak_mb_streams", "gw RSS peak MB"),
    ("mock_cpu_util_streams", "mock CPU util"),
]
CPU_COLUMNS = [
    (f"gw_{m}_{ph}", f"{ph} {'CPU s' if m == 'cpu_s' else 'RSS MB'}")
    for ph in ("latency", "ttfc", "rps", "streams")
    for m in ("cpu_s", "rss_peak_mb")
]


def _table(fig: dict[str, dict[str, dict[str, Any]]], cols: list[tuple[str, str]]) -> list[str]:
    lines = [
        "| contender | scenario | " + " | ".join(h for _, h in cols) + " |",
        "|---|---|" + "---:|" * len(cols),
    ]
    for name, scens in fig.items():
        for s, f in scens.items():
            lines.append(f"| {name} | {s} | " + " | ".join(_fmt(f.get(k)) for k, _ in cols) + " |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    fig = results["figures"]
    rows = results["ratios"]
    meta = results["meta"]
    out = [
        "# tokenrelay benchmark",
        "",
        f"{meta['started']} · mode **{meta['mode']}** · {meta['cpu']} · "
        f"gateway pinned to core {meta['gateway_core']}, mock + load generator to core "
        f"{meta['load_core']} · tokenrelay {meta['tokenrelay_rev']} · "
        f"LiteLLM {meta.get('litellm_version', '?')} · {meta.get('nginx_version', '?')} · "
        f"node {meta.get('node_version', '?')}",
        "",
        "Scenarios: `openai` = OpenAI client → OpenAI vendor, `anthropic` = Anthropic client → "
        "Anthropic vendor (both tokenrelay's fast path), `translated` = OpenAI client → "
        "Anthropic vendor. 'added' = contender − direct (same vendor format).",
        "",
        "## Targets (ratios in this run)",
        "",
        "| figure | numerator | denominator | a | b | a ÷ b | target | met |",
        "|---|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        met = {True: "✅ met", False: "❌ not met", None: "–"}[r["met"]]
        ratio = "–" if r["ratio"] is None else f"{r['ratio']:.3g}"
        out.append(
            f"| {r['figure']} | {r['numerator']} | {r['denominator']} | {_fmt(r['a'])} | "
            f"{_fmt(r['b'])} | {ratio} | {r['target']} | {met} |"
        )
    out += ["", "## Latency at concurrency 1 (non-stream via wrk; streams: time to first chunk)",
            ""]  # fmt: skip
    out += _table(fig, COLUMNS)
    out += ["", "## Throughput at concurrency 64 (non-stream, wrk, one gateway worker)", ""]
    out += _table(fig, RPS_COLUMNS)
    out += ["", "## 1000 concurrent streams × 64 chunks at 20 ms", ""]
    out += _table(fig, STREAM_COLUMNS)
    out += ["", "## Gateway CPU seconds and peak RSS per phase", ""]
    out += _table(fig, CPU_COLUMNS)
    ab = results.get("billing_ab")
    if ab:
        out += [
            "",
            "## Billing on ÷ off, interleaved (bench/cpu_cost.py)",
            "",
            "Both variants running, wrk c=64 rounds alternating between them; medians. CPU per "
            "request is the gateway process's own (utime + stime), the event loop's thread apart.",
            "",
            "| scenario | billing | req/s | CPU µs/request | event loop thread µs/request |",
            "|---|---|---:|---:|---:|",
        ]
        for scen, variants in ab.items():
            for label, m in variants.items():
                out.append(
                    f"| {scen} | {label} | {_fmt(m['rps'])} | {m['cpu_us_per_request']} | "
                    f"{m['main_thread_cpu_us_per_request']} |"
                )
    soak = results.get("soak")
    if soak:
        out += ["", "## Soak", ""]
        if "error" in soak:
            out.append(f"soak failed: {soak['error']}")
        else:
            out.append(
                f"{soak['minutes']} min mixed load on tokenrelay (wrk c=4 per format + 50 "
                f"streams per format): RSS after {soak['warmup_s']:.0f}s warm-up "
                f"{soak['rss_after_warmup_mb']} MB, at end {soak['rss_end_mb']} MB "
                f"(ratio {soak['rss_ratio']}), errors {soak['errors']}, gateway CPU util "
                f"{soak['gateway']['cpu_util']:.0%}."
            )
    notes = [f"- {n}" for n in results.get("notes", [])]
    errors = [
        f"- {name}/{s}: {r['error']}"
        for name, c in results["contenders"].items()
        for s, r in (c.get("scenarios") or {}).items()
        if isinstance(r, dict) and "error" in r
    ] + [f"- {name}: {c['error']}" for name, c in results["contenders"].items() if "error" in c]
    if notes or errors:
        out += ["", "## Notes and failures", "", *notes, *errors]
    return "\n".join(out) + "\n"
