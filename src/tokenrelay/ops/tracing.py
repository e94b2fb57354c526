"""Optional OpenTelemetry traces: a span per proxied request and a child span per vendor
attempt. Off unless TOKENRELAY_OTEL=on (or `auto`, the default, with the standard
OTEL_EXPORTER_OTLP_ENDPOINT set); off, the relay holds None and calls nothing here, and
OpenTelemetry is never imported. Install it with the `otel` extra (`tokenrelay[otel]`).

A tracer provider the process already has (opentelemetry-instrument, or a test's) is used as
it is; otherwise one is set up that exports over OTLP/HTTP as the standard OTEL_* variables
say. Spans name the key by its id, never the key.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from tokenrelay import __version__
from tokenrelay.billing.metering import RequestContext

log = logging.getLogger("tokenrelay.ops.tracing")

_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def wanted(setting: str) -> bool:
    if setting == "auto":
        return any(os.environ.get(v) for v in _ENDPOINT_VARS)
    return setting == "on"


def tracing_for(setting: str) -> Tracing | None:
    """The tracer when traces are on, else None (nothing imported)."""
    if not wanted(setting):
        return None
    try:
        return Tracing(_provider())
    except ImportError as exc:
        if setting == "on":
            raise RuntimeError(
                "TOKENRELAY_OTEL=on needs OpenTelemetry: pip install 'tokenrelay[otel]'"
            ) from exc
        log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed")
        return None


def _provider() -> Any:
    from opentelemetry import trace

    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider):
        return current  # configured already (auto-instrumentation, a test)
    # The `otel` extra's exporter; the dev environment has the SDK only (tests export in memory).
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found, unused-ignore]
        OTLPSpanExporter,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES still win over this default name.
    provider = TracerProvider(resource=Resource.create({"service.name": "tokenrelay"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    log.warning("OpenTelemetry traces on, exported over OTLP/HTTP")
    return provider


class Tracing:
    def __init__(self, provider: Any) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._context = context
        self._in_context = trace.set_span_in_context
        self._server, self._client = SpanKind.SERVER, SpanKind.CLIENT
        self._error = lambda text: Status(StatusCode.ERROR, text)
        self.tracer = provider.get_tracer("tokenrelay", __version__)

    def start(self, ctx: RequestContext) -> tuple[Any, Any]:
        """The request's span, current for its task until `finish`: attempts become its
        children."""
        span = self.tracer.start_span(
            "tokenrelay.request",
            kind=self._server,
            attributes={
                "tokenrelay.request_id": ctx.request_id,
                "tokenrelay.api": ctx.client_format,
            },
        )
        return span, self._context.attach(self._in_context(span))

    def attempt(
        self, deployment: str, started_ns: int, status: int | None, error: str | None
    ) -> None:
        """One vendor attempt, from its start to the vendor's status (or its failure)."""
        attributes: dict[str, Any] = {"tokenrelay.deployment": deployment}
        if status is not None:
            attributes["http.response.status_code"] = status
        span = self.tracer.start_span(
            "tokenrelay.upstream_attempt",
            kind=self._client,
            start_time=started_ns,
            attributes=attributes,
        )
        if error is None and status is not None and status >= 400:
            error = f"HTTP {status}"
        if error is not None:
            span.set_status(self._error(error))
        span.end()

    def finish(self, handle: tuple[Any, Any], ctx: RequestContext) -> None:
        span, token = handle
        self._context.detach(token)
        if not span.is_recording():  # sampled out
            span.end()
            return
        u = ctx.usage
        values = {
            "tokenrelay.key_id": ctx.key_id,
            "tokenrelay.model": ctx.model_id or ctx.model_asked or None,
            "tokenrelay.model_asked": ctx.model_asked or None,
            "tokenrelay.vendor": ctx.vendor or None,
            "tokenrelay.deployment": ctx.deployment or None,
            "tokenrelay.fallback_from": ctx.fallback_from or None,
            "tokenrelay.stream": ctx.stream,
            "tokenrelay.status": ctx.status,
            "tokenrelay.attempts": ctx.attempts,
            "http.response.status_code": ctx.http_status,
            "tokenrelay.input_tokens": u.input,
            "tokenrelay.output_tokens": u.output,
            "tokenrelay.cache_read_tokens": u.cache_read,
            "tokenrelay.cost_nano": ctx.cost_nano,
            "tokenrelay.ttft_ms": round(ctx.first_byte_ms, 1) if ctx.first_byte_ms else None,
        }
        span.set_attributes({k: v for k, v in values.items() if v is not None})
        if ctx.status != "ok":
            span.set_status(self._error(ctx.error or ctx.status))
        span.end()
