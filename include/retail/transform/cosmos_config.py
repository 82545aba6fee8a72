"""The dbt project as Cosmos renders and runs it: the DbtTaskGroup's configuration, in Cosmos's own terms.

Its producer is found by ``PRODUCER_WATCHER_TASK_ID`` and given its arguments through
``ExecutionConfig.setup_operator_args``; the warehouse connection becomes the dbt profile (no profiles.yml
holds a secret); the project renders from the manifest built ahead of time, so parsing never runs dbt.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cosmos import ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import PRODUCER_WATCHER_TASK_ID, ExecutionMode, InvocationMode, LoadMode, TestBehavior
from cosmos.profiles import PostgresUserPasswordProfileMapping

from include.retail.platform import config
from include.retail.transform.dbt_project import DBT_EXECUTABLE, DBT_MANIFEST, DBT_PROJECT_DIR

log = logging.getLogger(__name__)

PROFILE_NAME = "retail"


TARGET_NAME = "airflow"


# Where the producer leaves what its `dbt build` did, node by node (dbt_results.DbtRun.statuses).
RUN_RESULTS_XCOM_KEY = "retail_dbt_run_results"


def keep_run_results(project_dir: str, context) -> None:
    """Cosmos's producer callback, called after its ``dbt build`` (failed or not) in the project copy it ran
    in: keep dbt's ``target/run_results.json`` as an XCom, so that the summary counts the tests dbt ran.

    A run without it (dbt died before writing it) must still end as dbt ended, so this only logs.
    """
    from include.retail.transform.dbt_results import DbtRun

    try:
        statuses = DbtRun.from_file(Path(project_dir) / "target" / "run_results.json").statuses
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("the dbt build left no readable target/run_results.json", exc_info=True)
        return
    context["ti"].xcom_push(key=RUN_RESULTS_XCOM_KEY, value=statuses)


def cosmos_configs() -> dict:
    """The keyword arguments of a Cosmos DbtTaskGroup that runs the project from the manifest.

    Execution: WATCHER mode. One producer task runs a single ``dbt build`` (a dbt process costs
    seconds to start: one per model would multiply that), and a deferrable sensor per model and per
    model's tests mirrors dbt's progress, so the UI still shows one task per model, its tests right
    after it, and a failing test stops (fails) what depends on it.
    """
    return {
        "project_config": ProjectConfig(dbt_project_path=DBT_PROJECT_DIR, manifest_path=DBT_MANIFEST),
        # The warehouse connection becomes the dbt profile: no profiles.yml holds a secret.
        "profile_config": ProfileConfig(
            profile_name=PROFILE_NAME,
            target_name=TARGET_NAME,
            profile_mapping=PostgresUserPasswordProfileMapping(
                conn_id=config.WAREHOUSE_TRANSFORM_CONN_ID, profile_args={"schema": "silver", "threads": 4}
            ),
        ),
        "render_config": RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            test_behavior=TestBehavior.AFTER_EACH,
            dbt_executable_path=DBT_EXECUTABLE,
            invocation_mode=InvocationMode.SUBPROCESS,
        ),
        "execution_config": ExecutionConfig(
            execution_mode=ExecutionMode.WATCHER,
            dbt_executable_path=DBT_EXECUTABLE,
            invocation_mode=InvocationMode.SUBPROCESS,
            # The producer only. Not retried: Cosmos's producer skips any try after the first (a second
            # `dbt build` would race the sensors), and a failed build is re-run per model by the sensors'
            # own retries, as Cosmos intends. Its callback keeps dbt's run results for the summary.
            # full_refresh: the run's param (retail_transform's trigger form), rendered when the producer runs.
            setup_operator_args={
                "retries": 0,
                "callback": keep_run_results,
                "full_refresh": "{{ params.full_refresh }}",
            },
        ),
    }


def follow_the_build(group):
    """Start the model tasks of a WATCHER task group once its producer's ``dbt build`` has finished;
    returns the producer.

    Cosmos starts the per-model sensors beside the producer, to stream progress. Any runner that
    executes one task at a time (``dag.test()``, ``airflow dags test``, a one-slot pool) may then pick a
    sensor first and wait on it forever, since the build it waits for never starts. Putting the
    producer upstream of the first model tasks removes that order dependence; ``all_done`` lets them
    read dbt's verdict even when the build failed, so each model and test task still ends as dbt
    ended it, and a failed test still stops what depends on it.

    Streaming (the sensors beside the build) was measured under the real scheduler and not kept
    (docs/benchmarks.md, issue 15): rescheduled sensors, which ``dag.test()`` runs fine, were failed in
    every run by Airflow 3.3.1's scheduler when a poke's executor event arrived after the next poke had
    started (apache/airflow#71172), each failure costing a 30 s retry; deferred sensors hang ``dag.test()``
    as above, and on two cores they gained nothing: each starts twice (to defer, then to resume), and
    their chain of task starts fell behind dbt, so the tasks after the build's end took longer, not less.
    """
    from airflow.task.trigger_rule import TriggerRule

    producer = group.get_child_by_label(PRODUCER_WATCHER_TASK_ID)
    for first_model_task in group.roots:
        if first_model_task is not producer:
            producer >> first_model_task
            first_model_task.trigger_rule = TriggerRule.ALL_DONE
    return producer
