"""One `tokenrelay serve` child process for every client test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from served_gateway import ServedGateway


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    gw = ServedGateway.start(tmp_path_factory.mktemp("served"))
    yield gw
    gw.stop()
