"""The ingest DAGs' tasks, their default args and wiring: Airflow glue around ``include.retail.ingest.load``.

Both DAGs load through ``load_files``: `retail_ingest` feeds it the files its sensor found under incoming/,
`retail_ingest_file` the one key a user names. The task ids are the same in both, so alerts, logs and tests
read alike. Each task reads its configuration (Variables, connections) and calls one plain function; the heavy
modules (polars, fastexcel, psycopg through the Postgres provider, boto3) are imported inside the task bodies,
so that parsing the DAGs stays cheap.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from airflow.sdk import Variable, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from airflow.task.trigger_rule import TriggerRule

from include.retail.platform import config
from include.retail.platform.alerts import alert_on_failure
from include.retail.platform.assets import BRONZE_TRANSACTIONS

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import psycopg

    from include.retail.ingest.sandboxed_read import ReadLimits

# Faults of the platform (a database restart, S3 unreachable or throttling) are retried with backoff; after
# the last try ingest_file records the file `failed` (ingest.ingest_or_record_failed). The file's faults are
# not retried (AirflowFailException). Every failed task publishes one alert (on_failure_callback runs on the
# final failure only, not per retry). Tests shorten the delays by patching the tasks, not through a setting.
INGEST_DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 2,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=5),
    "on_failure_callback": alert_on_failure,
}


def _bucket() -> str:
    return Variable.get(config.BUCKET_VARIABLE)


def _warehouse_connection() -> psycopg.Connection:
    """The loader's psycopg connection in autocommit mode: each unit of work opens its own transaction."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn = PostgresHook(postgres_conn_id=config.WAREHOUSE_CONN_ID).get_conn()
    conn.autocommit = True
    return conn


def _s3():
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=config.AWS_CONN_ID)


def read_limits() -> ReadLimits:
    """The reader's limits, each overridable by the Airflow Variable ``config.READ_LIMIT_VARIABLE_PREFIX`` +
    the field's name; unset ones keep their documented default."""
    from include.retail.ingest.sandboxed_read import ReadLimits

    return ReadLimits.from_settings(lambda name: Variable.get(config.READ_LIMIT_VARIABLE_PREFIX + name, default=None))


@task
def list_incoming() -> list[str]:
    """The keys the waiting run loads (ingest.keys_to_load); stands down when detection is by events."""
    from include.retail.detect.events import Trigger, stand_down_unless
    from include.retail.ingest.load import keys_to_load

    stand_down_unless(Trigger.SENSOR)
    return keys_to_load(_s3(), _bucket())


@task
def keys_from_events(triggering_asset_events=None) -> list[str]:
    """The keys a run woken by upload events loads: those its events announce, and whatever else waits
    under incoming/: an event lost or left behind (apache/airflow#56050) never strands a file. Stands down
    when detection is by sensor."""
    from include.retail.platform.assets import INCOMING_UPLOADS
    from include.retail.detect.events import Trigger, keys_from_asset_events, stand_down_unless
    from include.retail.ingest.load import MAX_FILES_PER_EVENT_RUN, keys_to_load

    stand_down_unless(Trigger.EVENTS)
    announced = keys_from_asset_events(triggering_asset_events[INCOMING_UPLOADS] if triggering_asset_events else [])
    waiting = keys_to_load(_s3(), _bucket(), limit=MAX_FILES_PER_EVENT_RUN)
    missing = [key for key in announced if key not in waiting]
    log.info("announced by %d event(s): %s", len(announced), ", ".join(announced) or "none")
    if missing:
        log.info("already taken (a repeated event, or an earlier run took it): %s", ", ".join(missing))
    if unannounced := [key for key in waiting if key not in announced]:
        log.info("waiting in incoming/ without an event of this run, taken too: %s", ", ".join(unannounced))
    if not waiting:
        # S3's test event when the notification was configured, a folder marker, a repeated event.
        raise AirflowSkipException(f"nothing waits under {config.INCOMING_PREFIX}; nothing to load")
    return waiting


@task
def apply_warehouse_ddl() -> list[str]:
    from include.retail.platform.warehouse import prepare_warehouse

    return prepare_warehouse()


@task(
    map_index_template="{{ file_key }}",
    max_active_tis_per_dag=2,
    execution_timeout=timedelta(minutes=30),
)
def ingest_file(key: str, run_id: str | None = None) -> dict:
    """Load one file; the contract's rejection (already quarantined) becomes Airflow's no-retry failure."""
    from include.retail.ingest.contract import FileRejected
    from include.retail.ingest.load import ingest_or_record_failed

    context = get_current_context()
    context["file_key"] = key  # type: ignore[typeddict-unknown-key]
    ti = context["ti"]
    max_rejected = float(
        Variable.get(config.MAX_REJECTED_FRACTION_VARIABLE, default=config.DEFAULT_MAX_REJECTED_FRACTION)
    )
    try:
        result = ingest_or_record_failed(
            _s3(),
            _bucket(),
            key,
            _warehouse_connection,
            max_rejected_fraction=max_rejected,
            read_limits=read_limits(),
            run_id=run_id,
            last_try=ti.try_number > ti.max_tries,
        )
    except FileRejected as rejection:
        raise AirflowFailException(str(rejection)) from rejection
    return result.as_dict()


# ALL_DONE: it also runs when this run's loads were skipped or failed, to announce batches an earlier,
# interrupted run committed but never announced (it skips itself when there is nothing to announce).
@task(trigger_rule=TriggerRule.ALL_DONE, outlets=[BRONZE_TRANSACTIONS])
def announce_loads(run_id: str | None = None) -> dict:
    """Publish the run's load summary (ingest.announce_batches); the outlet then updates the bronze Asset."""
    from include.retail.ingest.load import announce_batches

    with _warehouse_connection() as conn:
        announced = announce_batches(conn, run_id, alerts_topic=lambda: Variable.get(config.ALERTS_TOPIC_VARIABLE))
    if announced is None:
        raise AirflowSkipException("No file was loaded in this run nor left unannounced; bronze is unchanged.")
    return announced


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
