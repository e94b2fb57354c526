"""Every code block of the rendered /docs page and of README.md, run verbatim against a gateway.

The blocks are extracted from the page the gateway serves (its `data-run` says how each runs)
and from README.md's fences — never copied into this test. Python blocks run with the SDKs,
Node blocks with node and the SDKs pinned in tests/docs/package.json, curl blocks with bash;
each must exit 0 and print what it says it prints. Blocks that only set the key check that they
set the variable the others read; config files must parse; CLI and operator command lines are
syntax-checked (tests/clients runs the real CLIs with the same client_setup values).

`pytest tests/docs -s` prints the count of examples run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from gateway_support import RunningGateway, free_port, served

HERE = Path(__file__).parent
NODE_DIR = HERE / "node_modules"
ROOT = HERE.parents[1]
KEY_ENV = "TOKENRELAY_API_KEY"
# print("usage:", ...) in an example: its output must show that label (the README's DeepSeek
# stream once never reached its usage line).
PRINTED_LABEL = re.compile(r'print\(\s*"(?:\\n)?([a-zA-Z ]+):"')


@dataclass
class Block:
    source: str
    run: str  # python | node | sh | env | toml | json | syntax
    code: str
    expect: str = r"\S"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    port = free_port()
    yield from served(
        tmp_path_factory.mktemp("docs"),
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        session_secret="docs-test-secret-0123456",
    )


@pytest.fixture(scope="module")
def node_ready() -> bool:
    if shutil.which("node") is None:
        return False
    if not NODE_DIR.exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=HERE,
            check=True,
            timeout=300,
        )
    return True


class _CodeBlocks(HTMLParser):
    """`<code data-run=...>` elements of a page, with their text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self._open: Block | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "code" and a.get("data-run"):
            run, path = a["data-run"] or "", a.get("data-path") or ""
            if run == "config":
                run = "toml" if path.endswith(".toml") else "json" if path else "syntax"
            self._open = Block("/docs", run, "", a.get("data-expect") or r"\S")

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open.code += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "code" and self._open is not None:
            self.blocks.append(self._open)
            self._open = None


def docs_blocks(html: str) -> list[Block]:
    parser = _CodeBlocks()
    parser.feed(html)
    return parser.blocks


def readme_blocks(text: str) -> list[Block]:
    blocks = []
    for lang, code in re.findall(r"^```(\w*)[^\n]*\n(.*?)^```", text, re.M | re.S):
        blocks.append(Block("README.md", _readme_kind(lang, code), code))
    return blocks


def _readme_kind(lang: str, code: str) -> str:
    if lang in ("python", "toml", "json"):
        return lang
    commands = [ln for ln in code.splitlines() if ln.strip() and not ln.startswith("#")]
    if commands and all(ln.startswith("export ") for ln in commands):
        # Setting the key is env; a CLI's exports are the CLI's (syntax-checked).
        return "env" if all(KEY_ENV in ln for ln in commands) else "syntax"
    if commands and all(ln.startswith(("curl ", "python3 -m uv run")) for ln in commands):
        return "sh"
    return "syntax"  # make, the operator CLI's synopsis, the coding CLIs


def _outside_the_venv(env: dict[str, str]) -> dict[str, str]:
    """A reader's shell: `make test` runs the suite inside the project's venv (`uv run` puts
    its bin first on PATH), but the README's commands are typed outside it."""
    venv = env.get("VIRTUAL_ENV") or str(Path(sys.executable).parent.parent)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(venv)]
    out = {k: v for k, v in env.items() if k != "VIRTUAL_ENV"}
    return {**out, "PATH": os.pathsep.join(path)}


def run_block(block: Block, env: dict[str, str], workdir: Path) -> str | None:
    """None when the block did what it says; else why not."""
    code = block.code
    if block.run == "toml":
        tomllib.loads(code)
        return None
    if block.run == "json":
        json.loads(code)
        return None
    if block.run == "env":
        names = re.findall(r"^export (\w+)=", code, re.M)
        return None if names == [KEY_ENV] else f"sets {names}, not {KEY_ENV}"
    if block.run == "syntax":
        done = subprocess.run(["bash", "-n"], input=code, text=True, capture_output=True)
        return None if done.returncode == 0 else done.stderr
    if block.run == "python":
        path = workdir / f"ex{abs(hash(code))}.py"
        path.write_text(code)
        argv = [sys.executable, str(path)]
    elif block.run == "node":
        path = NODE_DIR / ".examples" / f"ex{abs(hash(code))}.mjs"
        path.parent.mkdir(exist_ok=True)
        path.write_text(code)
        argv = ["node", str(path)]
    else:
        argv = ["bash", "-e", "-o", "pipefail", "-c", code]
        env = _outside_the_venv(env)
    done = subprocess.run(
        argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    out = done.stdout
    if done.returncode != 0:
        return f"exit {done.returncode}: {out[-500:]}{done.stderr[-1500:]}"
    if not re.search(block.expect, out):
        return f"output does not match {block.expect!r}: {out[-500:]}"
    for label in PRINTED_LABEL.findall(code):
        if f"{label}:" not in out:
            return f"never printed its {label!r} line: {out[-500:]}"
    return None


def run_all(blocks: list[Block], gw: RunningGateway, tmp_path: Path) -> None:
    env = {**os.environ, KEY_ENV: gw.create_key("docs"), "TOKENRELAY_URL": gw.url}
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda b: run_block(b, env, tmp_path), blocks))
    failures = [(b, why) for b, why in zip(blocks, results, strict=True) if why]
    counts: dict[str, int] = {}
    for b in blocks:
        counts[b.run] = counts.get(b.run, 0) + 1
    print(f"\n{blocks[0].source}: {len(blocks)} blocks {counts}, {len(failures)} failed")
    assert not failures, "\n\n".join(f"{b.run} block:\n{b.code}\n--> {why}" for b, why in failures)


# About 30 SDK processes (each imports its SDK): minutes on a loaded machine, not seconds.
@pytest.mark.timeout(900)
def test_every_docs_example_runs(gw: RunningGateway, node_ready: bool, tmp_path: Path) -> None:
    # A Host that is not the site's is refused; a loopback alias is served, and the
    # examples still name the configured public URL, never the Host the request named.
    forged = httpx.get(gw.url + "/docs", headers={"host": "attacker.example"})
    assert forged.status_code == 421
    port = gw.url.rsplit(":", 1)[1]
    page = httpx.get(gw.url + "/docs", headers={"host": f"localhost:{port}"})
    assert page.status_code == 200
    blocks = docs_blocks(page.text)
    kinds = {b.run for b in blocks}
    assert {"python", "node", "sh", "env", "toml", "json"} <= kinds, kinds
    assert f"localhost:{port}" not in page.text and f"{gw.url}/api/proxy" in page.text
    if not node_ready:
        pytest.fail("node is not installed: the Node examples cannot run")
    run_all(blocks, gw, tmp_path)


@pytest.mark.timeout(900)
def test_every_readme_example_runs(gw: RunningGateway, tmp_path: Path) -> None:
    blocks = readme_blocks((ROOT / "README.md").read_text())
    assert sum(b.run == "python" for b in blocks) >= 4
    run_all(blocks, gw, tmp_path)
