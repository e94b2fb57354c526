"""The `tokenrelay` CLI: keys create/list/show/revoke, migrate, models."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tokenrelay.server.cli import main
from tokenrelay.settings import get_settings


@pytest.fixture
def db_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("TOKENRELAY_DATABASE_URL", url)
    monkeypatch.delenv("TOKENRELAY_CATALOG", raising=False)
    monkeypatch.delenv("TOKENRELAY_KEY_PREFIX", raising=False)
    get_settings.cache_clear()  # settings are cached per process; re-read our env
    yield url
    get_settings.cache_clear()


def run(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def test_keys_create_json_then_list(db_env: str) -> None:
    created = run("keys", "create", "--name", "alice", "--credits", "5.00", "--rpm", "60", "--json")
    assert created.exit_code == 0, created.output
    body = json.loads(created.stdout)
    key = body["key"]
    assert {"id", "key", "name", "balance_usd"} <= set(body)
    assert (body["name"], body["balance_usd"], body["rpm"]) == ("alice", "5.00", 60)
    assert key.startswith("sk-aic-")

    outputs = [
        run("keys", "list"),
        run("keys", "list", "--json"),
        run("keys", "show", body["id"]),
        run("migrate"),
        run("keys", "revoke", body["id"]),
        run("keys", "list"),
    ]
    for result in outputs:
        assert result.exit_code == 0, result.output
        assert key not in result.output
        assert key[len("sk-aic-") :] not in result.output
    listed, listed_json, shown, migrated, revoked, after = outputs
    assert body["id"] in listed.stdout and "alice" in listed.stdout
    assert body["key_hint"] in listed.stdout and "active" in listed.stdout
    assert [k["id"] for k in json.loads(listed_json.stdout)] == [body["id"]]
    assert json.loads(shown.stdout)["balance_usd"] == "5.00"
    assert "up to date" in migrated.stdout
    assert "revoked" in revoked.stdout and "revoked" in after.stdout


def test_keys_create_plain_output_shows_key_once(db_env: str) -> None:
    result = run("keys", "create", "--name", "bob")
    assert result.exit_code == 0, result.output
    key_lines = [line for line in result.stdout.splitlines() if line.startswith("key: ")]
    assert len(key_lines) == 1
    key = key_lines[0].removeprefix("key: ")
    assert result.stdout.count(key) == 1
    assert "cannot be shown again" in result.stderr


def test_key_from_the_cli_authenticates(db_env: str) -> None:
    import asyncio

    from tokenrelay.customers.keys import KeyStore
    from tokenrelay.store.db import create_engine

    key = json.loads(run("keys", "create", "--name", "carol", "--json").stdout)["key"]

    async def check() -> bool:
        engine = create_engine(db_env)
        try:
            return await KeyStore(engine).authenticate(key) is not None
        finally:
            await engine.dispose()

    assert asyncio.run(check())


def test_errors(db_env: str) -> None:
    bad_credits = run("keys", "create", "--name", "x", "--credits", "-1")
    assert bad_credits.exit_code == 2 and "--credits" in bad_credits.output
    missing = run("keys", "show", "key_nope")
    assert missing.exit_code == 1 and "no key with id 'key_nope'" in missing.output
    assert run("keys", "revoke", "key_nope").exit_code == 1
    assert run("keys", "list").stdout.startswith("no keys yet")


def test_bad_database_url_is_one_line_without_password(
    db_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENRELAY_DATABASE_URL", "mysql://user:hunter2@db/x")
    get_settings.cache_clear()
    result = run("keys", "list")
    assert result.exit_code == 1
    assert "unsupported database URL scheme" in result.output
    assert "hunter2" not in result.output


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("TOKENRELAY_BILLING_POLICY", "sometimes", "'delivered' or 'vendor_accepted_input'"),
        ("TOKENRELAY_LOG_LEVEL", "loud", "'debug', 'info', 'warning', 'error' or 'critical'"),
        ("TOKENRELAY_SIGNUP", "maybe", "'open', 'invite' or 'off'"),
        ("TOKENRELAY_PORT", "eighty", "`int`"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(
    db_env: str, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, accepted: str
) -> None:
    monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    result = CliRunner().invoke(main, ["keys", "list"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0] and accepted in lines[0], lines
    assert repr(value) in lines[0] and "Traceback" not in result.output


def test_every_bad_setting_is_named_and_a_secret_is_not_shown(
    db_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENRELAY_SECRET_KEY", "short-7f3e9c")
    monkeypatch.setenv("TOKENRELAY_SESSION_TTL_S", "0")
    get_settings.cache_clear()
    result = CliRunner().invoke(main, ["keys", "list"])
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert "TOKENRELAY_SESSION_TTL_S: Expected `int` >= 1 (got '0')" in line
    assert "TOKENRELAY_SECRET_KEY: Expected at least 16 characters" in line
    assert "7f3e9c" not in line


def test_log_level_is_any_case(db_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENRELAY_LOG_LEVEL", "WARNING")
    get_settings.cache_clear()
    assert get_settings().log_level == "warning"


def test_models(db_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = run("models")
    assert table.exit_code == 0
    assert "claude-sonnet-4-6" in table.stdout and "grok-2" in table.stdout  # as an alias
    listing = json.loads(run("models", "--json").stdout)
    assert listing["object"] == "list"
    assert {m["id"] for m in listing["data"]} >= {"gpt-4o", "deepseek-v4-flash"}

    extra = tmp_path / "ops.toml"
    extra.write_text('[models."gpt-4o"]\nvendor = "nope"\n')
    monkeypatch.setenv("TOKENRELAY_CATALOG", str(extra))
    get_settings.cache_clear()
    broken = run("models")
    assert broken.exit_code == 1 and "unknown vendor 'nope'" in broken.output


def test_accounts_disable_enable_and_credit_go_to_the_audit_log(db_env: str) -> None:
    """The CLI acts through the operator service layer: audited, reasons required."""
    import asyncio

    from sqlalchemy import select

    from tokenrelay.store.db import create_engine
    from tokenrelay.store.tables import accounts, audit_log

    account = json.loads(run("keys", "create", "--name", "shop", "--json").stdout)["account_id"]
    assert run("accounts", "disable", account).exit_code != 0  # no reason, nothing done
    assert run("accounts", "disable", account, "--reason", "fraud").exit_code == 0
    credited = run("accounts", "credit", account, "2.50", "--reason", "goodwill")
    assert credited.exit_code == 0 and "$2.50" in credited.output
    assert run("accounts", "enable", account, "--reason", "cleared").exit_code == 0
    assert "no such account" in run("accounts", "enable", "acct_nope", "--reason", "x").output

    async def read() -> tuple[object, list[tuple[str, str]]]:
        engine = create_engine(db_env)
        try:
            async with engine.connect() as conn:
                disabled = await conn.scalar(
                    select(accounts.c.disabled_at).where(accounts.c.id == account)
                )
                rows = await conn.execute(
                    select(audit_log.c.action, audit_log.c.reason).order_by(audit_log.c.id)
                )
                return disabled, [tuple(r) for r in rows]
        finally:
            await engine.dispose()

    disabled, trail = asyncio.run(read())
    assert disabled is None
    assert [a for a, _ in trail][-3:] == [
        "account_disabled",
        "credit_adjustment",
        "account_enabled",
    ]
    assert trail[-3][1] == "fraud" and trail[-2][1] == "goodwill"
