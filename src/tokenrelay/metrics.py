"""Prometheus metrics: one observation per finished request, read from its accounting context.

Nothing here runs per token or per chunk: the relay calls `observe` once, when a request ends
(about 4 µs). With several worker processes, set PROMETHEUS_MULTIPROC_DIR (prometheus-client's
multi-process mode) and /metrics adds up every worker's figures.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response

from tokenrelay.metering import RequestContext

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

REQUESTS = Counter(
    "tokenrelay_requests_total",
    "Requests by client API, model, vendor and outcome.",
    ["api", "model", "vendor", "status"],
)
TOKENS = Counter(
    "tokenrelay_tokens_total",
    "Billed tokens by model and kind (input, output, cache_read, cache_write).",
    ["model", "kind"],
)
COST = Counter("tokenrelay_cost_usd_total", "Billed cost in USD by model.", ["model"])
DURATION = Histogram(
    "tokenrelay_request_duration_seconds",
    "Whole request time, by vendor and whether it streamed.",
    ["vendor", "stream"],
    buckets=_SECONDS,
)
FIRST_BYTE = Histogram(
    "tokenrelay_time_to_first_byte_seconds",
    "Time until the first byte of the answer reached the client, by vendor.",
    ["vendor"],
    buckets=_SECONDS,
)
RETRIES = Counter(
    "tokenrelay_upstream_retries_total", "Vendor attempts beyond the first.", ["vendor"]
)
IN_FLIGHT = Gauge(
    "tokenrelay_requests_in_flight", "Requests being served.", multiprocess_mode="livesum"
)


class _Bound:
    """One (api, model, vendor, status)'s metric children, looked up once: `labels()` checks
    and locks on every call, which was most of the cost of an observation."""

    __slots__ = ("cache_read", "cache_write", "cost", "duration", "first_byte", "input",
                 "output", "requests", "retries")  # fmt: skip

    def __init__(self, api: str, model: str, vendor: str, status: str, stream: bool) -> None:
        self.requests = REQUESTS.labels(api, model, vendor, status)
        self.duration = DURATION.labels(vendor, "true" if stream else "false")
        self.first_byte = FIRST_BYTE.labels(vendor)
        self.retries = RETRIES.labels(vendor)
        self.cost = COST.labels(model)
        self.input = TOKENS.labels(model, "input")
        self.output = TOKENS.labels(model, "output")
        self.cache_read = TOKENS.labels(model, "cache_read")
        self.cache_write = TOKENS.labels(model, "cache_write")


_bound: dict[tuple[str, str, str, str, bool], _Bound] = {}


def observe(ctx: RequestContext) -> None:
    key = (ctx.client_format, ctx.model_id or "-", ctx.vendor or "-", ctx.status, ctx.stream)
    m = _bound.get(key)
    if m is None:
        m = _bound[key] = _Bound(*key)
    m.requests.inc()
    if ctx.duration_ms is not None:
        m.duration.observe(ctx.duration_ms / 1e3)
    if ctx.first_byte_ms is not None:
        m.first_byte.observe(ctx.first_byte_ms / 1e3)
    if ctx.attempts > 1:
        m.retries.inc(ctx.attempts - 1)
    if ctx.cost_nano:
        m.cost.inc(ctx.cost_nano / 1e9)
    u = ctx.usage
    if u.input:
        m.input.inc(u.input)
    if u.output:
        m.output.inc(u.output)
    if u.cache_read:
        m.cache_read.inc(u.cache_read)
    if u.cache_write:
        m.cache_write.inc(u.cache_write)


async def metrics_endpoint(request: Request) -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
