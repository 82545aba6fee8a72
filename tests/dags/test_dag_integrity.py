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
    assert {"retail_ingest", "retail_ingest_events", "retail_ingest_file", "retail_transform"} <= set(dagbag.dag_ids)


@pytest.mark.parametrize("ingest_dag_id", ["retail_ingest", "retail_ingest_events", "retail_ingest_file"])
def test_transform_is_scheduled_on_the_asset_ingest_updates(dagbag: DagBag, ingest_dag_id: str) -> None:
    tasks = dagbag.dags[ingest_dag_id].tasks
    outlets = {outlet.name for task in tasks for outlet in getattr(task, "outlets", [])}
    schedule = dagbag.dags["retail_transform"].timetable.asset_condition
    assert {asset.name for asset in schedule.objects} == outlets == {"retail_bronze_transactions"}


def test_the_ingest_dags_load_with_the_same_tasks(dagbag: DagBag) -> None:
    """One load path: the DAGs differ only in how they find their keys."""
    waiting, woken, named = (
        set(dagbag.dags[dag_id].task_dict) for dag_id in ("retail_ingest", "retail_ingest_events", "retail_ingest_file")
    )
    assert waiting - named == {"wait_for_files", "list_incoming"}
    assert woken - named == {"keys_from_events"}
    assert named - waiting == named - woken == {"named_file"}


def _dags_with(trigger: str | None, monkeypatch: pytest.MonkeyPatch) -> DagBag:
    """The DAGs as parsed with the setting retail_trigger at ``trigger`` (None: unset)."""
    if trigger is None:
        monkeypatch.delenv("AIRFLOW_VAR_RETAIL_TRIGGER", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW_VAR_RETAIL_TRIGGER", trigger)
    monkeypatch.setenv("AIRFLOW_VAR_RETAIL_UPLOADS_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/123456789012/q")
    return DagBag(dag_folder=str(DAGS_FOLDER))


@pytest.mark.parametrize("trigger", [None, "sensor", "events"])
def test_the_setting_schedules_exactly_one_way_of_detecting_uploads(
    trigger: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    bag = _dags_with(trigger, monkeypatch)
    assert bag.import_errors == {}
    sensor, events = bag.dags["retail_ingest"], bag.dags["retail_ingest_events"]
    if trigger == "events":
        assert type(sensor.timetable).__name__ == "NullTimetable"
        (uploads,) = events.timetable.asset_condition.objects
        (watcher,) = uploads.watchers
        classpath, kwargs = watcher.trigger.serialize()
        assert classpath == "airflow.providers.amazon.aws.triggers.sqs.SqsSensorTrigger"
        assert kwargs["sqs_queue"] == "https://sqs.eu-west-1.amazonaws.com/123456789012/q"
        assert kwargs["wait_time_seconds"] == 20  # long polling
        assert kwargs["delete_message_on_reception"] is True
    else:  # the default
        assert type(sensor.timetable).__name__ == "ContinuousTimetable"
        assert type(events.timetable).__name__ == "NullTimetable"
    assert sensor.max_active_runs == events.max_active_runs == 1


def test_an_unknown_setting_is_an_import_error_naming_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    bag = _dags_with("polling", monkeypatch)
    assert set(bag.import_errors) == {
        str(DAGS_FOLDER / "retail_ingest.py"),
        str(DAGS_FOLDER / "retail_ingest_events.py"),
    }
    for error in bag.import_errors.values():
        assert "the setting retail_trigger is 'polling'; expected one of: sensor, events" in error


def test_the_sensor_has_neither_check_fn_nor_soft_fail_and_alerts_at_its_first_failed_try(dagbag: DagBag) -> None:
    from include.retail.platform.alerts import alert_on_first_retry

    sensor = dagbag.dags["retail_ingest"].get_task("wait_for_files")
    assert sensor.check_fn is None
    assert sensor.bucket_key == "incoming/*[!/]"
    assert sensor.wildcard_match
    assert not sensor.soft_fail
    assert sensor.deferrable
    assert sensor.retries >= 10
    assert sensor.on_retry_callback == [alert_on_first_retry] or sensor.on_retry_callback == alert_on_first_retry


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


@pytest.mark.parametrize("dag_id", ["retail_ingest", "retail_ingest_events", "retail_ingest_file", "retail_transform"])
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
        "print(json.dumps(sorted(name for name in ('polars', 'fastexcel', 'pandas', 'psycopg', 'openpyxl', 'plotly')"
        " if name in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=os.environ.copy(), check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize(("chosen", "flag"), [(False, False), (True, True)])
def test_the_transforms_full_refresh_param_reaches_the_dbt_build(dagbag: DagBag, chosen: bool, flag: bool) -> None:
    """Ticked in the trigger form, the one `dbt build` runs with --full-refresh; asset-triggered runs never do."""
    import copy

    from cosmos.constants import PRODUCER_WATCHER_TASK_ID

    dag = dagbag.dags["retail_transform"]
    assert dag.params["full_refresh"] is False
    producer = copy.deepcopy(dag.get_task(f"dbt.{PRODUCER_WATCHER_TASK_ID}"))  # rendering changes the task
    assert producer.full_refresh == "{{ params.full_refresh }}"
    producer.render_template_fields({"params": {"full_refresh": chosen}})
    assert ("--full-refresh" in producer.add_cmd_flags()) is flag


def test_every_dbt_task_starts_after_the_build_and_reads_its_verdict_even_when_it_failed(dagbag: DagBag) -> None:
    """No model or test task waits beside the producer: a one-task-at-a-time runner (``dag.test()``) would run a
    waiting one's trigger inline before the build started, and under Airflow 3.3.1's scheduler a rescheduled or
    resumed sensor may be failed by a stale executor event (apache/airflow#71172, #72716; see follow_the_build).
    The first ones run ``all_done``, so that each still ends as dbt ended its node when the build failed."""
    from cosmos.constants import PRODUCER_WATCHER_DONE_TASK_ID, PRODUCER_WATCHER_TASK_ID

    dag = dagbag.dags["retail_transform"]
    producer, done = f"dbt.{PRODUCER_WATCHER_TASK_ID}", f"dbt.{PRODUCER_WATCHER_DONE_TASK_ID}"
    sensors = [task_id for task_id in dag.task_ids if task_id.startswith("dbt.") and task_id not in (producer, done)]
    assert sensors
    for task_id in sensors:
        assert producer in dag.get_task(task_id).get_flat_relative_ids(upstream=True), task_id
    first = dag.get_task(producer).downstream_task_ids - {done}
    assert first
    assert {dag.get_task(task_id).trigger_rule for task_id in first} == {"all_done"}
