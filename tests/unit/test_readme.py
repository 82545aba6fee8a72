"""README.md and the docs stay true: every make target they name exists in `make help`, every repository path
they name exists, and the sample `make demo` summary is what the demo's printer prints."""

from __future__ import annotations

import io
import re
import subprocess
from contextlib import redirect_stdout
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "infra" / "README.md"]
TOP_LEVEL = {path.name for path in REPO.iterdir() if not path.name.startswith(".")}
# Paths that exist only once made: by `make venv`, `make up`, a test run, the MWAA bundle.
GENERATED = (
    ".venv",
    ".venv-dbt",
    ".devstack",
    ".tools",
    "build/",
    "test-artifacts/",
    "include/dbt/target",
    "dags/include",
    "dags/.airflowignore",  # the MWAA bundle's layout (docs/mwaa.md), made by make mwaa-bundle
)


def make_targets() -> set[str]:
    listed = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"^\s+make (\S+)", listed, flags=re.MULTILINE))


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(REPO)))
def test_every_make_target_named_exists(doc: Path) -> None:
    named = set(re.findall(r"\bmake ([a-z][a-z0-9-]*[a-z0-9])(?![\w-])", doc.read_text()))
    assert named - make_targets() == set()


def _named_paths(text: str) -> set[str]:
    """Repository paths in backticks or in Markdown links: tokens starting with a top-level entry."""
    candidates = re.findall(r"`([^`\s]+)`", text) + re.findall(r"\]\(([^)#\s]+)", text)
    paths = set()
    for token in candidates:
        token = token.rstrip(".,:;")
        head = token.split("/")[0]
        if "/" in token and head in TOP_LEVEL and not any(char in token for char in "<>*{}$…"):
            paths.add(token)
    return paths


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(REPO)))
def test_every_repository_path_named_exists(doc: Path) -> None:
    base = REPO if doc.parent == REPO else doc.parent
    missing = [
        path
        for path in sorted(_named_paths(doc.read_text()))
        if not path.startswith(GENERATED) and not (REPO / path).exists() and not (base / path).exists()
    ]
    assert missing == []


def test_the_sample_demo_summary_is_what_the_demo_prints() -> None:
    from devstack.__main__ import DemoSummary

    block = re.search(r"```\n(  file  .*?)```", (REPO / "README.md").read_text(), flags=re.DOTALL)
    assert block, "README.md has no sample `make demo` summary"
    sample = block.group(1).splitlines()

    summary = DemoSummary(Path("online_retail.xlsx"))
    summary.key = "incoming/online_retail.xlsx"
    summary.ledger = {"status": "loaded", "rows_loaded": 541_909, "rows_rejected": 0, "error": None}
    summary.ledger["duplicate_of"] = None
    summary.ingest_seconds, summary.transform_code, summary.transform_seconds = 21.6, 0, 44.5
    summary.layers = {"silver.transactions": 536_641}
    summary.alerts = [{"subject": "[retail] Loaded 1 file, 541,909 rows into bronze"}]
    summary.holds = [("incoming/online_retail.xlsx", 541_909)]
    printed = io.StringIO()
    with redirect_stdout(printed):
        summary.print()

    def labels(lines: list[str]) -> list[str]:
        """The label column of each line (``file``, ``status``, ...): the printer's format."""
        return [line[2:17].strip() for line in lines if re.match(r"  \S", line)]

    assert labels(sample) == labels(printed.getvalue().splitlines())
    for line in sample:
        if re.match(r"  \S", line):
            assert line[17] != " ", f"the value does not start in column 17: {line!r}"
