"""`tokenrelay serve`: uvicorn on uvloop + httptools (measured fastest, see bench/).

One worker by default. `--workers N` runs N worker processes on one socket under uvicorn's
supervisor (which restarts a worker that dies), forked from it once it holds what they only
read (`fork_workers_sharing_what_they_read`); that needs every piece of state the workers
must agree on out of process: balances, holds, rate limits and reasoning state in Redis, the
ledger in PostgreSQL (`multi_worker_problem` says what is missing, before anything starts).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import uvicorn

from tokenrelay.catalog import Catalog
from tokenrelay.ops import log_format, log_redaction
from tokenrelay.server.http_guard import Limits, guarded_protocol
from tokenrelay.settings import Settings, get_settings

if TYPE_CHECKING:
    from tokenrelay.server.app import Gateway

STARTUP_FAILURE = 3  # uvicorn.run's exit status for a failed startup


def _limits(settings: Settings) -> Limits:
    return Limits(
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        max_per_ip=settings.max_connections_per_ip,
    )


def _options(settings: Settings, http: Any) -> dict[str, Any]:
    return {
        "host": settings.host,
        "port": settings.port,
        "http": http,
        "lifespan": "on",
        "ws": "none",  # no WebSocket routes: and uvicorn's import of websockets is ~3 MB
        "access_log": False,
        "server_header": False,  # no `server: uvicorn`: what runs here is nobody's business
        "timeout_keep_alive": settings.keepalive_timeout_s,
        "timeout_graceful_shutdown": settings.shutdown_grace_s,
        # The client address (throttles, logs) from X-Forwarded-For only through the trusted
        # proxies: applied by the protocol (guarded_protocol), not uvicorn's middleware.
        "proxy_headers": False,
    }


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The gateway's server: httptools with header/body deadlines and a per-IP connection cap
    (http_guard), keep-alive and SIGTERM grace from the settings. Tests serve through it too."""
    options = _options(settings, guarded_protocol(_limits(settings), settings.trusted_proxies))
    return uvicorn.Config(app, **{**options, **overrides})


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )


def multi_worker_problem(settings: Settings, workers: int) -> str | None:
    """Why `workers` processes cannot share this configuration's state (one line), or None."""
    if workers <= 1:
        return None
    if not settings.redis_url:
        return (
            f"--workers {workers} needs TOKENRELAY_REDIS_URL: without Redis each worker keeps "
            "its own balance holds, rate limits and reasoning cache (run one worker, or set "
            "TOKENRELAY_REDIS_URL and a PostgreSQL TOKENRELAY_DATABASE_URL)"
        )
    if settings.database_url.startswith("sqlite"):
        return (
            f"--workers {workers} needs PostgreSQL: the SQLite store's settlement journal "
            "belongs to one process (set TOKENRELAY_DATABASE_URL=postgresql://..., or run "
            "one worker)"
        )
    if settings.session_secret is None:
        return (
            f"--workers {workers} needs TOKENRELAY_SESSION_SECRET: without it each worker signs "
            "portal sign-ins with a key of its own, and a sign-in on one is unknown to the others "
            "(set it to a long random string, the same on every replica)"
        )
    if settings.emulator_url or not settings.emulator_port:
        return None  # each worker starts its own emulator on a free port, or none
    from tokenrelay.vendors import registry

    vendors = registry(process_catalog(settings.catalog_path).upstreams).values()
    if any(settings.is_emulated(v.api_key()) for v in vendors):
        port = settings.emulator_port
        return (
            f"--workers {workers} would start the vendor emulator once per worker on port "
            f"{port}: run it once (python -m tokenrelay.emulator --port {port}) and set "
            f"TOKENRELAY_EMULATOR_URL=http://127.0.0.1:{port}, or unset TOKENRELAY_EMULATOR_PORT"
        )
    return None


