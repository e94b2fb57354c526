"""Logs, the access log, traces, and the operator's alerts."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr

from tokenrelay.settings.billing import Switch
from tokenrelay.settings.group import Group

# Python's level names, any case (uvicorn and logging are each given the case they want).
LogLevel = Annotated[
    Literal["debug", "info", "warning", "error", "critical"],
    BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v),
]
# "text" or "json" (one JSON object a line: time, level, logger, message, fields).
LogFormat = Literal["text", "json"]
# OpenTelemetry traces (the `otel` extra, tracing.py): "auto" = on when the standard
# OTEL_EXPORTER_OTLP_ENDPOINT is set.
OtelMode = Literal["on", "off", "auto"]


class OpsSettings(Group):
    log_level: LogLevel = Field("info", alias="TOKENRELAY_LOG_LEVEL")
    log_format: LogFormat = Field("text", alias="TOKENRELAY_LOG_FORMAT")
    # "on": one line per finished request on the `tokenrelay.access` logger.
    access_log: Switch = Field("off", alias="TOKENRELAY_ACCESS_LOG")
    otel: OtelMode = Field("auto", alias="TOKENRELAY_OTEL")
    # Operator alerts (tokenrelay.admin.alerts): a vendor with every deployment down, an
    # error-rate jump, a model sold below upstream cost go to this webhook (JSON POST) and/or
    # email address; customers' low-balance emails go out on the same check.
    alert_webhook_url: SecretStr | None = Field(None, alias="TOKENRELAY_ALERT_WEBHOOK_URL")
    alert_email: str | None = Field(None, alias="TOKENRELAY_ALERT_EMAIL")
    alert_interval_s: float = Field(60.0, alias="TOKENRELAY_ALERT_INTERVAL_S", gt=0)
