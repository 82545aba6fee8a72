"""
### Retail ingest: S3 workbooks into the bronze schema

Waits (deferred, in the triggerer) for files under `incoming/` of the bucket named by the Variable
`retail_bucket`, then loads each file in its own mapped task:

1. read every sheet (`.xlsx`) or the CSV, matching headers by name (`InvoiceNo`/`Invoice`, `UnitPrice`/`Price`,
   `CustomerID`/`Customer ID`, …);
2. check the contract and type the values; rows that cannot be typed go to `bronze.rejected_rows`;
3. COPY the rows into `bronze.retail_transactions` with their lineage, and record the file in
   `bronze.load_ledger`, in one transaction;
4. move the object to `processed/`, or, when the file breaks the contract, to `quarantine/` with a
   `.report.json` beside it (nothing is loaded and the task fails without retrying).

The same content is loaded once (the ledger keys it by SHA-256); a corrected file under a loaded key
supersedes the earlier load, whose rows stay in bronze. A run that loads anything updates the
`retail_bronze_transactions` Asset and publishes a summary to the SNS topic in `retail_alerts_topic_arn`;
any failed task publishes an alert.

**Run it by hand** with the `key` param to process one object now, e.g. `incoming/online_retail.xlsx`: such a
run does not wait. One run is active at a time (`@continuous`), so a manual run starts when the waiting run
ends, which is at once if the file is under `incoming/` (the waiting run then loads it, and the manual run is
skipped as already handled).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException
from airflow.task.trigger_rule import TriggerRule

from include.retail import config, tasks
from include.retail.alerts import alert_on_failure
from include.retail.assets import BRONZE_TRANSACTIONS
from include.retail.sensors import IncomingFilesSensor


@dag(
    dag_id="retail_ingest",
    # A sensor is always waiting, and runs never pile up: the next run starts when this one ends.
    schedule="@continuous",
    max_active_runs=1,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    doc_md=__doc__,
    tags=["retail", "ingest", "bronze", "s3"],
    params={
        "key": Param(
            None,
            type=["null", "string"],
            title="S3 key",
            description="Process this one object now (e.g. incoming/online_retail.xlsx). "
            "Leave empty to wait for uploads under incoming/.",
        ),
    },
    default_args={
        "owner": "data-engineering",
        "retries": 2,
        "retry_delay": timedelta(seconds=20),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=5),
        "on_failure_callback": alert_on_failure,
    },
)
def retail_ingest():
    wait_for_files = IncomingFilesSensor(
        task_id="wait_for_files",
        aws_conn_id=config.AWS_CONN_ID,
        bucket_name="{{ var.value." + config.BUCKET_VARIABLE + " }}",
        bucket_key=config.INCOMING_PREFIX + "*",
        wildcard_match=True,
        check_fn=tasks.wants_loading,
        deferrable=True,
        # One LIST of incoming/ every 5 s from the triggerer: about 17,000 requests ($0.09) a day on S3,
        # for uploads picked up within seconds (the end-to-end target is a minute).
        poke_interval=5,
        # Give up quietly after an hour; @continuous starts the next wait straight away.
        timeout=timedelta(hours=1).total_seconds(),
        soft_fail=True,
    )

    @task
    def apply_warehouse_ddl() -> list[str]:
        return tasks.apply_warehouse_ddl()

    @task
    def list_incoming(params: dict | None = None) -> list[str]:
        return tasks.list_incoming((params or {}).get("key"))

    @task(
        map_index_template="{{ file_key }}",
        max_active_tis_per_dag=2,
        execution_timeout=timedelta(minutes=30),
    )
    def ingest_file(key: str, run_id: str | None = None) -> dict:
        get_current_context()["file_key"] = key  # type: ignore[typeddict-unknown-key]
        return tasks.ingest_file(key, run_id)

    @task(trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS, outlets=[BRONZE_TRANSACTIONS])
    def announce_loads(run_id: str | None = None) -> dict:
        return tasks.announce_loads(run_id)

    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0, on_failure_callback=[])
    def fail_run_if_a_file_failed() -> None:
        """Mark the run failed when any file failed: the failed task has already sent its alert."""
        raise AirflowFailException("A file failed to load; see the failed ingest_file task(s).")

    keys = list_incoming()
    loads = ingest_file.expand(key=keys)
    wait_for_files >> apply_warehouse_ddl() >> keys
    loads >> [announce_loads(), fail_run_if_a_file_failed()]


retail_ingest()
