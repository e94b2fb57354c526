"""`tokenrelay serve`: one uvicorn worker on uvloop + httptools (measured fastest, see bench/)."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import uvicorn

from tokenrelay import log_format, log_redaction
from tokenrelay.http_guard import Limits, guarded_protocol
from tokenrelay.settings import Settings, get_settings


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The gateway's server: httptools with header/body deadlines and a per-IP connection cap
    (http_guard), keep-alive and SIGTERM grace from the settings. Tests serve through it too."""
    limits = Limits(
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        max_per_ip=settings.max_connections_per_ip,
    )
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "http": guarded_protocol(limits),
        "lifespan": "on",
        "access_log": False,
        "timeout_keep_alive": settings.keepalive_timeout_s,
        "timeout_graceful_shutdown": settings.shutdown_grace_s,
        **overrides,
    }
    return uvicorn.Config(app, **options)


def serve(host: str | None = None, port: int | None = None) -> None:
    if port is not None:
        os.environ["TOKENRELAY_PORT"] = str(port)
    if host is not None:
        os.environ["TOKENRELAY_HOST"] = host
    get_settings.cache_clear()
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    from tokenrelay.app import create_app

    app = create_app(settings)
    app.freeze_heap_after_startup = True
    config = uvicorn_config(app, settings, loop="uvloop", log_level=settings.log_level.lower())
    # After uvicorn.Config, which installs uvicorn's own handlers. At DEBUG, aiosqlite reprs
    # every call with its SQL parameters (key hashes): the filter blanks those, in either format.
    log_format.install(settings.log_format, log_redaction.LOGGERS)
    log_redaction.install(settings)
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        sys.exit(3)  # uvicorn.run's exit status for a failed startup
