"""Every DAG imports cleanly and carries what operators of the project rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.utils.dag_cycle_tester import check_cycle

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(DAGS_FOLDER.glob("*.py"))


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(DAGS_FOLDER))


def test_no_import_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}
    assert dagbag.dag_ids, "no DAG found"


def test_expected_dags_exist(dagbag: DagBag) -> None:
    assert "retail_ingest" in dagbag.dag_ids


@pytest.mark.parametrize("dag_id", ["retail_ingest"])
def test_dag_is_documented_owned_tagged_and_retried(dagbag: DagBag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    assert dag.doc_md
    assert len(dag.doc_md) > 200
    assert dag.tags
    assert not dag.catchup
    check_cycle(dag)
    for task in dag.tasks:
        assert task.owner not in ("", "airflow"), f"{task.task_id} has no owner"
        if task.task_id != "fail_run_if_a_file_failed":  # it only marks the run; retrying it means nothing
            assert task.retries >= 1, f"{task.task_id} is not retried"
            assert task.on_failure_callback, f"{task.task_id} sends no failure alert"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda path: path.name)
def test_dag_file_imports_nothing_heavy_at_parse_time(dag_file: Path) -> None:
    """Parsing must stay cheap: data libraries load inside tasks, never at import."""
    probe = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('probe_dag', {str(dag_file)!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(json.dumps(sorted(name for name in ('polars', 'fastexcel', 'pandas', 'psycopg', 'openpyxl')"
        " if name in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=os.environ.copy(), check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
