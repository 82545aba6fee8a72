"""
### Retail transform: silver and gold with dbt, rendered by Cosmos

Scheduled on the `retail_bronze_transactions` Asset that `retail_ingest` updates when it loads files:
several files loaded in one window give one transform run, and either DAG can be re-run alone.
Trigger it by hand with **Full refresh** ticked to rebuild the incremental models from all of bronze
(`dbt build --full-refresh`).

The dbt project in `include/dbt/` is rendered from its manifest (built ahead of time by `dbt parse`)
into the `dbt` task group: one task per model, its tests right after it. In Cosmos's WATCHER mode a
single producer task runs one `dbt build` (dbt in its own virtualenv, called by path), and each model's
task then reports what dbt did with that model, so the run costs about one `dbt build` while a failing
test still fails the tasks that depend on it and names itself in the failure alert.

- **silver**: `transactions` (cleaned, deduplicated, flagged; incremental by file), `invoice_totals` (its
  lines summed per invoice; incremental by file), `dim_date`, `dim_product`, `dim_customer`,
  `fact_sales_daily` and `fact_returns_daily` (date × product × country; incremental by day), the rows
  set aside, `product_totals` and `product_descriptions` (running totals for the product marts), and
  `tested_loads` (the loads every test has passed on: the next build tests only the others);
- **gold**: `monthly_sales_summary`, `country_sales`, `product_performance`, `customer_rfm`.

On success `publish_gold_report` renders the gold report (one self-contained HTML page: monthly revenue
and orders, cancellation rate, top countries and products, RFM segments, data quality) to
`s3://<bucket>/reports/` (a dated name and `reports/latest.html`), and the SNS topic gets a summary (rows
per layer, revenue, months, tests, duration, the report's S3 URI and a presigned link to it); any failed
task sends the same alert as ingest.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag
from cosmos import DbtTaskGroup

from include.retail.platform.assets import BRONZE_TRANSACTIONS
from include.retail.transform.cosmos_config import cosmos_configs, follow_the_build
from include.retail.transform.tasks import alert_on_transform_failure, announce_transform, publish_gold_report


@dag(
    dag_id="retail_transform",
    schedule=[BRONZE_TRANSACTIONS],
    max_active_runs=1,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    doc_md=__doc__,
    tags=["retail", "transform", "dbt", "silver", "gold"],
    params={
        "full_refresh": Param(
            False,
            type="boolean",
            title="Full refresh",
            description="Rebuild every incremental model (silver and the daily facts) from all of bronze.",
        ),
    },
    default_args={
        "owner": "data-engineering",
        "retries": 1,
        "retry_delay": timedelta(seconds=30),
        "on_failure_callback": alert_on_transform_failure,
    },
)
def retail_transform():
    dbt = DbtTaskGroup(group_id="dbt", **cosmos_configs())
    producer = follow_the_build(dbt)
    report = publish_gold_report(producer.task_id)
    dbt >> report
    announce_transform(producer.task_id, report)


retail_transform()
