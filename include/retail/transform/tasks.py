"""The transform DAG's tasks: the dbt project as a Cosmos task group, and the announcement of what it built.

The Cosmos configuration speaks Cosmos's own terms: its producer is found by ``PRODUCER_WATCHER_TASK_ID``
and given its arguments through ``ExecutionConfig.setup_operator_args``. After the build, the gold report is
published, then announced with the summary. The tasks' heavy imports (psycopg, the providers, plotly) stay
inside their bodies, so that parsing the DAG stays cheap.
"""

from __future__ import annotations

import logging
from pathlib import Path

from airflow.sdk import task
from cosmos import ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import PRODUCER_WATCHER_TASK_ID, ExecutionMode, InvocationMode, LoadMode, TestBehavior
from cosmos.profiles import PostgresUserPasswordProfileMapping

from include.retail.platform import config
from include.retail.transform.dbt_project import DBT_EXECUTABLE, DBT_MANIFEST, DBT_PROJECT_DIR

log = logging.getLogger(__name__)

PROFILE_NAME = "retail"
TARGET_NAME = "airflow"
# Where the producer leaves what its `dbt build` did, node by node (reports.DbtRun.statuses).
RUN_RESULTS_XCOM_KEY = "retail_dbt_run_results"


def keep_run_results(project_dir: str, context) -> None:
    """Cosmos's producer callback, called after its ``dbt build`` (failed or not) in the project copy it ran
    in: keep dbt's ``target/run_results.json`` as an XCom, so that the summary counts the tests dbt ran.

    A run without it (dbt died before writing it) must still end as dbt ended, so this only logs.
    """
    from include.retail.transform.summary import DbtRun

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


def _dbt_statuses(ti, producer_task_id: str) -> dict[str, str]:
    """The producer's ``dbt build`` results, node by node (keep_run_results), or a failure saying where to look."""
    statuses = ti.xcom_pull(task_ids=producer_task_id, key=RUN_RESULTS_XCOM_KEY)
    if not statuses:
        raise RuntimeError(
            f"{producer_task_id} left no dbt run results (XCom {RUN_RESULTS_XCOM_KEY}): "
            "the summary cannot say which tests dbt ran; see that task's log"
        )
    return statuses


@task
def publish_gold_report(producer_task_id: str, ti=None) -> dict:
    """Render the gold report (include/retail/transform/gold_report.py) and write it to ``s3://<bucket>/reports/``, dated
    and as ``latest.html``; return its bucket and dated key, for the summary. Skipped, as the summary is, when
    gold is empty."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from airflow.sdk import Variable
    from airflow.sdk.exceptions import AirflowSkipException

    from include.retail.transform import gold_report
    from include.retail.transform.summary import DbtProject, DbtRun, layer_counts, nothing_to_announce

    dbt_run = DbtRun(_dbt_statuses(ti, producer_task_id))
    conn = PostgresHook(postgres_conn_id=config.WAREHOUSE_TRANSFORM_CONN_ID).get_conn()
    conn.autocommit = True
    with conn:
        counts = layer_counts(conn, DbtProject.from_manifest(DBT_MANIFEST))
        if reason := nothing_to_announce(counts):
            raise AirflowSkipException(reason)
        report = gold_report.read_gold(conn, counts, dbt_run)
    page = gold_report.render_html(report)
    bucket = Variable.get(config.BUCKET_VARIABLE)
    key = gold_report.publish(S3Hook(aws_conn_id=config.AWS_CONN_ID).get_conn(), bucket, page, report.generated_at)
    log.info("gold report (%s bytes): s3://%s/%s, also %s", f"{len(page):,}", bucket, key, gold_report.LATEST_KEY)
    return {"bucket": bucket, "key": key}


@task
def announce_transform(
    producer_task_id: str, report: dict | None = None, run_id: str | None = None, dag_run=None, ti=None
) -> dict:
    """Publish what the transform built, the tests its dbt build ran and where its gold report is, with a
    presigned link to it (it runs only when every model and test succeeded); skipped, saying why, when there is
    nothing to announce."""
    from datetime import UTC, datetime

    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from airflow.sdk import Variable
    from airflow.sdk.exceptions import AirflowSkipException

    from include.retail.platform.alerts import publish
    from include.retail.transform.gold_report import share
    from include.retail.transform.summary import (
        DbtProject,
        DbtRun,
        gold_revenue,
        layer_counts,
        nothing_to_announce,
        transform_summary,
    )

    statuses = _dbt_statuses(ti, producer_task_id)
    project = DbtProject.from_manifest(DBT_MANIFEST)
    seconds = (datetime.now(UTC) - dag_run.start_date).total_seconds()
    conn = PostgresHook(postgres_conn_id=config.WAREHOUSE_TRANSFORM_CONN_ID).get_conn()
    conn.autocommit = True
    with conn:
        counts = layer_counts(conn, project)
        if reason := nothing_to_announce(counts):
            raise AirflowSkipException(reason)
        revenue = gold_revenue(conn)
    subject, message = transform_summary(
        revenue,
        counts,
        DbtRun(statuses),
        run_id=run_id,
        seconds=seconds,
        # Presigned here, where it is sent: the link is in the message, never in an XCom or a log.
        report=share(S3Hook(aws_conn_id=config.AWS_CONN_ID).get_conn(), **report) if report else None,
    )
    message_id = publish(Variable.get(config.ALERTS_TOPIC_VARIABLE), subject, message)
    return {"subject": subject, "message_id": message_id, "rows": counts, "report": report}
