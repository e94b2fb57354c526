"""The operator's billing commands, run as a real `tokenrelay` process on a SQLite file:
create a funded key, add credits, see the usage and balance of a request the gateway served,
and `ledger verify` telling a clean ledger from a tampered balance (exit 0 / exit 1)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import openai
import pytest
from billing_support import ADMIN, cli_env, http

from gateway_support import start_gateway

TOKENRELAY = Path(sys.executable).with_name("tokenrelay")


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TOKENRELAY), *args], env=env, capture_output=True, text=True, timeout=60
    )


def cli_many(
    env: dict[str, str], *commands: tuple[str, ...]
) -> list[subprocess.CompletedProcess[str]]:
    """Independent commands at once: each process spends most of its time starting up."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda args: cli(env, *args), commands))


@pytest.fixture
def env(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return cli_env(tmp_path_factory, TOKENRELAY_DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}")


def test_keys_credits_usage_show_and_ledger_verify(env: dict[str, str], tmp_path: Path) -> None:
    created = cli(env, "keys", "create", "--name", "n", "--credits", "5.00", "--json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    key_id, plaintext = key["id"], key["key"]
    assert key["name"] == "n" and Decimal(key["balance_usd"]) == Decimal("5.00")
    assert plaintext.startswith("sk-aic-")

    added = cli(env, "credits", "add", key_id, "10.00")
    assert added.returncode == 0, added.stderr
    assert "15.00" in added.stdout and key_id in added.stdout

    # The gateway serves one request on the same database.
    gw, thread = start_gateway(tmp_path, database_url=env["TOKENRELAY_DATABASE_URL"])
    try:
        gpt = openai.OpenAI(api_key=plaintext, base_url=gw.proxy + "/v1", max_retries=0)
        raw = gpt.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "[[words:30]] hi"}]
        )
        raw.parse()
        request_id = raw.headers["x-request-id"]
        cost = Decimal(raw.headers["x-tokenrelay-cost-usd"])
        assert cost > 0
    finally:
        gw.server.should_exit = True
        thread.join(timeout=10)

    usage, show, verify, too_much = cli_many(
        env,
        ("usage", "--key", key_id, "--json"),
        ("keys", "show", key_id),
        ("ledger", "verify"),
        ("credits", "add", key_id, "1e999"),  # used to overflow the balance column
    )
    assert usage.returncode == 0, usage.stderr
    records = json.loads(usage.stdout)
    assert [r["request_id"] for r in records] == [request_id]
    record = records[0]
    assert record["key_id"] == key_id and record["model"] == "gpt-4o"
    assert record["status"] == "ok" and record["output_tokens"] == 30
    assert Decimal(record["cost_usd"]) == cost

    assert show.returncode == 0, show.stderr
    shown = json.loads(show.stdout)
    assert shown["id"] == key_id and shown["requests"] == 1
    assert Decimal(shown["balance_usd"]) == Decimal("15.00") - cost
    assert Decimal(shown["spent_usd"]) == cost
    assert plaintext not in show.stdout and "key" not in shown  # shown once, at creation

    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "ledger ok" in verify.stdout
    assert too_much.returncode == 2 and "AMOUNT" in too_much.stderr, too_much.stderr

    # Tamper with the balance behind the ledger's back: verify must catch it.
    db = sqlite3.connect(tmp_path / "cli.db")
    with db:
        db.execute(
            "UPDATE accounts SET balance_nano = balance_nano + 1000000000 "
            "WHERE id = (SELECT account_id FROM api_keys WHERE id = ?)",
            (key_id,),
        )
    db.close()
    broken = cli(env, "ledger", "verify")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert key_id in broken.stdout and "ledger sum" in broken.stdout
    assert "1 problem" in broken.stderr


def test_cli_credits_reach_a_key_the_gateway_is_busy_serving(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A key in constant use always has debits on their way to the database, so the gateway
    never sees it quiet enough to re-read its balance; credits the operator adds from the CLI
    (another process) must reach it all the same, within seconds."""
    gw, thread = start_gateway(tmp_path, database_url=env["TOKENRELAY_DATABASE_URL"])
    stop = threading.Event()
    busy: list[threading.Thread] = []
    try:
        r = http.post(
            f"{gw.url}/admin/v1/keys", headers=ADMIN, json={"name": "busy", "credits_usd": "0.05"}
        )
        assert r.status_code == 201, r.text
        key_id, plaintext = r.json()["id"], r.json()["key"]
        client = openai.OpenAI(api_key=plaintext, base_url=gw.proxy + "/v1", max_retries=0)
        # Its worst case (16k output tokens of gpt-4o, $0.16) is more than the key holds.
        big = {
            "model": "gpt-4o",
            "max_tokens": 16_000,
            "messages": [{"role": "user", "content": "hi"}],
        }
        with pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(**big)
        assert refused.value.status_code == 402

        def keep_busy() -> None:
            c = openai.OpenAI(api_key=plaintext, base_url=gw.proxy + "/v1", max_retries=0)
            while not stop.is_set():
                c.chat.completions.create(
                    model="gpt-4o-mini",
                    max_tokens=5,
                    messages=[{"role": "user", "content": "[[words:2]] hi"}],
                )

        busy = [threading.Thread(target=keep_busy, daemon=True) for _ in range(4)]
        for t in busy:
            t.start()
        time.sleep(2.5)  # a balance refresh round passes with the key busy
        added = cli(env, "credits", "add", key_id, "5.00")
        assert added.returncode == 0, added.stderr

        deadline = time.monotonic() + 10
        while True:
            try:
                client.chat.completions.create(**big)
                break
            except openai.APIStatusError as exc:
                assert exc.status_code == 402, exc
                assert time.monotonic() < deadline, "the CLI's credit never reached the gateway"
                time.sleep(0.2)
        assert all(t.is_alive() for t in busy)  # still busy: no quiet moment let it through
    finally:
        stop.set()
        for t in busy:
            t.join(timeout=10)
        gw.server.should_exit = True
        thread.join(timeout=10)
