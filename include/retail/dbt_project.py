"""Where the dbt project, its manifest and its dbt executable are, and how Cosmos runs them.

One module for the DAG and the tools (make, tests, benchmarks), overridable by environment variables
so that the same code finds them on the embedded stack, in the Docker image and on MWAA:

- ``RETAIL_DBT_PROJECT_DIR``: the dbt project (default: ``include/dbt`` beside this package);
- ``RETAIL_DBT_EXECUTABLE``: dbt in its own virtualenv (default: ``.venv-dbt/bin/dbt`` at the repo root),
  because dbt-core's pins conflict with Airflow's (MWAA's) and it must not share their environment.
"""

from __future__ import annotations

import os
from pathlib import Path

from include.retail import config

_INCLUDE = Path(__file__).resolve().parent.parent

DBT_PROJECT_DIR = Path(os.environ.get("RETAIL_DBT_PROJECT_DIR", _INCLUDE / "dbt"))
DBT_EXECUTABLE = Path(os.environ.get("RETAIL_DBT_EXECUTABLE", _INCLUDE.parent / ".venv-dbt" / "bin" / "dbt"))
# Built ahead of time by `dbt parse` (make, the Docker build, CI), so that parsing the DAG never runs dbt.
DBT_MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"
PROFILE_NAME = "retail"
# The WATCHER producer's task id in its group (Cosmos's PRODUCER_WATCHER_TASK_ID; cosmos.constants imports
# Airflow, too heavy for the alert callback's module to import at parse time).
PRODUCER_TASK_ID = "dbt_producer_watcher"
TARGET_NAME = "airflow"


def cosmos_configs() -> dict:
    """The keyword arguments of a Cosmos DbtTaskGroup that runs the project from the manifest.

    Execution: WATCHER mode. One producer task runs a single ``dbt build`` (a dbt process costs
    seconds to start: one per model would multiply that), and a deferrable sensor per model and per
    model's tests mirrors dbt's progress, so the UI still shows one task per model, its tests right
    after it, and a failing test stops (fails) what depends on it.
    """
    from cosmos import ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
    from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior
    from cosmos.profiles import PostgresUserPasswordProfileMapping

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
        ),
    }


def follow_the_build(group) -> None:
    """Start the model tasks of a WATCHER task group once its producer's ``dbt build`` has finished.

    Cosmos starts the per-model sensors beside the producer, to stream progress. Any runner that
    executes one task at a time (``dag.test()``, ``airflow dags test``, a one-slot pool) may then pick a
    sensor first and wait on it forever, since the build it waits for never starts. Putting the
    producer upstream of the first model tasks removes that order dependence; ``all_done`` lets them
    read dbt's verdict even when the build failed, so each model and test task still ends as dbt
    ended it, and a failed test still stops what depends on it. The producer is not retried: a
    failed build is re-run per model by the sensors' own retries, as Cosmos intends.
    """
    from airflow.task.trigger_rule import TriggerRule

    producer = next(task for task in group.children.values() if task.task_id.endswith("." + PRODUCER_TASK_ID))
    producer.retries = 0
    for first_model_task in group.roots:
        if first_model_task is not producer:
            producer >> first_model_task
            first_model_task.trigger_rule = TriggerRule.ALL_DONE
