"""The contract's gateway: the session one's settings, but vendor batches polled every 0.2 s
(the default 30 s is for real vendors; the emulator ends a batch in milliseconds), so each
batch cell takes its own time rather than a poll interval."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway_support import RunningGateway, served


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    yield from served(tmp_path_factory.mktemp("compat-gw"), batch_poll_s=0.2)


@pytest.fixture(scope="session")
def api_key(gateway: RunningGateway) -> str:
    # Its own: the session's key (tests/conftest.py) belongs to the session's gateway.
    return gateway.create_key("compat")
