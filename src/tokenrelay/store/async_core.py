"""SQLAlchemy's asyncio engine without its ORM half: import AsyncEngine, AsyncConnection and
create_async_engine from here, never from `sqlalchemy.ext.asyncio` itself.

That package's `__init__` imports its sessions, and with them the whole of `sqlalchemy.orm`:
~6.5 MB of the serving process's idle RSS (75 -> 69 MB, bench.tails --memory-only) for a
gateway that uses Core alone. Here the package is created without running its `__init__` and
its `engine` module loaded into it; the first other name anything in the process asks of the
package (`AsyncSession`, ...) runs the `__init__` as SQLAlchemy wrote it, so the package stays
whole to everyone else. Where the package was imported before this module, it is used as is.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

_PACKAGE = "sqlalchemy.ext.asyncio"


def _engine_first() -> None:
    if _PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.loader is None:
        return  # not installed as a package of files: the import below says so
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def rest(name: str) -> Any:
        if importlib.util.find_spec(f"{_PACKAGE}.{name}") is not None:
            raise AttributeError(name)  # a submodule (`from . import exc`): imported as usual
        del package.__getattr__  # the real __init__ defines every other name
        loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = rest  # type: ignore[method-assign]
    sys.modules[_PACKAGE] = package


_engine_first()

from sqlalchemy.ext.asyncio.engine import (  # noqa: E402  (the package first, as above)
    AsyncConnection,
    AsyncEngine,
    create_async_engine,
)

__all__ = ["AsyncConnection", "AsyncEngine", "create_async_engine"]
