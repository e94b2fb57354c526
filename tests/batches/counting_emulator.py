"""The vendor emulator as a server of its own, counting the calls that carry each marker
(`#line-N` in the body): which batch line reached a vendor, and how many times. The gateways
under test point at it (emulator_url), so it outlives their restarts."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from typing import Any

import uvicorn

from gateway_support import free_port
from tokenrelay.emulator.app import create_app

_MARK = re.compile(rb"#line-(\d+)")


class CountingEmulator:
    def __init__(self) -> None:
        self.calls: Counter[int] = Counter()
        self.port = free_port()
        inner = create_app()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["method"] != "POST":
                await inner(scope, receive, send)
                return
            chunks = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            body = b"".join(chunks)
            # Each line once per call: a vendor batch carries many lines in one body.
            for n in {int(m.group(1)) for m in _MARK.finditer(body)}:
                self.calls[n] += 1
            replayed = False

            async def replay() -> dict[str, Any]:
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

            await inner(scope, replay, send)

        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> CountingEmulator:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("emulator did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
