"""The Assets that join the DAGs: ingest updates bronze, the transform DAG is scheduled on it."""

from __future__ import annotations

from airflow.sdk import Asset

BRONZE_TRANSACTIONS = Asset(
    name="retail_bronze_transactions",
    uri="postgres://retail-warehouse:5432/retail/bronze/retail_transactions",
    group="retail",
    extra={"layer": "bronze"},
)

# Uploads under incoming/, announced by the bucket's event notifications (detection by events): the Asset
# retail_ingest_events is scheduled on; include/retail/detect/events.py gives it its watcher.
INCOMING_UPLOADS = Asset(
    name="retail_incoming_uploads",
    uri="s3://retail-landing/incoming/",
    group="retail",
    extra={"layer": "landing"},
)
