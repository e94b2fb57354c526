"""`tokenrelay prices set` keeps a model's long-context tiers unless told otherwise and can set
them (--tier, --no-tiers); `tokenrelay credits add --idempotency-key` applies a credit once,
however often the command is run again. Real `tokenrelay` processes on a SQLite file."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from billing_support import cli_env

TOKENRELAY = Path(sys.executable).with_name("tokenrelay")


@pytest.fixture
def env(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return cli_env(tmp_path_factory, TOKENRELAY_DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}")


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TOKENRELAY), *args], env=env, capture_output=True, text=True, timeout=60
    )


def set_price(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = cli(env, "prices", "set", "gemini-2.5-pro", "--json", *args)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def tiers(version: dict[str, Any]) -> list[tuple[int, Decimal, Decimal]]:
    return [
        (t["above_prompt_tokens"], Decimal(t["input"]), Decimal(t["output"]))
        for t in version["tiers"]
    ]


def test_prices_set_keeps_sets_and_drops_tiers(env: dict[str, str]) -> None:
    # The catalog's tier (above 200k prompt tokens: $2.50 / $15) survives a base price change.
    kept = set_price(env, "--input", "1.5", "--output", "11")
    assert (Decimal(kept["input"]), Decimal(kept["output"])) == (Decimal("1.5"), Decimal(11))
    assert tiers(kept) == [(200_000, Decimal("2.5"), Decimal(15))]

    replaced = set_price(
        env,
        "--input=1.5",
        "--output=11",
        "--tier",
        "above=100000,input=3,output=20",
        "--tier",
        "above=500000,input=4,output=25,cache_read=0.4",
    )
    assert tiers(replaced) == [
        (100_000, Decimal(3), Decimal(20)),
        (500_000, Decimal(4), Decimal(25)),
    ]
    assert Decimal(replaced["tiers"][1]["cache_read"]) == Decimal("0.4")
    # Kept again: the tiers now in force are the operator's, not the catalog's.
    assert tiers(set_price(env, "--input=2", "--output=12")) == tiers(replaced)
    assert tiers(set_price(env, "--input=2", "--output=12", "--no-tiers")) == []

    for bad in ("input=3,output=20", "above=1e5,input=3,output=20", "above=1,inptu=3,output=2"):
        done = cli(
            env, "prices", "set", "gemini-2.5-pro", "--input=2", "--output=12", "--tier", bad
        )
        assert done.returncode != 0 and "tier" in done.stderr.lower(), (bad, done.stderr)
    done = cli(env, "prices", "set", "gemini-2.5-pro", "--input=1e999999", "--output=12")
    assert done.returncode == 1 and "input" in done.stderr, done.stderr
    listed = cli(env, "prices", "list", "--model", "gemini-2.5-pro", "--json")
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 5  # the catalog's and the four set above


def test_credits_add_with_an_idempotency_key_credits_once(env: dict[str, str]) -> None:
    created = cli(env, "keys", "create", "--name", "n", "--credits", "1.00", "--json")
    assert created.returncode == 0, created.stderr
    key_id = json.loads(created.stdout)["id"]
    args = ("credits", "add", key_id, "5.00", "--note", "inv 7", "--idempotency-key", "inv-7")
    first, again = cli(env, *args, "--json"), cli(env, *args, "--json")
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert json.loads(first.stdout) == json.loads(again.stdout)
    assert json.loads(again.stdout)["balance_usd"] == "6.00"
    other = cli(env, "credits", "add", key_id, "6.00", "--idempotency-key", "inv-7")
    assert other.returncode == 1 and "Idempotency-Key" in other.stderr, other.stderr
    shown = cli(env, "keys", "show", key_id)
    assert json.loads(shown.stdout)["balance_usd"] == "6.00"
    verify = cli(env, "ledger", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
