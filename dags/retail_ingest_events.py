"""
### Retail ingest woken by S3 events: uploads into the bronze schema, no polling

Runs when the setting `retail_trigger` is `events`; with `sensor` (the default) `retail_ingest` takes the
uploads and this DAG has no schedule.

The bucket notifies an SQS queue (`retail_uploads_queue_url`, with a dead-letter queue) of every object
created under `incoming/`. An `AssetWatcher` in the triggerer long-polls the queue; each batch of messages
becomes an event of the `retail_incoming_uploads` Asset, and each event wakes a run of this DAG. The run
takes the keys its events announce (S3 URL-encodes them: decoded here; the test event S3 sends when the
notification is configured and folder markers are ignored) together with anything else waiting under
`incoming/`, so that an event lost or coalesced with another never strands a file; a key an earlier run
already took is left alone.

Each file then loads exactly as in `retail_ingest`, with the same tasks: contract check, COPY into bronze
with the ledger, `processed/` or `quarantine/`, the `retail_bronze_transactions` Asset and the SNS summary.
The same content is loaded once; a platform fault after the last try moves the file to `failed/` and alerts.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag

from include.retail.detect.events import watched_uploads
from include.retail.detect.tasks import keys_from_events
from include.retail.detect.trigger import Trigger, chosen_trigger
from include.retail.ingest.tasks import INGEST_DEFAULT_ARGS, load_files


@dag(
    dag_id="retail_ingest_events",
    schedule=[watched_uploads()] if chosen_trigger() is Trigger.EVENTS else None,
    # One run at a time: a run takes every file waiting, so the next run finds only what arrived since.
    max_active_runs=1,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    doc_md=__doc__,
    tags=["retail", "ingest", "bronze", "s3", "events"],
    default_args=INGEST_DEFAULT_ARGS,
)
def retail_ingest_events():
    load_files(keys_from_events())


retail_ingest_events()
