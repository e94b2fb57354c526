"""The pytest plugin that makes the compatibility contract (catalog/compatibility.py) out of test
results, so `/compatibility` cannot drift from what the code does.

A matrix test takes the `probe` fixture and notes, through it, what survived and what was lost;
its outcome gives the cell's status (passed: yes, or partial when something was lost; the probe
saying the API has no such feature: n/a; the gateway refusing it in the client's format: no;
failed: failing). A coding-CLI test is marked `compat_cli("<cli>")` and parametrized by `model`.

- `TOKENRELAY_COMPAT_RECORD=1` (`make compat`): the observed cells are merged into
  src/tokenrelay/catalog/compatibility_results.json at the end of the session.
- Otherwise each probed cell is compared with the file, and the test errors when they differ:
  a change of behaviour is a change of the published contract, made by `make compat`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tokenrelay.catalog import Catalog
from tokenrelay.catalog import compatibility as contract

RECORD = os.environ.get("TOKENRELAY_COMPAT_RECORD", "") == "1"
CLI_PACKAGES = {
    "claude-code": "@anthropic-ai/claude-code",
    "codex": "@openai/codex",
    "gemini-cli": "@google/gemini-cli",
}
_PACKAGE_JSON = Path(__file__).parent / "clients" / "package.json"
_OBSERVED = pytest.StashKey[dict[str, dict[str, Any]]]()
_PROBE = pytest.StashKey["Probe"]()
_PASSED = pytest.StashKey[bool]()


class NotApplicable(Exception):
    pass


@dataclass
class Probe:
    key: str
    survives: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    refused: str = ""
    note: str = ""

    def check(self, what: str, held: bool) -> bool:
        """Note `what` as surviving or lost; returns `held`."""
        (self.survives if held else self.lost).append(what)
        return held

    def refuse(self, why: str) -> None:
        """The gateway refused the feature in the client's own error format: status no."""
        self.refused = why

    def not_applicable(self, why: str) -> None:
        self.note = why
        raise NotApplicable(why)

    def status(self) -> str:
        if self.refused or not self.survives:
            return "no"  # refused, or answered with every part of the feature lost
        return "partial" if self.lost else "yes"

    def result(self) -> dict[str, Any]:
        return {
            "status": self.status(),
            "survives": self.survives,
            "lost": self.lost,
            "note": self.refused or self.note,
        }


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "compat_cli(name): a coding-CLI run recorded in the compatibility contract"
    )
    config.stash[_OBSERVED] = {}
    if RECORD and (hasattr(config, "workerinput") or getattr(config.option, "numprocesses", 0)):
        raise pytest.UsageError("TOKENRELAY_COMPAT_RECORD=1 records in one process: drop -n")


@pytest.fixture
def probe(request: pytest.FixtureRequest) -> Any:
    params = request.node.callspec.params
    p = Probe(contract.cell_key(params["api"], params["vendor"], params["feature"]))
    request.node.stash[_PROBE] = p
    yield p
    if request.node.stash.get(_PASSED, False) and not RECORD:
        published = contract.result(p.key)
        observed = p.result()
        mismatch = {k: (published.get(k), v) for k, v in observed.items() if published.get(k) != v}
        if mismatch:
            pytest.fail(
                f"{p.key}: the published contract differs from what the test observed "
                f"(published, observed): {mismatch}; refresh it with `make compat`",
                pytrace=False,
            )


def _cli_cell(item: pytest.Item) -> tuple[str, str] | None:
    marker = item.get_closest_marker("compat_cli")
    if marker is None or not hasattr(item, "callspec"):
        return None
    model = item.callspec.params["model"]
    resolved = Catalog.load().resolve(model)
    assert resolved is not None, model
    return contract.cli_key(marker.args[0], resolved.entry.vendor), model


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    observed = item.config.stash[_OBSERVED]
    p = item.stash.get(_PROBE, None)
    if p is not None and rep.when == "call":
        if call.excinfo is not None and call.excinfo.errisinstance(NotApplicable):
            observed[p.key] = {"status": "n/a", "survives": [], "lost": [], "note": p.note}
            rep.outcome = "skipped"
            rep.longrepr = (str(item.path), 0, f"n/a: {p.note}")
            if not RECORD and contract.result(p.key)["status"] != "n/a":
                rep.outcome = "failed"
                rep.longrepr = f"{p.key}: observed n/a ({p.note}), the contract says otherwise"
        elif rep.passed:
            item.stash[_PASSED] = True
            observed[p.key] = p.result()
        else:
            observed[p.key] = _failing(rep)
    cli = _cli_cell(item) if rep.when == "call" else None
    if cli is not None:
        key, model = cli
        if rep.passed:
            observed[key] = {"status": "yes", "survives": [contract.CLI_CHECK], "lost": []}
        else:
            observed[key] = _failing(rep)
        observed[key]["model"] = model
    return rep


def _failing(rep: pytest.TestReport) -> dict[str, Any]:
    first = str(rep.longrepr).strip().splitlines()[-1:] or ["failed"]
    return {"status": "failing", "survives": [], "lost": [], "note": first[0][:300]}


def pytest_sessionfinish(session: pytest.Session) -> None:
    observed = session.config.stash.get(_OBSERVED, {})
    if not RECORD or not observed:
        return
    data = dict(contract.recorded())
    cells = {**(data.get("cells") or {}), **observed}
    versions = json.loads(_PACKAGE_JSON.read_text())["dependencies"]
    cli_versions = {cli: versions[pkg] for cli, pkg in CLI_PACKAGES.items()}
    if cells == data.get("cells") and cli_versions == data.get("cli_versions"):
        return  # unchanged: the file (and its date) stays as committed
    data["cells"] = dict(sorted(cells.items()))
    data["cli_versions"] = cli_versions
    data["recorded_at"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    contract.RESULTS.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
