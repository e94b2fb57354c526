"""Which of the gateway's files one request passes through, in order (issue 19's figure).

Starts the gateway in-process (SQLite, emulated vendors), sends one warm-up and then one
request per client API, and records every Python call into `src/tokenrelay` made while the
request is served (sys.setprofile on the server's thread). Prints, per request: the files
entered, how many times control entered each, and the number of module-to-module transitions.

    python -m bench.request_trace            # this checkout
    PYTHONPATH=/path/to/other/src python -m bench.request_trace   # another tree, same venv
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import uvicorn

import tokenrelay

ROOT = str(Path(tokenrelay.__file__).parent)
REQUESTS = {
    "chat": (
        "/api/proxy/v1/chat/completions",
        {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}]},
    ),
    "responses": ("/api/proxy/v1/responses", {"model": "claude-sonnet-4-6", "input": "hi"}),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Recorder:
    def __init__(self) -> None:
        self.on = False
        self.files: list[str] = []

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if not self.on or event != "call":
            return
        name = frame.f_code.co_filename
        if name.startswith(ROOT) and "/emulator/" not in name:
            rel = name[len(ROOT) + 1 :]
            if not self.files or self.files[-1] != rel:
                self.files.append(rel)


def main() -> None:
    from tokenrelay.settings import Settings

    try:
        from tokenrelay.server.app import create_app
    except ImportError:  # the tree before the layout of issue 19
        from tokenrelay.app import create_app  # type: ignore[no-redef]

    tmp = tempfile.mkdtemp()
    port = _free_port()
    settings = Settings(  # type: ignore[call-arg]
        host="127.0.0.1",
        port=port,
        database_url=f"sqlite:///{tmp}/gw.db",
        admin_token="trace-admin",
        emulate="all",
        log_level="warning",
    )
    rec = Recorder()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), port=port, log_level="warning"))

    def run() -> None:
        sys.setprofile(rec)
        asyncio.run(server.serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    key = httpx.post(
        base + "/admin/v1/keys",
        json={"name": "trace", "credits_usd": "10.00"},
        headers={"authorization": "Bearer trace-admin"},
    ).json()["key"]
    headers = {"authorization": f"Bearer {key}"}
    for name, (path, body) in REQUESTS.items():
        httpx.post(base + path, json=body, headers=headers, timeout=30)  # warm caches
        rec.files.clear()
        rec.on = True
        r = httpx.post(base + path, json=body, headers=headers, timeout=30)
        time.sleep(0.2)  # the settlement's tail
        rec.on = False
        assert r.status_code == 200, r.text
        steps = [
            f
            for f in rec.files
            if not f.startswith(("store/", "billing/writer", "billing/journal"))
        ]
        enters = Counter(steps)
        print(f"\n{name}: {len(set(steps))} files, {len(steps) - 1} transitions")
        for f, n in enters.most_common():
            print(f"  {n:3d}  {f}")
    server.should_exit = True
    thread.join(timeout=10)
    os._exit(0)


if __name__ == "__main__":
    main()
