"""Log lines as JSON objects (TOKENRELAY_LOG_FORMAT=json), and structured messages.

A `Fields` message is key=value text under the plain formatter and top-level fields of the
object under the JSON one. Redaction (log_redaction) is a handler filter, so it runs before
either formatter: it blanks secrets in the message (turning a `Fields` that held one into plain,
redacted text), the traceback and the stack.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson


class Fields(dict[str, Any]):
    """A structured log message: `message` and its fields."""

    __slots__ = ("message",)

    def __init__(self, message: str, fields: dict[str, Any]) -> None:
        super().__init__(fields)
        self.message = message

    def __str__(self) -> str:
        parts = [self.message]
        for k, v in self.items():
            if v.__class__ is str:
                if not v or " " in v or '"' in v or "\n" in v:
                    v = orjson.dumps(v).decode()  # quoted, escaped
            elif v is None:
                v = "-"
            elif v is True or v is False:
                v = "true" if v else "false"
            parts.append(f"{k}={v}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ms), level, logger, message, the message's fields,
    and `exc` / `stack` when the record has them."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.msg
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if isinstance(msg, Fields) and not record.args:
            out["message"] = msg.message
            out.update(msg)
        else:
            out["message"] = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return orjson.dumps(out, default=str).decode()


def install(log_format: str, loggers: Iterable[str]) -> None:
    """With "json", every handler of `loggers` formats as JSON (they are the root's and
    uvicorn's, which do not propagate)."""
    if log_format != "json":
        return
    formatter = JsonFormatter()
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            handler.setFormatter(formatter)
