"""The package's import structure: the import-linter contracts in pyproject.toml hold, and no
import cycle exists anywhere in `tokenrelay` (function-local and `if TYPE_CHECKING` imports
included: grimp reads every import statement in a module)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "tokenrelay"


def test_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run(
        [str(lint_imports), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, f"import contracts broken:\n{proc.stdout}\n{proc.stderr}"


def strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's algorithm, iterative: every group of more than one module that import each
    other through some chain, each sorted, the groups sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph.find_modules_directly_imported_by(succ)))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    group: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
    return sorted(groups)


def describe_cycle(graph: grimp.ImportGraph, group: list[str]) -> str:
    """One concrete cycle through the group's first module, each import with its line."""
    first = group[0]
    back = next(
        chain
        for imported in sorted(graph.find_modules_directly_imported_by(first))
        if imported in group
        and (chain := graph.find_shortest_chain(importer=imported, imported=first)) is not None
    )
    hops = [first, *back]
    lines = []
    for importer, imported in itertools.pairwise(hops):
        details = graph.get_import_details(importer=importer, imported=imported)
        where = "; ".join(f"line {d['line_number']}: {d['line_contents']}" for d in details)
        lines.append(f"  {importer} -> {imported}  ({where})")
    return f"cycle among {', '.join(group)}:\n" + "\n".join(lines)


def test_no_import_cycles() -> None:
    graph = grimp.build_graph(PACKAGE, cache_dir=None)
    groups = strongly_connected(graph)
    assert not groups, "\n".join(describe_cycle(graph, group) for group in groups)


def test_cycle_finder_finds_a_planted_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("p.a", "p.b", "p.c", "p.d"):
        graph.add_module(name)
    graph.add_import(importer="p.a", imported="p.b", line_number=1, line_contents="import p.b")
    graph.add_import(importer="p.b", imported="p.c", line_number=2, line_contents="import p.c")
    graph.add_import(importer="p.c", imported="p.a", line_number=3, line_contents="import p.a")
    graph.add_import(importer="p.c", imported="p.d", line_number=4, line_contents="import p.d")
    assert strongly_connected(graph) == [["p.a", "p.b", "p.c"]]
    assert "p.c -> p.a  (line 3: import p.a)" in describe_cycle(graph, ["p.a", "p.b", "p.c"])
