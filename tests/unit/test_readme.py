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
    from devstack.demo import DemoSummary

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


def _section(text: str, heading: str) -> str:
    """The body of the ``## heading`` section of a Markdown text."""
    found = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert found, f"no section '## {heading}'"
    return found.group(1)


def test_every_make_target_is_in_the_readmes_command_table() -> None:
    table = _section((REPO / "README.md").read_text(), "Commands")
    listed = set(re.findall(r"^\|[^|]*\| `make ([a-z][a-z0-9-]*)", table, flags=re.MULTILINE))
    assert make_targets() - listed == set()


def test_the_readme_links_every_docs_page() -> None:
    linked = set(re.findall(r"\]\((docs/[^)#\s]+\.md)", (REPO / "README.md").read_text()))
    pages = {f"docs/{page.name}" for page in (REPO / "docs").glob("*.md")}
    assert pages - linked == set(), "docs pages README does not link"
    assert [page for page in sorted(linked) if not (REPO / page).is_file()] == []


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(REPO)))
def test_every_link_to_a_section_finds_its_heading(doc: Path) -> None:
    broken = []
    for target, anchor in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", doc.read_text()):
        page = (doc.parent / target) if target else doc
        if target.startswith("http") or not page.is_file():
            continue  # another site, or a missing page (test_every_repository_path_named_exists says so)
        headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.MULTILINE)
        if anchor not in {_anchor(heading) for heading in headings}:
            broken.append(f"{target}#{anchor}")
    assert broken == []


def test_the_sample_demo_stage_lines_are_what_the_demo_prints() -> None:
    """Each sample stage line has the clock's prefix, and its task and dbt lines are what devstack/progress.py makes
    of the log lines `airflow dags test` writes for them."""
    from devstack.progress import summarise

    block = re.search(r"```\n(  \[ .*?)```", (REPO / "README.md").read_text(), flags=re.DOTALL)
    assert block, "README.md has no sample `make demo` stage lines"
    stamp = "2026-11-30T17:04:27.209149Z [info     ]"
    checked = 0
    for line in block.group(1).splitlines():
        if line.strip() == "...":
            continue
        stage = re.fullmatch(r"  \[(?P<seconds>[ \d]{3}\d\.\d)s\] (?P<text>.+)", line)
        assert stage, f"not a stage line of devstack.progress.Clock: {line!r}"
        text = stage["text"]
        if task := re.fullmatch(r"task (\S+?)(?:\[(\d+)\])?", text):
            log_line = f"{stamp} [DAG TEST] starting task_id={task[1]} map_index={task[2] or -1} [airflow.sdk] loc=x"
        elif dbt := re.fullmatch(r"dbt +(\d+)/(\d+) (\w+) +(.+) \((.+)\)", text):
            n, total, status, what, detail = dbt.groups()
            verdict = "OK created sql" if status == "OK" else status
            log_line = f"{stamp} 17:04:27  {n} of {total} {verdict} {what} ...... [{detail}] [cosmos] loc=x"
        else:
            continue  # the pipeline's own INFO lines: their wording belongs to include/retail
        assert summarise(log_line, {}) == text
        checked += 1
    assert checked > 0


def test_the_sample_summary_lists_the_layers_as_the_demo_does() -> None:
    """Rows per layer: bronze's current rows first, then the models sorted by schema and name, as
    devstack.demo._layer_rows counts them, each line in the printer's format."""
    from devstack.demo import DemoSummary

    block = re.search(r"```\n(  file  .*?)```", (REPO / "README.md").read_text(), flags=re.DOTALL)
    assert block, "README.md has no sample `make demo` summary"
    lines = [line for line in block.group(1).splitlines() if re.match(r"    \w", line)]
    layers = {}
    for line in lines:
        table, rows = re.fullmatch(r"    (\S+) +([\d,]+) rows", line).groups()
        layers[table] = int(rows.replace(",", ""))
    bronze, *models = layers
    assert bronze == "bronze.retail_transactions_current"
    assert models == sorted(models)

    summary = DemoSummary(Path("online_retail.xlsx"))
    summary.transform_code, summary.layers = 0, layers
    printed = io.StringIO()
    with redirect_stdout(printed):
        summary.print()
    assert lines == [line for line in printed.getvalue().splitlines() if re.match(r"    \w", line)]