class WorkerConfig(uvicorn.Config):
    """The server configuration uvicorn's supervisor pickles to each worker process: the
    guarded protocol class (built per server) and the gateway's logging are set up there."""

    def __init__(self, settings: Settings, workers: int, **overrides: Any) -> None:
        self.limits = _limits(settings)
        self.trusted_proxies = settings.trusted_proxies
        options = {**_options(settings, "httptools"), **overrides}
        # uvicorn kills a worker that does not answer its health ping within the timeout
        # (default 5 s) and starts another: a worker still importing and migrating on a busy
        # machine is not hung, and killing it only starts the same slow start again.
        options.setdefault("timeout_worker_healthcheck", 30)
        super().__init__(
            "tokenrelay.server.serve:worker_app", factory=True, workers=workers, **options
        )

    def configure_logging(self) -> None:
        super().configure_logging()
        settings = get_settings()
        configure_logging(settings)
        log_redaction.install(settings, catalog=process_catalog(settings.catalog_path))

    def load(self) -> None:
        super().load()
        self.http_protocol_class = guarded_protocol(self.limits, self.trusted_proxies)


def worker_app() -> Gateway:
    """The app factory each worker process calls (settings from the environment)."""
    from tokenrelay.server.app import create_app

    settings = get_settings()
    app = create_app(settings, process_catalog(settings.catalog_path))
    app.freeze_heap_after_startup = True
    return app


@functools.cache
def process_catalog(path: str | None) -> Catalog:
    """The catalog this server process loads once: for log redaction and for the app."""
    return Catalog.load(path)


def serve(host: str | None = None, port: int | None = None, workers: int | None = None) -> None:
    if port is not None:
        os.environ["TOKENRELAY_PORT"] = str(port)
    if host is not None:
        os.environ["TOKENRELAY_HOST"] = host
    if workers is not None:  # what the billing engine checks, in every worker
        os.environ["WEB_CONCURRENCY"] = str(workers)
    get_settings.cache_clear()
    settings = get_settings()
    if settings.workers > 1:
        serve_workers(settings)
        return
    configure_logging(settings)
    from tokenrelay.server.app import create_app

    catalog = process_catalog(settings.catalog_path)
    app = create_app(settings, catalog)
    app.freeze_heap_after_startup = True
    config = uvicorn_config(app, settings, loop="uvloop", log_level=settings.log_level.lower())
    # After uvicorn.Config, which installs uvicorn's own handlers. At DEBUG, aiosqlite reprs
    # every call with its SQL parameters (key hashes): the filter blanks those, in either format.
    log_format.install(settings.log_format, log_redaction.LOGGERS)
    log_redaction.install(settings, catalog=catalog)
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def serve_workers(settings: Settings) -> None:
    """`settings.workers` processes on one socket; exits 3 if a worker failed to start (the
    supervisor then stops the others)."""
    from uvicorn.supervisors import Multiprocess

    config = WorkerConfig(
        settings, settings.workers, loop="uvloop", log_level=settings.log_level.lower()
    )
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    fork_workers_sharing_what_they_read()
    supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        sys.exit(STARTUP_FAILURE)


def fork_workers_sharing_what_they_read() -> None:
    """Workers forked, not spawned, from a supervisor that has built what every worker reads
    and none writes: the o200k tokenizer's pair table (its token table is a mapped file,
    shared anyway) and the gateway's modules, frozen out of the garbage collector so that it
    does not touch their pages. A worker then shares those pages with the others instead of building
    its own copy (`python -m bench.workers`: memory a worker adds). Called with no event
    loop and no thread running: what fork copies is one thread's state. uvicorn's supervisor
    takes its process context from `uvicorn._subprocess.spawn` (uvicorn 0.54)."""
    import gc
    import multiprocessing
    import signal

    from uvicorn import _subprocess
    from uvicorn.supervisors.multiprocess import SIGNALS

    from tokenrelay.billing import tokenizer
    from tokenrelay.server import app as _app  # noqa: F401  (imported for the workers)

    tokenizer.load()
    gc.collect()
    gc.freeze()
    _subprocess.spawn = multiprocessing.get_context("fork")  # type: ignore[assignment]

    # The supervisor's signal handlers (one for each of uvicorn's SIGNALS) queue signals for
    # its own loop: a worker starts with the defaults, as a spawned one would, until its
    # server installs its own.
    def defaults() -> None:
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as Python starts

    os.register_at_fork(after_in_child=defaults)
