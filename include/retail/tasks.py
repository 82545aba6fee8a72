"""The bodies of the ingest DAG's tasks: configuration read at run time, hooks built, logic called.

Kept out of the DAG file, and importing the heavy modules (polars, fastexcel, psycopg through the
Postgres provider) inside each function, so that parsing the DAG stays cheap.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk import Variable
from airflow.sdk.exceptions import AirflowSkipException

from include.retail import config

MAX_FILES_PER_RUN = 100


def bucket() -> str:
    return Variable.get(config.BUCKET_VARIABLE)


def wants_loading(files: list[dict], **_context) -> bool:
    """S3KeySensor check: fire for any object under the prefix but folder markers."""
    return any(not file["Key"].endswith("/") for file in files)


def _warehouse_connection(conn_id: str):
    """A psycopg connection in autocommit mode: each unit of work opens its own transaction."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn = PostgresHook(postgres_conn_id=conn_id).get_conn()
    conn.autocommit = True
    return conn


def apply_warehouse_ddl() -> list[str]:
    from include.retail.warehouse import prepare_warehouse

    return prepare_warehouse()


def list_incoming() -> list[str]:
    """The keys waiting under incoming/, in name order, at most MAX_FILES_PER_RUN of them."""
    keys = S3Hook(aws_conn_id=config.AWS_CONN_ID).list_keys(bucket_name=bucket(), prefix=config.INCOMING_PREFIX)
    return sorted(key for key in keys if not key.endswith("/"))[:MAX_FILES_PER_RUN]


def ingest_file(key: str, run_id: str) -> dict:
    from include.retail.ingest import ingest_object

    max_rejected = float(
        Variable.get(config.MAX_REJECTED_FRACTION_VARIABLE, default=config.DEFAULT_MAX_REJECTED_FRACTION)
    )
    s3 = S3Hook(aws_conn_id=config.AWS_CONN_ID)
    with _warehouse_connection(config.WAREHOUSE_CONN_ID) as conn:
        result = ingest_object(s3, bucket(), key, conn, max_rejected_fraction=max_rejected, run_id=run_id)
    return result.as_dict()


def announce_loads(run_id: str) -> dict:
    """Publish what the run loaded; skipped (so no Asset event) when it loaded nothing."""
    from include.retail.alerts import load_summary, publish
    from include.retail.ledger import Status, ledger_rows_of_run

    with _warehouse_connection(config.WAREHOUSE_CONN_ID) as conn:
        results = ledger_rows_of_run(conn, run_id)
    if not any(result["status"] == Status.LOADED for result in results):
        raise AirflowSkipException("No file was loaded in this run; bronze is unchanged.")
    subject, message = load_summary(results, run_id=run_id)
    message_id = publish(Variable.get(config.ALERTS_TOPIC_VARIABLE), subject, message)
    return {"subject": subject, "message_id": message_id, "files": results}


def announce_transform(run_id: str, started_at) -> dict:
    """Publish what the transform built (it runs only when every model and test succeeded)."""
    from datetime import UTC, datetime

    from include.retail.alerts import publish, subject_line
    from include.retail.dbt_project import DBT_MANIFEST
    from include.retail.transform import DbtProject, layer_counts, transform_summary

    project = DbtProject.from_manifest(DBT_MANIFEST)
    seconds = (datetime.now(UTC) - started_at).total_seconds()
    with _warehouse_connection(config.WAREHOUSE_TRANSFORM_CONN_ID) as conn:
        counts = layer_counts(conn, project)
        subject, message = transform_summary(conn, project, counts, run_id=run_id, seconds=seconds)
    message_id = publish(Variable.get(config.ALERTS_TOPIC_VARIABLE), subject, message)
    return {"subject": subject_line(subject), "message_id": message_id, "rows": counts}
