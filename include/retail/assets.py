"""The Assets that join the DAGs: ingest updates bronze, the transform DAG is scheduled on it."""

from __future__ import annotations

from airflow.sdk import Asset

BRONZE_TRANSACTIONS = Asset(
    name="retail_bronze_transactions",
    uri="postgres://retail-warehouse:5432/retail/bronze/retail_transactions",
    group="retail",
    extra={"layer": "bronze"},
)
