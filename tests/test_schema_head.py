"""SCHEMA_HEAD (the one-query "is the database current?" check) must name Alembic's head, and
a server on a new database migrates it in a child process, leaving Alembic out of its memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory

from tokenrelay.store.db import SCHEMA_HEAD, alembic_config


def test_schema_head_is_alembics_head() -> None:
    assert ScriptDirectory.from_config(alembic_config()).get_heads() == [SCHEMA_HEAD]


def test_server_migrates_a_new_database_without_loading_alembic(tmp_path: Path) -> None:
    code = f"""
import asyncio, sys
from tokenrelay.server.app import create_app
from tokenrelay.settings import Settings
from tokenrelay.store.db import create_engine, schema_is_current

async def main():
    gw = create_app(Settings(database_url="sqlite:///{tmp_path}/new.db", emulate="all"))
    await gw.startup()
    current = await schema_is_current(create_engine("sqlite:///{tmp_path}/new.db"))
    await gw.shutdown()
    print(current, "alembic" in sys.modules)

asyncio.run(main())
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["True", "False"], out.stdout + out.stderr
