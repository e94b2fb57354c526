"""A gateway per store (SQLite + in-process holds, PostgreSQL + Redis) for a test module,
polling vendor batches every 0.1 s (the emulator's batches end in moments)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backends import backend
from gateway_support import RunningGateway, served


@pytest.fixture(scope="module", params=["sqlite", "postgres+redis"])
def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    with backend(request.param, str(tmp_path_factory.mktemp("batches"))) as b:
        yield from served(
            tmp_path_factory.mktemp("gw"),
            database_url=b.database_url,
            redis_url=b.redis_url,
            batch_poll_s=0.1,
        )
