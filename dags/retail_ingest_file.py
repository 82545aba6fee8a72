"""
### Retail ingest of one named file

Trigger this DAG to load one object now, e.g. `incoming/online_retail.xlsx` (the **S3 key** field of the
trigger form). It loads the file exactly as `retail_ingest` loads what its sensor finds (the same tasks:
contract check, COPY into bronze with the ledger, then `processed/` or `quarantine/`), updates the
`retail_bronze_transactions` Asset, and publishes the same summary and alerts.

It exists beside `retail_ingest` because that DAG runs `@continuous` with one active run, always waiting:
a manual run there would queue behind the wait. Runs here start at once. If the waiting DAG takes the
same file first, this run's load is skipped as already handled; a key that does not exist fails at once,
naming it. A file the ledger records `failed` (the platform's fault after its last try, which
`retail_ingest` leaves alone) is taken again here.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, task

from include.retail.ingest.tasks import INGEST_DEFAULT_ARGS, load_files
from include.retail.platform import config


@dag(
    dag_id="retail_ingest_file",
    schedule=None,
    max_active_runs=4,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    doc_md=__doc__,
    tags=["retail", "ingest", "bronze", "s3"],
    params={
        "key": Param(
            type="string",
            pattern=f"^{config.INCOMING_PREFIX}.+",
            title="S3 key",
            description=f"The object to load, under {config.INCOMING_PREFIX} (e.g. incoming/online_retail.xlsx).",
        ),
    },
    default_args=INGEST_DEFAULT_ARGS,
)
def retail_ingest_file():
    @task
    def named_file(params: dict | None = None) -> list[str]:
        return [params["key"]]

    load_files(named_file())


retail_ingest_file()
