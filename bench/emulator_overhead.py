"""Added latency of the gateway over calling the vendor emulator directly, per vendor.

    .venv/bin/python -m bench.emulator_overhead [--n 300]

Starts the emulator (`python -m tokenrelay.emulator`) and a gateway whose vendors all point at
it (`TOKENRELAY_EMULATOR_URL`), then alternates identical requests — straight to the emulator
in the vendor's own wire format, and through the gateway with the client API that is the
vendor's fast path (Anthropic Messages for Claude, Chat Completions for OpenAI, xAI and
DeepSeek; Gemini is always translated) and with the other API — on keep-alive connections,
one at a time. Reports the median and p90 of (gateway − direct) for a whole non-stream answer
and for the time to the first content byte of a stream. Interleaving makes both sides see the
same machine noise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
PROMPT = "Say hello. [[words:20]]"
MODELS = {  # vendor: (catalog model, upstream model id)
    "anthropic": ("claude-sonnet-4-6", "claude-sonnet-4-6"),
    "openai": ("gpt-4o", "gpt-4o"),
    "gemini": ("gemini-2.5-flash", "gemini-2.5-flash"),
    "xai": ("grok-4.3", "grok-4.3"),
    "deepseek": ("deepseek-chat", "deepseek-v4-flash"),
}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: process exited")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def _direct(
    emu: str, vendor: str, model: str, stream: bool
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """URL, body and headers for the vendor's own API on the emulator."""
    if vendor == "anthropic":
        body = {"model": model, "max_tokens": 256, "stream": stream,
                "messages": [{"role": "user", "content": PROMPT}]}  # fmt: skip
        return (
            f"{emu}/anthropic/v1/messages",
            body,
            {"x-api-key": "k", "anthropic-version": "2023-06-01"},
        )
    if vendor == "gemini":
        verb = "streamGenerateContent?alt=sse" if stream else "generateContent"
        body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
        return f"{emu}/gemini/v1beta/models/{model}:{verb}", body, {"x-goog-api-key": "k"}
    base = {"openai": "/openai/v1", "xai": "/xai/v1", "deepseek": "/deepseek"}[vendor]
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": PROMPT}]}
    return f"{emu}{base}/chat/completions", body, {"authorization": "Bearer k"}


def _gateway(
    gw: str, key: str, api: str, model: str, stream: bool
) -> tuple[str, dict[str, Any], dict[str, str]]:
    msgs = [{"role": "user", "content": PROMPT}]
    if api == "anthropic":
        body = {"model": model, "max_tokens": 256, "stream": stream, "messages": msgs}
        return (
            f"{gw}/api/proxy/v1/messages",
            body,
            {"x-api-key": key, "anthropic-version": "2023-06-01"},
        )
    return (
        f"{gw}/api/proxy/v1/chat/completions",
        {"model": model, "stream": stream, "messages": msgs},
        {"authorization": f"Bearer {key}"},
    )


def _timed(
    client: httpx.Client, req: tuple[str, dict[str, Any], dict[str, str]], stream: bool
) -> float:
    url, body, headers = req
    t0 = time.perf_counter()
    if not stream:
        r = client.post(url, json=body, headers=headers)
        r.raise_for_status()
        return time.perf_counter() - t0
    with client.stream("POST", url, json=body, headers=headers) as r:
        r.raise_for_status()
        lines = r.iter_lines()
        for line in lines:  # first event that carries content
            if '"text' in line or '"content":"' in line:
                elapsed = time.perf_counter() - t0
                break
        else:
            raise RuntimeError(f"no content in the stream from {url}")
        for _ in lines:  # read to the end: the connection goes back to the pool
            pass
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300, help="requests per cell and side")
    args = ap.parse_args()
    emu_port, gw_port = _free_port(), _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="tr-overhead-"))
    env = {**os.environ, "TOKENRELAY_EMULATE": "all", "TOKENRELAY_EMULATOR_URL": f"http://127.0.0.1:{emu_port}",
           "TOKENRELAY_DATABASE_URL": f"sqlite:///{tmp}/gw.db", "TOKENRELAY_ADMIN_TOKEN": "adm",
           "TOKENRELAY_LOG_LEVEL": "warning"}  # fmt: skip
    exe = Path(sys.executable)
    emu = subprocess.Popen(
        [str(exe), "-m", "tokenrelay.emulator", "--port", str(emu_port)], env=env
    )
    gw = subprocess.Popen(
        [str(exe.with_name("tokenrelay")), "serve", "--port", str(gw_port)], env=env
    )
    procs = [emu, gw]
    try:
        emu_url, gw_url = f"http://127.0.0.1:{emu_port}", f"http://127.0.0.1:{gw_port}"
        _wait(emu_url + "/_stats", emu)
        _wait(gw_url + "/healthz", gw)
        key = httpx.post(
            f"{gw_url}/admin/v1/keys",
            headers={"authorization": "Bearer adm"},
            json={"name": "overhead", "credits_usd": "100000"},
        ).json()["key"]
        rows: list[dict[str, Any]] = []
        with httpx.Client(timeout=30) as client:
            for vendor, (model, upstream) in MODELS.items():
                native = "anthropic" if vendor == "anthropic" else "openai"
                for api in (native, "openai" if native == "anthropic" else "anthropic"):
                    for stream in (False, True):
                        direct = _direct(emu_url, vendor, upstream, stream)
                        via = _gateway(gw_url, key, api, model, stream)
                        added: list[float] = []
                        for i in range(args.n + 20):
                            d, g = _timed(client, direct, stream), _timed(client, via, stream)
                            if i >= 20:  # warm-up: pools, caches, lazy imports
                                added.append((g - d) * 1000)
                        q = statistics.quantiles(added, n=10)
                        row = {
                            "vendor": vendor,
                            "api": api,
                            "path": "fast"
                            if api == native and vendor != "gemini"
                            else "translated",
                            "mode": "ttft" if stream else "non-stream",
                            "added_ms_p50": round(statistics.median(added), 3),
                            "added_ms_p90": round(q[8], 3),
                        }
                        rows.append(row)
                        print(json.dumps(rows[-1]), flush=True)
        _report(rows)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)


def _report(rows: list[dict[str, Any]]) -> None:
    print("\n| vendor | client API | path | mode | added p50 ms | added p90 ms |")
    print("|---|---|---|---|---:|---:|")
    for r in rows:
        cells = [r["vendor"], r["api"], r["path"], r["mode"], r["added_ms_p50"], r["added_ms_p90"]]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    for mode in ("non-stream", "ttft"):
        p50s = [r["added_ms_p50"] for r in rows if r["mode"] == mode]
        print(f"{mode}: median over the cells of the added p50 = {statistics.median(p50s):.3f} ms")


if __name__ == "__main__":
    main()
