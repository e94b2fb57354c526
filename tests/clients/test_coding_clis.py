"""The real coding CLIs (Claude Code, Codex, Gemini CLI; pinned in package.json) against a
`tokenrelay serve` child process, for one model of every vendor: each run is non-interactive,
with the CLI's default tools, and asks for a file of its workspace to be read. The run must
succeed, answer from the file, and be billed: one usage record per vendor call the emulator
answered, and a clean ledger.

A CLI's runs on the five models go at once (one vendor each, so the emulator's log tells their
calls apart); the tests, one per model, then check what each run did.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cli_setup
import pytest
from cli_setup import BIN, Invocation, claude_code, codex, gemini_cli
from served_gateway import ServedGateway

from tokenrelay.catalog import Catalog

CATALOG = Catalog.load()


def _model(prefix: str) -> str:
    """The catalog's first model whose id starts with `prefix` (the catalog decides)."""
    ids = [e.id for e in CATALOG.entries() if e.id.startswith(prefix)]
    assert ids, f"no model {prefix}* in the catalog"
    return ids[0]


# One model of every vendor (deepseek-chat: the alias clients know).
MODELS = [
    _model("claude-sonnet-4"),
    "gpt-4o",
    "gemini-2.5-flash",
    _model("grok-4"),
    "deepseek-chat",
]
PROMPT = "Read notes.txt and tell me the secret word."

Setup = Callable[[str, str, Path, str, str], Invocation]


@dataclass
class Run:
    model: str
    secret: str
    returncode: int
    stdout: str
    output: str  # stdout + stderr, for failure messages
    records: list[dict[str, Any]]  # the run's usage records (its key's)
    calls: list[dict[str, Any]]  # the calls the emulator answered on the model's vendor
    # Every usage record and every vendor call of the CLI's five runs: a CLI may call a model
    # of another vendor on the side (a router, a summary), so they are compared in total too.
    batch_records: int
    batch_calls: int
    ledger: str  # `tokenrelay ledger verify` problems after the runs ('' = clean)


def _entry(model: str) -> Any:
    resolved = CATALOG.resolve(model)
    assert resolved is not None, model
    return resolved.entry


def _run(served: ServedGateway, tmp: Path, setup: Setup, model: str) -> tuple[Any, ...]:
    secret = f"KIWI-{zlib.crc32(model.encode()):08x}"
    workspace, home = tmp / model / "workspace", tmp / model / "home"
    workspace.mkdir(parents=True)
    home.mkdir()
    (workspace / "notes.txt").write_text(f"The secret word is {secret}.\n")
    key_id, key = served.create_key(f"cli-{model}")
    run = setup(served.url, key, home, model, PROMPT)
    done = cli_setup.run(run, workspace)
    return key_id, secret, done


def _runs(served: ServedGateway, tmp: Path, setup: Setup) -> dict[str, Run]:
    """Every model's run of one CLI, at once; then what each was billed."""
    for tool in ("claude", "codex", "gemini"):
        assert (BIN / tool).exists(), "run `npm ci --prefix tests/clients` first (.ci/run does)"
    mark = served.emulator_mark()
    with ThreadPoolExecutor(len(MODELS)) as pool:
        started = {m: pool.submit(_run, served, tmp, setup, m) for m in MODELS}
        finished = {m: f.result() for m, f in started.items()}
    ledger = served.ledger_problems()
    records = {m: served.usage(key_id) for m, (key_id, _, _) in finished.items()}
    batch_calls = len(served.vendor_calls(mark))
    return {
        model: Run(
            model=model,
            secret=secret,
            returncode=done.returncode,
            stdout=done.stdout,
            output=(done.stdout + done.stderr)[-3000:],
            records=records[model],
            calls=served.vendor_calls(mark, _entry(model).vendor),
            batch_records=sum(map(len, records.values())),
            batch_calls=batch_calls,
            ledger=ledger,
        )
        for model, (_, secret, done) in finished.items()
    }


def _check(run: Run) -> None:
    assert run.returncode == 0, run.output
    assert run.secret in run.stdout, run.output  # the answer is the file's content
    # A tool call, then the answer from its result: two model calls at least, each billed once.
    assert len(run.records) >= 2, (run.records, run.output)
    on_model = [r for r in run.records if r["model"] == _entry(run.model).id]
    assert on_model and len(run.calls) >= len(on_model), (run.records, run.calls)
    assert run.batch_records == run.batch_calls, (run.batch_records, run.batch_calls)
    assert all(r["status"] == "ok" and r["input_tokens"] > 0 for r in run.records), run.records
    assert run.ledger == ""


@pytest.fixture(scope="module")
def claude_runs(served: ServedGateway, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    return _runs(served, tmp_path_factory.mktemp("claude"), claude_code)


@pytest.fixture(scope="module")
def codex_runs(served: ServedGateway, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    return _runs(served, tmp_path_factory.mktemp("codex"), codex)


@pytest.fixture(scope="module")
def gemini_runs(served: ServedGateway, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    return _runs(served, tmp_path_factory.mktemp("gemini"), gemini_cli)


@pytest.mark.compat_cli("claude-code")  # recorded in the compatibility contract
@pytest.mark.parametrize("model", MODELS)
def test_claude_code_reads_a_file(claude_runs: dict[str, Run], model: str) -> None:
    run = claude_runs[model]
    _check(run)
    # Its X-Claude-Code-Session-Id: one session for the whole run, on every record.
    sessions = {r["session_id"] for r in run.records}
    assert len(sessions) == 1 and None not in sessions, sessions


@pytest.mark.compat_cli("codex")  # recorded in the compatibility contract
@pytest.mark.parametrize("model", MODELS)
def test_codex_exec_reads_a_file(codex_runs: dict[str, Run], model: str) -> None:
    _check(codex_runs[model])


@pytest.mark.compat_cli("gemini-cli")  # recorded in the compatibility contract
@pytest.mark.parametrize("model", MODELS)
def test_gemini_cli_reads_a_file(gemini_runs: dict[str, Run], model: str) -> None:
    _check(gemini_runs[model])
