"""The ingest DAGs' load tasks, their default args and wiring: Airflow glue around ``include.retail.ingest``.

Every ingest DAG loads through ``load_files``: `retail_ingest` and `retail_ingest_events` feed it the keys their
detection found (``include.retail.detect.tasks``), `retail_ingest_file` the one key a user names. The task ids
are the same in all three, so alerts, logs and tests read alike. Each task reads its configuration (Variables,
connections) and calls one plain function; the heavy modules (polars, fastexcel, psycopg through the Postgres
provider, boto3) are imported inside the task bodies, so that parsing the DAGs stays cheap.
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
from include.retail.platform.connections import bucket, s3_hook, warehouse_connection

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from include.retail.ingest.sandboxed_read import ReadLimits
    from include.retail.ingest.value_rules import ValueRules

# Faults of the platform (a database restart, S3 unreachable or throttling) are retried with backoff; after
# the last try ingest_file records the file `failed` (load.ingest_or_record_failed). The file's faults are
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


def read_limits() -> ReadLimits:
    """The reader's limits, each overridable by the Airflow Variable ``config.READ_LIMIT_VARIABLE_PREFIX`` +
    the field's name; unset ones keep their documented default. They carry the ``value_rules``."""
    import dataclasses

    from include.retail.ingest.sandboxed_read import ReadLimits

    limits = ReadLimits.from_settings(lambda name: Variable.get(config.READ_LIMIT_VARIABLE_PREFIX + name, default=None))
    return dataclasses.replace(limits, value_rules=value_rules())


def value_rules() -> ValueRules:
    """What a value may be, each rule overridable by the Airflow Variable ``config.VALUE_RULE_VARIABLE_PREFIX`` + the
    field's name, and the date orders declared per key prefix by ``config.DATE_ORDER_VARIABLE`` (JSON); unset ones
    keep their documented default. A Variable that does not parse fails the task, naming it."""
    from include.retail.ingest.value_rules import ValueRules

    def setting(name: str) -> str | None:
        return Variable.get(config.VALUE_RULE_VARIABLE_PREFIX + name, default=None)

    date_orders = Variable.get(config.DATE_ORDER_VARIABLE, default=config.DEFAULT_DATE_ORDER)
    try:
        return ValueRules.from_settings(setting, date_orders)
    except ValueError as error:
        raise AirflowFailException(
            f"a Variable {config.VALUE_RULE_VARIABLE_PREFIX}* or {config.DATE_ORDER_VARIABLE} is not valid: {error}"
        ) from error


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
            s3_hook(),
            bucket(),
            key,
            warehouse_connection,
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
    """Publish the run's load summary (announce.announce_batches); the outlet then updates the bronze Asset."""
    from include.retail.ingest.announce import announce_batches

    with warehouse_connection() as conn:
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
