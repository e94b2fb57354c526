"""A conversation that changes vendor at every turn never breaks (issue 25, item 1): each coding
CLI (pinned in package.json) resumes one session with another `--model` at each turn, in a ring
over the five vendors and back to the first, thinking on, a tool used at every turn:

- Claude Code: `claude -p --resume <session> --model M` (the first turn names the session);
- Codex: `codex exec resume --last --model M` (reasoning effort and summaries on);
- Gemini CLI: `gemini -p --resume latest -m M`.

Every reasoning artefact one vendor left in the history (Anthropic's signed thinking, Gemini's
thought signatures, OpenAI's encrypted reasoning, DeepSeek's reasoning_content) must reach
the next vendor dropped or converted, and the first vendor's restored when the ring comes back
to it (reasoning/cache.py). Each turn reads its own file: the answer must carry its secret.
The test prints the table the issue asks for (turns, switches, failures) and how long it took.
"""

from __future__ import annotations

import time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cli_setup
import pytest
from cli_setup import Invocation, claude_code, codex, gemini_cli
from served_gateway import ServedGateway

pytestmark = pytest.mark.timeout(1500)  # three CLIs, six turns each, one after another

# A thinking model of every vendor, then the first again (its own artefacts restored).
RING = [
    "claude-sonnet-4-6",
    "gpt-5",
    "gemini-3-flash-preview",  # Gemini CLI takes -m gemini-3-pro-preview for 3.1
    "grok-4.3",
    "deepseek-reasoner",
]
TURNS = [*RING, RING[0]]


@dataclass
class Ring:
    cli: str
    turns: int = 0
    switches: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _secret(cli: str, turn: int) -> str:
    return f"RING-{zlib.crc32(f'{cli}{turn}'.encode()):08x}"


def _claude(
    gw: str, key: str, home: Path, model: str, prompt: str, turn: int, sid: str
) -> Invocation:
    run = claude_code(gw, key, home, model, prompt)
    run.argv += ["--session-id", sid] if turn == 0 else ["--resume", sid]
    run.env["MAX_THINKING_TOKENS"] = "2048"  # thinking on, whatever the model
    return run


def _codex(
    gw: str, key: str, home: Path, model: str, prompt: str, turn: int, sid: str
) -> Invocation:
    run = codex(gw, key, home, model, prompt)
    config = home / ".codex" / "config.toml"
    config.write_text(
        'model_reasoning_effort = "medium"\nmodel_reasoning_summary = "auto"\n' + config.read_text()
    )
    if turn:
        # `exec resume` takes no --sandbox: the same setting as configuration.
        binary = run.argv[0]
        run.argv = [
            binary, "exec", "resume", "--last", "--skip-git-repo-check",
            "-c", 'sandbox_mode="danger-full-access"', "--model", model, prompt,
        ]  # fmt: skip
    return run


def _gemini(
    gw: str, key: str, home: Path, model: str, prompt: str, turn: int, sid: str
) -> Invocation:
    run = gemini_cli(gw, key, home, model, prompt)
    if turn:
        run.argv += ["--resume", "latest"]
    return run


CLIS = {"claude": _claude, "codex": _codex, "gemini": _gemini}


def _ring(served: ServedGateway, tmp: Path, cli: str) -> Ring:
    workspace, home = tmp / cli / "workspace", tmp / cli / "home"
    workspace.mkdir(parents=True)
    home.mkdir(parents=True)
    _, key = served.create_key(f"ring-{cli}")
    sid = str(uuid.uuid4())
    out = Ring(cli)
    started = time.monotonic()
    previous = ""
    for turn, model in enumerate(TURNS):
        secret = _secret(cli, turn)
        (workspace / f"notes{turn}.txt").write_text(f"The secret word is {secret}.\n")
        prompt = f"Read notes{turn}.txt and tell me the secret word."
        run = CLIS[cli](served.url, key, home, model, prompt, turn, sid)
        done = cli_setup.run(run, workspace, timeout=180)
        out.turns += 1
        out.switches += bool(previous) and previous != model
        previous = model
        if done.returncode != 0 or secret not in done.stdout:
            tail = (done.stdout + done.stderr)[-1500:]
            out.failures.append(f"turn {turn} ({model}): rc={done.returncode}\n{tail}")
    out.seconds = time.monotonic() - started
    return out


@pytest.fixture(scope="module")
def rings(served: ServedGateway, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ring]:
    tmp = tmp_path_factory.mktemp("ring")
    with ThreadPoolExecutor(len(CLIS)) as pool:
        started = {cli: pool.submit(_ring, served, tmp, cli) for cli in CLIS}
        done = {cli: f.result() for cli, f in started.items()}
    print("\nCLI     turns  switches  failures  seconds")
    for r in done.values():
        print(f"{r.cli:<7} {r.turns:>5} {r.switches:>9} {len(r.failures):>9} {r.seconds:>8.0f}")
    return done


@pytest.mark.parametrize("cli", list(CLIS))
def test_a_session_survives_a_model_switch_at_every_turn(rings: dict[str, Ring], cli: str) -> None:
    ring = rings[cli]
    assert ring.turns == len(TURNS) and ring.switches == len(TURNS) - 1
    assert not ring.failures, "\n\n".join(ring.failures)
