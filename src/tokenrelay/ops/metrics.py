"""Prometheus metrics: one observation per finished request, read from its accounting context.

Nothing here runs per token or per chunk: the relay calls `observe` once, when a request ends.
The library's metric objects take a lock and search buckets on every update (about 10 µs of a
request's ~150 µs on the benchmark), so one process keeps plain integers and floats instead and
a collector turns them into metric families when /metrics is scraped. With several worker
processes (PROMETHEUS_MULTIPROC_DIR set, prometheus-client's multi-process mode) the library's
own metrics are used, so /metrics adds up every worker's figures.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from tokenrelay.billing.metering import RequestContext

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

_REQUESTS = ("tokenrelay_requests", "Requests by client API, model, vendor and outcome.")
_TOKENS = ("tokenrelay_tokens", "Billed tokens by model and kind (input, output, cache_read, ...).")
_COST = ("tokenrelay_cost_usd", "Billed cost in USD by model.")
_DURATION = ("tokenrelay_request_duration_seconds", "Whole request time, by vendor and stream.")
_FIRST_BYTE = ("tokenrelay_time_to_first_byte_seconds", "Until the answer's first byte, by vendor.")
_RETRIES = ("tokenrelay_upstream_retries", "Vendor attempts beyond the first.")
_IN_FLIGHT = ("tokenrelay_requests_in_flight", "Requests being served.")
_FALLBACKS = ("tokenrelay_fallbacks", "Requests answered by a fallback model, by model asked.")
_DEPLOYMENT_UP = (
    "tokenrelay_deployment_up",
    "1 while a vendor deployment takes requests (healthy or probing), 0 while cooling down, "
    "drained or removed; `state` says which (as this process sees it).",
)
_DEPLOYMENT_IN_FLIGHT = ("tokenrelay_deployment_in_flight", "Vendor calls open per deployment.")
_DEPLOYMENT_FAILURES = ("tokenrelay_deployment_failures", "Failed vendor calls per deployment.")


class DeploymentView(Protocol):
    """What the deployment metrics read of a deployment (pools.Deployment has these)."""

    @property
    def vendor(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def total_failures(self) -> int: ...
    def state(self, now: float) -> str: ...


# Set by the app: the deployments of this process, read at scrape time only.
_deployments: Callable[[], Iterable[DeploymentView]] = tuple


class _Histogram:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one: above every bound (+Inf)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.total += value

    def family_buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*map(str, BUCKETS), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


class _Series:
    """One (api, model, vendor, status, stream)'s figures."""

    __slots__ = ("cost_nano", "duration", "first_byte", "requests", "retries", "tokens")

    def __init__(self) -> None:
        self.requests = 0
        self.retries = 0
        self.cost_nano = 0
        self.tokens = [0, 0, 0, 0]
        self.duration = _Histogram()
        self.first_byte = _Histogram()


_series: dict[tuple[str, str, str, str, bool], _Series] = {}
_in_flight = 0
_fallbacks: dict[str, int] = {}  # by the model asked


def watch_deployments(source: Callable[[], Iterable[DeploymentView]]) -> None:
    """The deployments whose health /metrics shows (the app's pools)."""
    global _deployments
    _deployments = source


def _deployment_families() -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    up = GaugeMetricFamily(*_DEPLOYMENT_UP, labels=["vendor", "deployment", "state"])
    in_flight = GaugeMetricFamily(*_DEPLOYMENT_IN_FLIGHT, labels=["vendor", "deployment"])
    failures = CounterMetricFamily(*_DEPLOYMENT_FAILURES, labels=["vendor", "deployment"])
    now = time.monotonic()
    for d in _deployments():
        state = d.state(now)
        up.add_metric([d.vendor, d.name, state], 1 if state in ("healthy", "probing") else 0)
        in_flight.add_metric([d.vendor, d.name], d.in_flight)
        failures.add_metric([d.vendor, d.name], d.total_failures)
    yield from (up, in_flight, failures)


class _DeploymentCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        return _deployment_families()


def request_started() -> None:
    global _in_flight
    _in_flight += 1
    if _LIB is not None:
        _LIB.in_flight.inc()


def observe(ctx: RequestContext) -> None:
    """The finished request's figures (and the end of its in-flight count)."""
    global _in_flight
    _in_flight -= 1
    if _LIB is not None:
        _LIB.observe(ctx)
        return
    key = (ctx.client_format, ctx.model_id or "-", ctx.vendor or "-", ctx.status, ctx.stream)
    s = _series.get(key)
    if s is None:
        s = _series[key] = _Series()
    s.requests += 1
    if ctx.duration_ms is not None:
        s.duration.observe(ctx.duration_ms / 1e3)
    if ctx.first_byte_ms is not None:
        s.first_byte.observe(ctx.first_byte_ms / 1e3)
    if ctx.attempts > 1:
        s.retries += ctx.attempts - 1
    if ctx.fallback_from:
        _fallbacks[ctx.fallback_from] = _fallbacks.get(ctx.fallback_from, 0) + 1
    s.cost_nano += ctx.cost_nano or 0
    u, t = ctx.usage, s.tokens
    t[0] += u.input
    t[1] += u.output
    t[2] += u.cache_read
    t[3] += u.cache_write


