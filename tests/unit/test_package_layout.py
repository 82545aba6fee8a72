"""The pipeline's package is laid out as its flow (issue 21): one sub-package per stage, each module one concern,
imports going down the flow and never round in a cycle.

Imports are read from the source (every ``import``, also those inside functions and under TYPE_CHECKING: a lazy
import is still a dependency), so the check needs neither Airflow nor any module to import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("include", "devstack", "mwaa", "dags", "plugins")
# "About 400 lines": past that a module usually holds more than one concern and is split by concern.
MAX_MODULE_LINES = 420
# Which stages each part of include/retail may import: down the flow, never up.
STAGES = ("platform", "detect", "ingest", "transform")
MAY_IMPORT = {
    "platform": set(),
    "detect": {"platform"},
    "ingest": {"platform", "detect"},
    "transform": {"platform", "ingest"},
    "health": {"platform", "detect", "ingest", "transform"},
}


def project_modules() -> dict[str, Path]:
    """Every Python module of the project's code, by dotted name."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The project modules ``path`` imports: ``from a.b import c`` is module ``a.b.c`` when that is one."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [name if name in known else node.module for name in names]
        else:
            continue
        yield from (name for name in names if name in known)


@pytest.fixture(scope="module")
def import_graph() -> dict[str, set[str]]:
    known = project_modules()
    return {name: set(imported_modules(path, known)) - {name} for name, path in known.items()}


def test_no_module_is_over_about_400_lines() -> None:
    long = {
        name: lines
        for name, path in project_modules().items()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by concern): {long}"


def test_no_import_cycle(import_graph: dict[str, set[str]]) -> None:
    """Depth-first search; a back edge is a cycle, reported as the path round it."""
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(import_graph[module]):
            if state.get(imported) == "open":
                cycles.append([*path[path.index(imported) :], imported])
            elif imported not in state:
                visit(imported, [*path, imported])
        state[module] = "done"

    for module in sorted(import_graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] != ["include", "retail"] or len(parts) < 3:
        return None
    return parts[2]


def test_stages_import_down_the_flow_only(import_graph: dict[str, set[str]]) -> None:
    upward = sorted(
        f"{module} imports {imported}"
        for module, imports in import_graph.items()
        if (stage := stage_of(module)) in MAY_IMPORT
        for imported in imports
        if (other := stage_of(imported)) not in (None, stage) and other not in MAY_IMPORT[stage]
    )
    assert not upward, "imports against the flow: " + "; ".join(upward)


def test_every_stage_is_a_folder_and_the_package_root_holds_no_stage_logic() -> None:
    package = REPO_ROOT / "include" / "retail"
    assert sorted(path.name for path in package.iterdir() if path.is_dir() and path.name != "__pycache__") == sorted(
        STAGES
    )
    assert sorted(path.name for path in package.glob("*.py")) == ["__init__.py", "health.py"]


def test_the_dags_import_the_pipeline_only_through_its_stages(import_graph: dict[str, set[str]]) -> None:
    for dag_module in (name for name in import_graph if name.startswith("dags.")):
        for imported in import_graph[dag_module]:
            if imported.startswith("include."):
                assert stage_of(imported) in STAGES, f"{dag_module} imports {imported}"
