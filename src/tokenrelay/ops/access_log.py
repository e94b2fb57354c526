"""One access log line per finished request (TOKENRELAY_ACCESS_LOG=on), on the
`tokenrelay.access` logger: key=value text, or JSON fields with TOKENRELAY_LOG_FORMAT=json.

It names the key by its id, never the key. Called once per request, where the metrics are
observed; off (the default), the relay does not call it at all.
"""

from __future__ import annotations

import logging

from tokenrelay.billing.metering import RequestContext
from tokenrelay.ops.log_format import Fields

ACCESS = logging.getLogger("tokenrelay.access")


def enable() -> None:
    """Access lines are INFO: shown whatever TOKENRELAY_LOG_LEVEL says of other loggers."""
    ACCESS.setLevel(logging.INFO)


def log_request(ctx: RequestContext) -> None:
    """The request's line: its figures, as billed; times from its arrival."""
    u = ctx.usage
    ttft = ctx.first_byte_ms
    fields = {
        "request_id": ctx.request_id,
        "key_id": ctx.key_id,
        "api": ctx.client_format,
        "model": ctx.model_id or ctx.model_asked or None,
        "vendor": ctx.vendor or None,
        "http_status": ctx.http_status,
        "status": ctx.status,
        "error": ctx.error,
        "stream": ctx.stream,
        "fast_path": ctx.fast_path,
        "attempts": ctx.attempts,
        "input_tokens": u.input,
        "output_tokens": u.output,
        "cache_read_tokens": u.cache_read,
        "cache_write_tokens": u.cache_write,
        "usage_source": ctx.usage_source,
        "cost_usd": round(ctx.cost_nano / 1e9, 9) if ctx.cost_nano is not None else None,
        "ttft_ms": round(ttft, 1) if ttft is not None else None,
        "duration_ms": round(ctx.elapsed_ms(), 1),  # to the end of the answer, settlement in
    }
    # Not ACCESS.info: that walks the stack for the caller's file and line (~4 µs), unused.
    if ACCESS.isEnabledFor(logging.INFO):
        record = ACCESS.makeRecord(
            ACCESS.name, logging.INFO, "", 0, Fields("request", fields), (), None
        )
        ACCESS.handle(record)
