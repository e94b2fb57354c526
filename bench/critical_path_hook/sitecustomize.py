"""Loaded into the gateway by `python -m bench.critical_path` (through PYTHONPATH): marks the
event loop thread's CPU clock at the edges of the request path and writes, every 500 requests,
the median CPU µs between consecutive marks of one unary request at c=1 (arrival of the client's
bytes → the answer's write). Each mark costs ~1 µs of its own, which is in the figures."""

from __future__ import annotations

import functools
import inspect
import itertools
import os
import statistics
import time
from collections import defaultdict
from typing import Any

_clock = time.thread_time
_marks: list[tuple[str, float]] = []
_spans: defaultdict[str, list[float]] = defaultdict(list)
_order: list[str] = []  # the spans in path order, from the request that passed the most marks
OUT = os.environ.get("CRITICAL_PATH_OUT", "/tmp/critical-path.txt")

# (module, attribute path, label): each wrapped call marks "label>" on entry, "label<" on exit.
POINTS = [
    ("tokenrelay.server.http_guard", "GuardedHttpToolsProtocol.on_headers_complete", "headers"),
    ("uvicorn.protocols.http.httptools_impl", "RequestResponseCycle.run_asgi", "asgi"),
    ("tokenrelay.gateway.relay", "receive_request", "receive_request"),
    ("tokenrelay.gateway.relay", "Relay.take_in", "parse"),
    ("tokenrelay.gateway.relay", "decide", "decide"),
    (
        "tokenrelay.billing.engine",
        "BillingEngine.admit",
        "admit",
    ),  # what BillingMeter.admit returns
    ("tokenrelay.upstreams.http_client", "_Connection.send", "upstream_write"),
    ("tokenrelay.upstreams.http_client", "_Connection.data_received", "upstream_data"),
    ("tokenrelay.billing.meter", "BillingMeter.settle", "settle"),
    ("uvicorn.protocols.http.httptools_impl", "RequestResponseCycle.send", "asgi_send"),
]


def _mark(name: str) -> None:
    _marks.append((name, _clock()))


def _wrap(owner: Any, attr: str, label: str) -> None:
    fn = getattr(owner, attr)
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def marked_async(*args: Any, **kwargs: Any) -> Any:
            _mark(label + ">")
            try:
                return await fn(*args, **kwargs)
            finally:
                _mark(label + "<")

        setattr(owner, attr, marked_async)
    else:

        @functools.wraps(fn)
        def marked(*args: Any, **kwargs: Any) -> Any:
            _mark(label + ">")
            try:
                return fn(*args, **kwargs)
            finally:
                _mark(label + "<")

        setattr(owner, attr, marked)


def _dump() -> None:
    with open(OUT, "w") as f:
        for span in _order:
            values = _spans[span][len(_spans[span]) // 5 :]  # the first fifth: warming up
            if values:
                f.write(f"{1e6 * statistics.median(values):.1f}\t{len(values)}\t{span}\n")


def _install() -> None:
    import importlib

    from tokenrelay.server import http_guard

    for module, path, label in POINTS:
        owner: Any = importlib.import_module(module)
        *parents, attr = path.split(".")
        for p in parents:
            owner = getattr(owner, p)
        _wrap(owner, attr, label)

    received = http_guard.GuardedHttpToolsProtocol.data_received

    def data_received(self: Any, data: bytes) -> None:
        _marks.clear()
        _mark("client_bytes")
        received(self, data)

    http_guard.GuardedHttpToolsProtocol.data_received = data_received  # type: ignore[method-assign]

    write = http_guard.CoalescingTransport.write
    write_now = getattr(http_guard.CoalescingTransport, "write_now", None)

    def write_marked(self: Any, data: bytes) -> None:
        answer = self._held is not None  # the body after a held head: the whole answer goes
        write(self, data)
        if answer:
            _answered()

    def write_now_marked(self: Any, data: bytes) -> None:  # a whole answer (write_whole)
        assert write_now is not None
        write_now(self, data)
        _answered()

    def _answered() -> None:
        if _marks and _marks[0][0] == "client_bytes":
            _mark("answer_written")
            pairs = list(itertools.pairwise(_marks))
            if len(pairs) >= len(_order):  # not the key's creation nor an error: the relay's
                _order[:] = [*(f"{a} → {b}" for (a, _), (b, _) in pairs), "whole request"]
            for (a, t1), (b, t2) in pairs:
                _spans[f"{a} → {b}"].append(t2 - t1)
            _spans["whole request"].append(_marks[-1][1] - _marks[0][1])
            _marks.clear()
            if len(_spans["whole request"]) % 500 == 0:
                _dump()

    http_guard.CoalescingTransport.write = write_marked
    if write_now is not None:
        http_guard.CoalescingTransport.write_now = write_now_marked


_install()
