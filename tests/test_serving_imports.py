"""What a gateway serving only its API never loads (issue 26: idle memory): SQLAlchemy's ORM
(store/async_core.py), the pages' jinja2 and the sign-in libraries. Each still loads when it is
needed: a page request brings the pages, and `sqlalchemy.ext.asyncio` stays whole to whoever
asks it for a session. Run in a fresh interpreter: the test process has imported everything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CODE = """
import asyncio, sys
import httpx
from tokenrelay.server.app import create_app
from tokenrelay.settings import Settings

LAZY = ("sqlalchemy.orm", "jinja2", "argon2", "pyotp", "itsdangerous")

async def main():
    gw = create_app(Settings(database_url="sqlite:///{db}", emulate="all"))
    await gw.startup()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://t") as c:
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/api/proxy/v1/models")).status_code in (200, 401)
        print(*[m for m in LAZY if m in sys.modules] or ["none"])
        page = await c.get("/pricing")
        print(page.status_code, "jinja2" in sys.modules)
    await gw.shutdown()
    from sqlalchemy.ext.asyncio import AsyncSession, AsyncEngine
    from tokenrelay.store.async_core import AsyncEngine as Ours
    print(AsyncSession.__name__, AsyncEngine is Ours)

asyncio.run(main())
"""


def test_the_api_alone_loads_no_orm_pages_or_sign_in_libraries(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", CODE.format(db=tmp_path / "t.db")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.stdout.splitlines() == ["none", "200 True", "AsyncSession True"], (
        out.stdout + out.stderr
    )
