"""Codex CLI (pinned in package.json) compacting its session through the gateway, on one model
of every vendor, both ways Codex compacts:

- `local`: the provider as /docs configures it (the operator's name): Codex asks the model
  for a summary through `/responses` and rebuilds its history itself;
- `remote`: a provider Codex takes for OpenAI's own (`name = "OpenAI"`, as with
  `openai_base_url`): Codex sends a `compaction_trigger` item and keeps the `compaction` item
  it gets back — OpenAI's own for OpenAI models, the gateway's sealed summary elsewhere, which
  the gateway expands again on the next request (proxies break this: CLIProxyAPI#4848).

The session reads a long file, which takes it over `model_auto_compact_token_limit`; Codex then
compacts and answers. Every run must succeed, compact, and be billed (one usage record per
vendor call, clean ledger).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cli_setup
import pytest
from cli_setup import codex
from served_gateway import ServedGateway
from test_coding_clis import MODELS

pytestmark = pytest.mark.timeout(600)  # ten Codex sessions, five at a time

# Codex's own prompt is ~9.5k tokens: the limit sits between it (+ the short summary) and it
# plus the file, so the session compacts once after the read, not again.
LIMIT = 11_000
FILE = "The secret word is KIWI-C.\n" + "filler words here. " * 1000


def _run(served: ServedGateway, tmp: Path, model: str, mode: str) -> dict[str, Any]:
    workspace, home = tmp / mode / model / "workspace", tmp / mode / model / "home"
    workspace.mkdir(parents=True)
    home.mkdir(parents=True)
    (workspace / "notes.txt").write_text(FILE)
    key_id, key = served.create_key(f"compact-{mode}-{model}")
    run = codex(served.url, key, home, model, "Read notes.txt and tell me the secret word.")
    config = home / ".codex" / "config.toml"
    text = f"model_auto_compact_token_limit = {LIMIT}\n" + config.read_text()
    if mode == "remote":
        text = text.replace('name = "tokenrelay"', 'name = "OpenAI"')
    config.write_text(text)
    mark = served.emulator_mark()
    done = cli_setup.run(run, workspace)
    return {
        "returncode": done.returncode,
        "output": (done.stdout + done.stderr).replace("filler words here. ", ""),
        "key_id": key_id,
        "mark": mark,
    }


@pytest.fixture(scope="module")
def runs(
    served: ServedGateway, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("codex-compact")
    cases = [(m, mode) for mode in ("local", "remote") for m in MODELS]
    # One mode at a time, its five models at once (one vendor each).
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for mode in ("local", "remote"):
        with ThreadPoolExecutor(len(MODELS)) as pool:
            started = {m: pool.submit(_run, served, tmp, m, mode) for m in MODELS}
            out |= {(m, mode): f.result() for m, f in started.items()}
    for case in cases:
        out[case]["records"] = served.usage(out[case]["key_id"])
    out[("", "")] = {"ledger": served.ledger_problems()}
    return out


@pytest.mark.parametrize("mode", ["local", "remote"])
@pytest.mark.parametrize("model", MODELS)
def test_codex_compacts_on_every_vendor(
    runs: dict[tuple[str, str], dict[str, Any]], model: str, mode: str
) -> None:
    run = runs[(model, mode)]
    assert run["returncode"] == 0, run["output"][-3000:]
    assert "context compacted" in run["output"], run["output"][-3000:]
    assert "ERROR" not in run["output"], run["output"][-3000:]
    # The read, the compaction and the answer after it: each billed, none failed.
    records = run["records"]
    assert len(records) >= 3, records
    assert all(r["status"] == "ok" and r["input_tokens"] > 0 for r in records), records
    assert runs[("", "")]["ledger"] == ""
