"""A logging filter that blanks key material, whatever library wrote the line.

The engine already hides SQL parameters (store/db.py); this is the second line of defence for
everything else at DEBUG (driver loggers repr their calls with arguments, tracebacks quote
values): customer keys (`sk-…`), 64-hex strings (their sha256 hashes), and the configured
secrets themselves (admin token, vendor keys), which have no recognisable shape.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from tokenrelay.catalog import Catalog, CatalogError
from tokenrelay.ops.log_format import Fields
from tokenrelay.settings import Settings
from tokenrelay.vendors import registry

REDACTED = "[redacted]"
# A configured secret shorter than this is not blanked where it stands in a line: it reads as
# ordinary text (a token "a" blanked every "a" of every line), and is too short to be one.
MIN_LITERAL = 8
_SHAPES = [r"sk-[A-Za-z0-9_\-]{6,}", r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{64}(?![0-9A-Fa-f])"]


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str] = (), key_prefix: str = "sk-") -> None:
        super().__init__()
        literals = sorted(
            {re.escape(s) for s in secrets if len(s) >= MIN_LITERAL}, key=len, reverse=True
        )
        shapes = [*_SHAPES, re.escape(key_prefix) + r"[A-Za-z0-9_\-]{6,}"]
        self._pattern = re.compile("|".join([*literals, *shapes]))

    def redact(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg
        if msg.__class__ is Fields and not record.args:  # only its text values can hold one
            for name, value in msg.items():
                if value.__class__ is str and self._pattern.search(value):
                    msg[name] = self.redact(value)
            return True
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def secrets_of(settings: Settings, catalog: Catalog | None = None) -> list[str]:
    try:  # the operator's own upstreams have keys too; a bad catalog fails startup anyway
        upstreams = (catalog or Catalog.load(settings.catalog_path)).upstreams
    except CatalogError:
        upstreams = ()
    values = [spec.api_key() for spec in registry(upstreams).values()]
    if settings.admin_token is not None:
        values.append(settings.admin_token.get_secret_value())
    return [v for v in values if v]


# Root, and uvicorn's own loggers, which have their own handlers and don't propagate.
LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access")


def install(
    settings: Settings, loggers: Iterable[str] = LOGGERS, catalog: Catalog | None = None
) -> None:
    """Add the filter to every handler of `loggers`: a handler's filter also sees the records
    propagated from child loggers (sqlalchemy, aiosqlite, asyncpg, ...)."""
    redactor = RedactSecrets(secrets_of(settings, catalog), settings.key_prefix)
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            for old in [f for f in handler.filters if isinstance(f, RedactSecrets)]:
                handler.removeFilter(old)  # installed again (a forked worker): one is enough
            handler.addFilter(redactor)