class _Collector(Collector):
    """Sums the series by each metric's own labels at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        requests = CounterMetricFamily(*_REQUESTS, labels=["api", "model", "vendor", "status"])
        tokens = CounterMetricFamily(*_TOKENS, labels=["model", "kind"])
        cost = CounterMetricFamily(*_COST, labels=["model"])
        retries = CounterMetricFamily(*_RETRIES, labels=["vendor"])
        fallbacks = CounterMetricFamily(*_FALLBACKS, labels=["model"])
        duration = HistogramMetricFamily(*_DURATION, labels=["vendor", "stream"])
        first_byte = HistogramMetricFamily(*_FIRST_BYTE, labels=["vendor"])
        by: dict[str, dict[tuple[str, ...], list[_Series]]] = {
            k: {} for k in ("requests", "model", "vendor", "duration")
        }
        for (api, model, vendor, status, stream), s in list(_series.items()):
            by["requests"].setdefault((api, model, vendor, status), []).append(s)
            by["model"].setdefault((model,), []).append(s)
            by["vendor"].setdefault((vendor,), []).append(s)
            by["duration"].setdefault((vendor, "true" if stream else "false"), []).append(s)
        for labels, group in by["requests"].items():
            requests.add_metric(list(labels), sum(s.requests for s in group))
        for (model,), group in by["model"].items():
            cost.add_metric([model], sum(s.cost_nano for s in group) / 1e9)
            for i, kind in enumerate(_TOKEN_KINDS):
                tokens.add_metric([model, kind], sum(s.tokens[i] for s in group))
        for (vendor,), group in by["vendor"].items():
            retries.add_metric([vendor], sum(s.retries for s in group))
            first_byte.add_metric([vendor], *_merged([s.first_byte for s in group]))
        for labels, group in by["duration"].items():
            duration.add_metric(list(labels), *_merged([s.duration for s in group]))
        for model, n in list(_fallbacks.items()):
            fallbacks.add_metric([model], n)
        in_flight = GaugeMetricFamily(*_IN_FLIGHT)
        in_flight.add_metric([], _in_flight)
        yield from (requests, tokens, cost, retries, fallbacks, duration, first_byte, in_flight)


def _merged(hists: list[_Histogram]) -> tuple[list[tuple[str, float]], float]:
    total = _Histogram()
    for h in hists:
        total.counts = [a + b for a, b in zip(total.counts, h.counts, strict=True)]
        total.total += h.total
    return total.family_buckets(), total.total


class _Library:
    """The library's own metrics, for multi-process mode (files shared by the workers)."""

    def __init__(self) -> None:
        self.requests = Counter(*_REQUESTS, ["api", "model", "vendor", "status"])
        self.tokens = Counter(*_TOKENS, ["model", "kind"])
        self.cost = Counter(*_COST, ["model"])
        self.retries = Counter(*_RETRIES, ["vendor"])
        self.fallbacks = Counter(*_FALLBACKS, ["model"])
        self.duration = Histogram(*_DURATION, ["vendor", "stream"], buckets=BUCKETS)
        self.first_byte = Histogram(*_FIRST_BYTE, ["vendor"], buckets=BUCKETS)
        self.in_flight = Gauge(*_IN_FLIGHT, multiprocess_mode="livesum")

    def observe(self, ctx: RequestContext) -> None:
        model, vendor = ctx.model_id or "-", ctx.vendor or "-"
        self.in_flight.dec()
        self.requests.labels(ctx.client_format, model, vendor, ctx.status).inc()
        if ctx.duration_ms is not None:
            stream = "true" if ctx.stream else "false"
            self.duration.labels(vendor, stream).observe(ctx.duration_ms / 1e3)
        if ctx.first_byte_ms is not None:
            self.first_byte.labels(vendor).observe(ctx.first_byte_ms / 1e3)
        if ctx.attempts > 1:
            self.retries.labels(vendor).inc(ctx.attempts - 1)
        if ctx.fallback_from:
            self.fallbacks.labels(ctx.fallback_from).inc()
        self.cost.labels(model).inc((ctx.cost_nano or 0) / 1e9)
        u = ctx.usage
        for kind, n in zip(
            _TOKEN_KINDS, (u.input, u.output, u.cache_read, u.cache_write), strict=True
        ):
            if n:
                self.tokens.labels(model, kind).inc(n)


_LIB = _Library() if MULTIPROCESS else None
if not MULTIPROCESS:
    REGISTRY.register(_Collector())
    REGISTRY.register(_DeploymentCollector())


async def metrics_endpoint(request: Request) -> Response:
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        # Deployment health as the worker answering the scrape sees it (drains are shared by
        # every worker; cooldowns are each worker's own).
        registry.register(_DeploymentCollector())
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
