"""No key material in the logs at any level: customer keys, their hashes, admin and vendor keys."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gateway_support import free_port
from tokenrelay.customers.keys import KeyStore
from tokenrelay.store.db import create_engine, migrate_async

ADMIN = "admin-secret-7f3e9c"
VENDOR_KEYS = {"OPENAI_API_KEY": "sk-proj-vendorsecret123", "GEMINI_API_KEY": "AIzaVendorSecret456"}


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_debug_logging_of_a_served_gateway_holds_no_secrets(
    tmp_path: Path, log_format: str
) -> None:
    """In JSON (with the access log on) every line is a JSON object, and just as clean."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENRELAY_")}
    env.update(
        VENDOR_KEYS,
        TOKENRELAY_LOG_LEVEL="debug",
        TOKENRELAY_ADMIN_TOKEN=ADMIN,
        TOKENRELAY_EMULATE="all",
        TOKENRELAY_DATABASE_URL=f"sqlite:///{tmp_path / 'gw.db'}",
        TOKENRELAY_LOG_FORMAT=log_format,
        TOKENRELAY_ACCESS_LOG="on" if log_format == "json" else "off",
    )
    log_path = tmp_path / "gateway.log"
    # `tokenrelay serve`, with SQL logging on as an operator debugging the database would.
    code = (
        "import logging; logging.getLogger('sqlalchemy.engine').setLevel(logging.DEBUG); "
        "from tokenrelay.server.cli import main; main()"
    )
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, "serve", "--port", str(port)],
            env=env,
            stdout=log_file,
            stderr=log_file,
        )
        try:
            key, key_id = exercise(f"http://127.0.0.1:{port}", proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    log = log_path.read_text(errors="replace")
    # Debug logging really was on, SQL and the driver's calls included.
    assert "sqlalchemy.engine" in log and "SELECT" in log and "aiosqlite" in log
    for secret in [key, hashlib.sha256(key.encode()).hexdigest(), ADMIN, *VENDOR_KEYS.values()]:
        assert secret not in log
    assert not re.search(
        r"sk-aic-[A-Za-z0-9_\-]{6,}", log
    )  # no key at all (hints are "sk-aic-...")
    if log_format == "json":
        lines = [json.loads(line) for line in log.splitlines() if line.strip()]
        assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
        assert any(line["message"].startswith("Uvicorn running") for line in lines)
        access = [line for line in lines if line["logger"] == "tokenrelay.access"]
        assert [(a["key_id"], a["http_status"], a["stream"]) for a in access] == [
            (key_id, 200, False),
            (key_id, 200, True),
            (None, 401, False),  # the revoked key: refused before it is known
        ]
        assert all(a["model"] == "gpt-4o" and a["output_tokens"] > 0 for a in access[:2])


def exercise(url: str, proc: subprocess.Popen[bytes]) -> tuple[str, str]:
    """Create a key, use it, revoke it, try it again; returns the key and its id."""
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "gateway exited"
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "gateway did not start"
        time.sleep(0.1)
    admin = {"authorization": f"Bearer {ADMIN}"}
    created = httpx.post(
        url + "/admin/v1/keys", headers=admin, json={"name": "log", "credits_usd": "5"}
    )
    assert created.status_code == 201, created.text
    key, key_id = created.json()["key"], created.json()["id"]
    chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    auth = {"authorization": f"Bearer {key}"}
    for stream in (False, True):
        r = httpx.post(
            url + "/api/proxy/v1/chat/completions", headers=auth, json={**chat, "stream": stream}
        )
        assert r.status_code == 200, r.text
    assert httpx.delete(f"{url}/admin/v1/keys/{key_id}", headers=admin).status_code == 200
    r = httpx.post(url + "/api/proxy/v1/chat/completions", headers=auth, json=chat)
    assert r.status_code == 401
    return str(key), str(key_id)


async def test_sql_parameters_are_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'keys.db'}", echo=True)
    await migrate_async(engine)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    try:
        store = KeyStore(engine)
        info, key = await store.create("log")
        store.clear_cache()
        assert await store.authenticate(key) is not None
        await store.revoke(info.id)
    finally:
        await engine.dispose()
    assert "SELECT" in caplog.text
    assert hashlib.sha256(key.encode()).hexdigest() not in caplog.text
    assert key not in caplog.text
