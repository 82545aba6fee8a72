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
    assert {"retail_ingest", "retail_ingest_file", "retail_transform"} <= set(dagbag.dag_ids)


@pytest.mark.parametrize("ingest_dag_id", ["retail_ingest", "retail_ingest_file"])
def test_transform_is_scheduled_on_the_asset_ingest_updates(dagbag: DagBag, ingest_dag_id: str) -> None:
    tasks = dagbag.dags[ingest_dag_id].tasks
    outlets = {outlet.name for task in tasks for outlet in getattr(task, "outlets", [])}
    schedule = dagbag.dags["retail_transform"].timetable.asset_condition
    assert {asset.name for asset in schedule.objects} == outlets == {"retail_bronze_transactions"}


def test_both_ingest_dags_load_with_the_same_tasks(dagbag: DagBag) -> None:
    """One load path: the DAGs differ only in how they find their keys."""
    waiting, named = (set(dagbag.dags[dag_id].task_dict) for dag_id in ("retail_ingest", "retail_ingest_file"))
    assert waiting - named == {"wait_for_files", "list_incoming"}
    assert named - waiting == {"named_file"}


@pytest.mark.parametrize(
    ("conf", "error"),
    [
        ({}, "No value passed"),
        ({"key": "processed/online_retail.xlsx"}, "does not match '\\^incoming/"),
        ({"key": "incoming/online_retail.xlsx"}, None),
    ],
)
def test_a_named_file_run_needs_a_key_under_incoming(dagbag: DagBag, conf: dict, error: str | None) -> None:
    """The trigger form refuses a run with no key, or one outside incoming/, before anything starts."""
    import copy

    from airflow.sdk.definitions.param import ParamValidationError

    def validated() -> dict:
        params = copy.deepcopy(dagbag.dags["retail_ingest_file"].params)
        params.update(conf)
        return params.validate()

    if error is None:
        assert validated() == conf
    else:
        with pytest.raises(ParamValidationError, match=error):
            validated()


@pytest.mark.parametrize("dag_id", ["retail_ingest", "retail_ingest_file", "retail_transform"])
def test_dag_is_documented_owned_tagged_and_retried(dagbag: DagBag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    assert dag.doc_md
    assert len(dag.doc_md) > 200
    assert dag.tags
    assert not dag.catchup
    check_cycle(dag)
    for task in dag.tasks:
        assert task.owner not in ("", "airflow"), f"{task.task_id} has no owner"
        # These two are not retried on purpose: one only marks the run failed; the other is the dbt
        # build, which the model tasks re-run per model on their own retries.
        if task.task_id not in ("fail_run_if_a_file_failed", "dbt.dbt_producer_watcher"):
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
