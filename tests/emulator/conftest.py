"""Fixtures: an httpx client wired straight into the emulator's ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tokenrelay.emulator import create_app


@pytest.fixture
async def emu() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://emu") as client:
        yield client
