"""
### Retail ingest: S3 workbooks into the bronze schema (detection by sensor)

Waits (deferred, in the triggerer) for files under `incoming/` of the bucket named by the Variable
`retail_bucket`, then loads each file in its own mapped task:

1. read every sheet (`.xlsx`) or the CSV, matching headers by name (`InvoiceNo`/`Invoice`, `UnitPrice`/`Price`,
   `CustomerID`/`Customer ID`, …);
2. check the contract and type the values; rows that cannot be typed go to `bronze.rejected_rows`;
3. COPY the rows into `bronze.retail_transactions` with their lineage, and record the file in
   `bronze.load_ledger`, in one transaction;
4. move the object to `processed/`, or, when the file breaks the contract, to `quarantine/` with a
   `.report.json` beside it (nothing is loaded and the task fails without retrying).

**Detection.** This DAG runs when the setting `retail_trigger` is `sensor` (the default); with `events`,
`retail_ingest_events` takes the uploads instead and this DAG has no schedule. The sensor lists `incoming/`
every 5 s from the triggerer (about 17,000 LISTs a day) and ignores folder markers. After an hour without a
file its run ends skipped and the next wait starts. An error of the sensor itself (S3 unreachable, access
denied) is retried with backoff for about 1.5 hours and alerts at the first failed try.

A fault of the platform during a load (the warehouse or S3 unreachable) is retried with backoff; after the
last try the file is recorded `failed` in the ledger, alerted once, and moved to `failed/`: move it back to
`incoming/` once the platform is fixed.

The warehouse schema and roles are applied (idempotently) while the sensor waits. The same content is
loaded once (the ledger keys it by SHA-256); a corrected file under a loaded key supersedes the earlier
load, whose rows stay in bronze. A run that loads anything updates the `retail_bronze_transactions` Asset
and publishes a summary to the SNS topic in `retail_alerts_topic_arn`; any failed task publishes an alert.

One run is active at a time (`@continuous`): the next wait starts when a run ends. **To load one named
file now, trigger `retail_ingest_file`** with its key: it has its own runs, so it never queues behind
this DAG's waiting run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag

from include.retail.detect.sensor import SENSOR_RETRY_ARGS, IncomingFilesSensor
from include.retail.detect.tasks import list_incoming
from include.retail.detect.trigger import Trigger, chosen_trigger
from include.retail.ingest.tasks import INGEST_DEFAULT_ARGS, load_files
from include.retail.platform import config


@dag(
    dag_id="retail_ingest",
    # A sensor is always waiting, and runs never pile up: the next run starts when this one ends.
    schedule="@continuous" if chosen_trigger() is Trigger.SENSOR else None,
    max_active_runs=1,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    doc_md=__doc__,
    tags=["retail", "ingest", "bronze", "s3"],
    default_args=INGEST_DEFAULT_ARGS,
)
def retail_ingest():
    wait_for_files = IncomingFilesSensor(
        task_id="wait_for_files",
        aws_conn_id=config.AWS_CONN_ID,
        bucket_name="{{ var.value." + config.BUCKET_VARIABLE + " }}",
        # One LIST of incoming/ every 5 s from the triggerer: about 17,000 requests ($0.09) a day on S3,
        # for uploads picked up within seconds (the end-to-end target is a minute).
        poke_interval=5,
        # Give up quietly after an hour; @continuous starts the next wait straight away.
        timeout=timedelta(hours=1).total_seconds(),
        **SENSOR_RETRY_ARGS,
    )

    keys = list_incoming()
    wait_for_files >> keys
    load_files(keys)


retail_ingest()
