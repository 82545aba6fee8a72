"""The load half of ingest, shared by both ingest DAGs: prepare the warehouse, load each file, announce.

`retail_ingest` feeds it the files its sensor found under incoming/; `retail_ingest_file` feeds it the one
key a user names. The task ids are the same in both, so alerts, logs and tests read alike.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowFailException
from airflow.task.trigger_rule import TriggerRule

from include.retail import tasks
from include.retail.alerts import alert_on_failure
from include.retail.assets import BRONZE_TRANSACTIONS

# Faults of the platform (a database restart, S3 unreachable or throttling) are retried with backoff; after
# the last try ingest_file records the file `failed` (include/retail/tasks.py). The file's faults are not
# retried (AirflowFailException). Every failed task publishes one alert (on_failure_callback runs on the
# final failure only, not per retry). Tests shorten the delays by patching the tasks, not through a setting.
INGEST_DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 2,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=5),
    "on_failure_callback": alert_on_failure,
}


@task
def apply_warehouse_ddl() -> list[str]:
    return tasks.apply_warehouse_ddl()


@task(
    map_index_template="{{ file_key }}",
    max_active_tis_per_dag=2,
    execution_timeout=timedelta(minutes=30),
)
def ingest_file(key: str, run_id: str | None = None) -> dict:
    get_current_context()["file_key"] = key  # type: ignore[typeddict-unknown-key]
    return tasks.ingest_file(key, run_id)


# ALL_DONE: it also runs when this run's loads were skipped or failed, to announce batches an earlier,
# interrupted run committed but never announced (it skips itself when there is nothing to announce).
@task(trigger_rule=TriggerRule.ALL_DONE, outlets=[BRONZE_TRANSACTIONS])
def announce_loads(run_id: str | None = None) -> dict:
    return tasks.announce_loads(run_id)


@task(trigger_rule=TriggerRule.ONE_FAILED, retries=0, on_failure_callback=[])
def fail_run_if_a_file_failed() -> None:
    """Mark the run failed when any file failed: the failed task has already sent its alert."""
    raise AirflowFailException("A file failed to load; see the failed ingest_file task(s).")


def load_files(keys) -> None:
    """One ``ingest_file`` per key of ``keys`` (a task's list), once the warehouse is prepared; then announce.

    The preparation does not wait for ``keys``: in the waiting DAG it is done while the sensor waits.
    """
    loads = ingest_file.expand(key=keys)
    apply_warehouse_ddl() >> loads
    loads >> [announce_loads(), fail_run_if_a_file_failed()]
