"""Shared fixtures: a real gateway server (uvicorn on a free port, SQLite, emulated vendors)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# Re-exported: tests in directories sorted before tests/emulator import them from here.
from gateway_support import ADMIN_TOKEN, RunningGateway, free_port, served, start_gateway

__all__ = ["ADMIN_TOKEN", "RunningGateway", "free_port", "served", "start_gateway"]
# Records the compatibility matrix tests' outcomes as the published contract.
pytest_plugins = ["compat_recorder"]


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    yield from served(tmp_path_factory.mktemp("gw"))


@pytest.fixture(scope="session")
def api_key(gateway: RunningGateway) -> str:
    return gateway.create_key("session")
