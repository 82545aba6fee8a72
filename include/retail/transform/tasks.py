"""The transform DAG's tasks after the dbt build: the gold report, the announcement, and the failure alert that
names dbt's failed models and tests.

Each task reads its configuration (Variables, connections) and calls one plain function; the heavy imports
(psycopg, the providers, plotly) stay inside the task bodies, so that parsing the DAG stays cheap.
"""

from __future__ import annotations

from airflow.sdk import Variable, task

from include.retail.platform import config
from include.retail.platform.alerts import failure_alert, send
from include.retail.platform.connections import bucket, s3_hook, warehouse_connection
from include.retail.transform.cosmos_config import RUN_RESULTS_XCOM_KEY


def _dbt_run(ti, producer_task_id: str):
    """The producer's ``dbt build`` results, node by node (cosmos_config.keep_run_results), or a failure saying
    where to look."""
    from include.retail.transform.dbt_results import DbtRun

    statuses = ti.xcom_pull(task_ids=producer_task_id, key=RUN_RESULTS_XCOM_KEY)
    if not statuses:
        raise RuntimeError(
            f"{producer_task_id} left no dbt run results (XCom {RUN_RESULTS_XCOM_KEY}): "
            "the summary cannot say which tests dbt ran; see that task's log"
        )
    return DbtRun(statuses)


@task
def publish_gold_report(producer_task_id: str, ti=None) -> dict:
    """Render the gold report and write it to ``s3://<bucket>/reports/`` (gold_report_publish.render_and_publish);
    return its bucket and dated key, for the summary."""
    from include.retail.transform.gold_report_publish import render_and_publish

    dbt_run = _dbt_run(ti, producer_task_id)
    with warehouse_connection(config.WAREHOUSE_TRANSFORM_CONN_ID) as conn:
        return render_and_publish(conn, s3_hook().get_conn(), bucket(), dbt_run)


@task
def announce_transform(
    producer_task_id: str, report: dict | None = None, run_id: str | None = None, dag_run=None, ti=None
) -> dict:
    """Publish the transform's summary (summary.announce_transform); it runs only when every model and test
    succeeded."""
    from datetime import UTC, datetime

    from include.retail.transform.summary import announce_transform as announce

    dbt_run = _dbt_run(ti, producer_task_id)
    seconds = (datetime.now(UTC) - dag_run.start_date).total_seconds()
    with warehouse_connection(config.WAREHOUSE_TRANSFORM_CONN_ID) as conn:
        return announce(
            conn,
            s3_hook().get_conn(),
            Variable.get(config.ALERTS_TOPIC_VARIABLE),
            dbt_run,
            run_id=run_id,
            seconds=seconds,
            report=report,
        )


def transform_failure_alert(context) -> tuple[str, str]:
    """The failure alert of a transform task; the producer's names the models and tests its build failed."""
    import airflow  # noqa: F401  # before Cosmos's constants: imported first, they start an import cycle
    from cosmos.constants import PRODUCER_WATCHER_TASK_ID

    from include.retail.transform.dbt_results import dbt_failures

    failed = dbt_failures(context) if context["ti"].task_id.endswith(PRODUCER_WATCHER_TASK_ID) else []
    return failure_alert(context, failed)


def alert_on_transform_failure(context) -> None:
    """The on_failure_callback of every transform task: the alert, published with retries while SNS is down."""
    send(*transform_failure_alert(context))
