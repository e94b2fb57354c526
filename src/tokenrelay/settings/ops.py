"""Logs, the access log, traces, and the operator's alerts."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from tokenrelay.settings.billing import Switch
from tokenrelay.settings.group import Before, Group, env
from tokenrelay.settings.secret import SecretStr

# Python's level names, any case (uvicorn and logging are each given the case they want).
LogLevel = Annotated[
    Literal["debug", "info", "warning", "error", "critical"],
    Before(str.lower),
]
# "text" or "json" (one JSON object a line: time, level, logger, message, fields).
LogFormat = Literal["text", "json"]
# OpenTelemetry traces (the `otel` extra, tracing.py): "auto" = on when the standard
# OTEL_EXPORTER_OTLP_ENDPOINT is set.
OtelMode = Literal["on", "off", "auto"]


class OpsSettings(Group):
    log_level: LogLevel = env("TOKENRELAY_LOG_LEVEL", "info")
    log_format: LogFormat = env("TOKENRELAY_LOG_FORMAT", "text")
    # "on": one line per finished request on the `tokenrelay.access` logger.
    access_log: Switch = env("TOKENRELAY_ACCESS_LOG", "off")
    otel: OtelMode = env("TOKENRELAY_OTEL", "auto")
    # Operator alerts (tokenrelay.admin.alerts): a vendor with every deployment down, an
    # error-rate jump, a model sold below upstream cost go to this webhook (JSON POST) and/or
    # email address; customers' low-balance emails go out on the same check.
    alert_webhook_url: SecretStr | None = env("TOKENRELAY_ALERT_WEBHOOK_URL", None)
    alert_email: str | None = env("TOKENRELAY_ALERT_EMAIL", None)
    alert_interval_s: Annotated[float, Meta(gt=0)] = env("TOKENRELAY_ALERT_INTERVAL_S", 60.0)
