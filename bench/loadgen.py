"""Drive the native load generators: wrk (non-stream) and streams.js (SSE), on the load core."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import codex_prompt
from bench.proc import LOAD_CORE

HERE = Path(__file__).resolve().parent
WRK_LUA = HERE / "load" / "post.lua"
STREAMS_JS = HERE / "load" / "streams.js"

STREAM_CHUNKS = 64
STREAM_INTERVAL_MS = 20
SMALL_CHUNKS = 4  # the mock's default stream: 4 content chunks, no delay


@dataclass(frozen=True)
class Target:
    """Where one scenario sends its requests, and in which client format."""

    url: str
    fmt: str  # "openai" | "anthropic" | "responses" | "gemini"
    model: str
    headers: dict[str, str] = field(default_factory=dict)
    prompt_kb: int = 0  # a coding agent's body of about this size (bench.codex_prompt), not 0

    def body(self, stream: bool, marker: str = "") -> str:
        prompt = "Say hello." + (f" {marker}" if marker else "")
        if self.prompt_kb:
            return codex_prompt.body(self.fmt, self.model, self.prompt_kb, prompt, stream)
        if self.fmt == "responses":
            body: dict[str, Any] = {"model": self.model, "max_output_tokens": 256, "input": prompt}
            return json.dumps({**body, "stream": True} if stream else body, separators=(",", ":"))
        if self.fmt == "gemini":  # the model and streaming are in the URL
            gemini = {
                "contents": [{"role": "user", "parts": [{"text": prompt}]}],
                "generationConfig": {"maxOutputTokens": 256},
            }
            return json.dumps(gemini, separators=(",", ":"))
        msg: dict[str, Any] = {
            "model": self.model,
            "max_tokens": 256,
            "messages": [{"role": "user", "content": prompt}],
        }
        if stream:
            msg["stream"] = True
        return json.dumps(msg, separators=(",", ":"))


def stream_marker(chunks: int, interval_ms: int, wait_ms: int = 0) -> str:
    """The mock's marker: `chunks` content chunks `interval_ms` apart, the answer held
    `wait_ms` first (a model thinking before its first token)."""
    wait = f":wait={wait_ms}" if wait_ms else ""
    return f"bench:chunks={chunks}:interval={interval_ms}{wait}"


def check(target: Target, stream: bool) -> str | None:
    """One request; None when it works, else a short description of what went wrong."""
    req = urllib.request.Request(
        target.url,
        data=target.body(stream).encode(),
        headers={"content-type": "application/json", **target.headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}: {e.read()[:300].decode(errors='replace')}"
    except OSError as e:
        return f"{type(e).__name__}: {e}"
    if '"tok' not in text and "Hello from the bench mock" not in text:
        return f"unexpected body: {text[:300]}"
    return None


def _last_line(out: str, tag: str) -> dict[str, Any]:
    for line in reversed(out.splitlines()):
        if line.startswith(tag + " "):
            parsed: dict[str, Any] = json.loads(line[len(tag) + 1 :])
            return parsed
    raise RuntimeError(f"no {tag} line in output:\n{out[-2000:]}")


def wrk(
    target: Target, connections: int, seconds: float, *, timeout_s: int = 30, marker: str = ""
) -> dict[str, Any]:
    """Non-stream load with wrk (one thread); with a `stream_marker`, streams of that shape.
    Latency in ms, rps, errors."""
    env = dict(os.environ)
    env["WRK_BODY"] = target.body(stream=bool(marker), marker=marker)
    env["WRK_HEADERS"] = "\n".join(f"{k}: {v}" for k, v in target.headers.items())
    cmd = [
        "taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}",
        f"-d{max(1, round(seconds))}s", f"--timeout={timeout_s}s", "-s", str(WRK_LUA), target.url,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 120)
    raw = _last_line(proc.stdout, "WRKJSON")
    errors = sum(
        raw[k]
        for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    dur = raw["duration_us"] / 1e6
    return {
        "connections": connections,
        "requests": raw["requests"],
        "duration_s": round(dur, 3),
        "rps": round(raw["requests"] / dur, 1) if dur else 0.0,
        "errors": errors,
        "error_kinds": {k: raw[k] for k in raw if k.endswith("errors") or k == "timeouts"},
        "lat_ms": {
            "p50": raw["lat_p50_us"] / 1000,
            "p90": raw["lat_p90_us"] / 1000,
            "p99": raw["lat_p99_us"] / 1000,
            "max": raw["lat_max_us"] / 1000,
            "mean": round(raw["lat_mean_us"] / 1000, 3),
        },
    }


def streams(
    target: Target,
    concurrency: int,
    *,
    total: int | None = None,
    duration_s: float | None = None,
    chunks: int = SMALL_CHUNKS,
    interval_ms: int = 0,
    ramp_ms: int = 0,
    timeout_ms: int = 120_000,
    wait_ms: int = 0,
) -> dict[str, Any]:
    """SSE load with the Node client: TTFC and inter-chunk gaps in ms, errors."""
    marker = stream_marker(chunks, interval_ms, wait_ms) if interval_ms or wait_ms else ""
    cfg: dict[str, Any] = {
        "url": target.url,
        "headers": target.headers,
        "body": target.body(stream=True, marker=marker),
        "concurrency": concurrency,
        "chunks": chunks,
        "ramp_ms": ramp_ms,
        "timeout_ms": timeout_ms,
    }
    if total is not None:
        cfg["total"] = total
    if duration_s is not None:
        cfg["duration_s"] = duration_s
    cmd = ["taskset", "-c", LOAD_CORE, "node", str(STREAMS_JS), json.dumps(cfg)]
    limit = (duration_s or 0) + timeout_ms / 1000 * ((total or concurrency) / concurrency + 1) + 60
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
    out = _last_line(proc.stdout, "STREAMJSON")
    out["concurrency"] = concurrency
    out["chunks"] = chunks
    out["interval_ms"] = interval_ms
    if interval_ms and out["gap_ms"]["p99"] is not None:
        out["gap_added_ms"] = {
            k: round(out["gap_ms"][k] - interval_ms, 3) for k in ("p50", "p90", "p99")
        }
    return out
