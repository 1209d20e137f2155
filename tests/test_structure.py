"""The code's shape: no import cycles among the product's modules, and the layers in order.

The graph comes from grimp, which reads every import statement (module level and inside
functions alike), so a cycle cannot hide in a function body.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
from flask import Flask

PACKAGES = ("market", "search", "workers")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(
        *PACKAGES, include_external_packages=False, exclude_type_checking_imports=True
    )


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    imports = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(imports):
        if root in index:
            continue
        work = [(root, iter(sorted(imports[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(imports[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("a", "a.b", "a.c", "a.d"):
        graph.add_module(module)
    graph.add_import(importer="a.b", imported="a.c")
    graph.add_import(importer="a.c", imported="a.b")
    graph.add_import(importer="a.c", imported="a.d")
    assert _cycles(graph) == [["a.b", "a.c"]]


def test_no_module_imports_itself_through_others(graph: grimp.ImportGraph) -> None:
    cycles = _cycles(graph)
    assert cycles == [], "\n".join(
        " -> ".join(str(link) for link in graph.find_shortest_chain(cycle[0], cycle[1]) or [])
        + f"  (cycle of {len(cycle)}: {', '.join(cycle)})"
        for cycle in cycles
    )


@pytest.mark.parametrize(
    ("lower", "upper"),
    [
        ("market.services", "workers"),  # services emit outbox rows; the workers run them
        ("market.models", "market.services"),
        ("market.ledger", "market.api"),
        ("search", "market.api"),
        ("workers.outbox", "search.sync"),  # the bottom layer knows no handler
        ("workers.outbox", "workers.ledger"),
        ("search.text", "market.models"),  # tokenising is pure: the models use it
        ("market.services.pagination", "workers"),
        ("market.services.unit_of_work", "workers"),
    ],
)
def test_a_lower_layer_never_imports_an_upper_one(
    graph: grimp.ImportGraph, lower: str, upper: str
) -> None:
    chain = graph.find_shortest_chains(importer=lower, imported=upper, as_packages=True)
    assert not chain, f"{lower} imports {upper}: {sorted(chain)[:3]}"


MAX_FUNCTION_LINES = 60
# Known offenders that other branches are splitting ("path::name"); the lead empties this list
# as they land. quote_award, warn_expiring_certifications and build_scheduler were on it and
# have been split on main since; a name that is no longer too long fails the test below.
TOO_LONG_FOR_NOW: frozenset[str] = frozenset()


def _long_functions(root: Path) -> dict[str, int]:
    """Every function or method (nested ones too) of more than MAX_FUNCTION_LINES lines,
    decorators and docstring included, as ``path::name`` → lines."""
    found: dict[str, int] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = (node.end_lineno or node.lineno) - first + 1
                if lines > MAX_FUNCTION_LINES:
                    found[f"{path.relative_to(root).as_posix()}::{node.name}"] = lines
    return found


def test_the_length_check_sees_a_long_function(tmp_path: Path) -> None:
    (tmp_path / "market").mkdir()
    body = "\n".join(f"    x{n} = {n}" for n in range(MAX_FUNCTION_LINES))
    (tmp_path / "market" / "long.py").write_text(
        f"def short():\n    pass\n\n\ndef long():\n{body}\n"
    )
    assert _long_functions(tmp_path) == {"market/long.py::long": MAX_FUNCTION_LINES + 1}


def test_no_product_function_is_over_60_lines() -> None:
    found = _long_functions(Path(__file__).resolve().parent.parent)
    unexpected = {name: lines for name, lines in found.items() if name not in TOO_LONG_FOR_NOW}
    assert set(found) >= TOO_LONG_FOR_NOW, (
        f"fixed, take off the list: {TOO_LONG_FOR_NOW - set(found)}"
    )
    assert not unexpected, "\n".join(
        f"{n}: {lines} lines" for n, lines in sorted(unexpected.items())
    )


# Imported by the first drawing or workbook, not by every process at start-up (about 0.7 s of a
# worker's, a command's or `flask search reindex`'s start; market.insights.drawing says why).
DRAWN_ON_FIRST_USE = ("matplotlib", "openpyxl")


def test_the_app_starts_without_the_drawing_libraries() -> None:
    code = (
        "import sys\n"
        "from market import create_app\n"
        "from market.config import TestConfig\n"
        "create_app(TestConfig)\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(DRAWN_ON_FIRST_USE)!r}))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr


def test_a_drawing_and_a_workbook_still_load_them(app: Flask) -> None:
    from market.insights import charts
    from market.ledger import sheets

    figures = {"year": 2026, "items": [], "totals": {"chip_share": {"value": None}}}
    assert charts.render("chips", figures).startswith("<?xml")
    assert sheets.workbook_bytes(sheets.new_workbook()).startswith(b"PK")
