"""`tokenrelay serve`: one uvicorn worker on uvloop + httptools (measured fastest, see bench/)."""

from __future__ import annotations

import logging
import os

import uvicorn

from tokenrelay.settings import get_settings


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
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=settings.log_level.lower(),
        timeout_keep_alive=30,
    )
