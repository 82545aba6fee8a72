"""The pipeline's connections and bucket, as tasks get them: the one place that turns configuration names into clients.

Each is built when a task runs, never when a DAG file is parsed; the provider modules are imported here, inside
the functions, so that parsing stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from include.retail.platform import config

if TYPE_CHECKING:
    import psycopg
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook


def bucket() -> str:
    """The pipeline's bucket (the Airflow Variable ``retail_bucket``)."""
    from airflow.sdk import Variable

    return Variable.get(config.BUCKET_VARIABLE)


def s3_hook() -> S3Hook:
    """The Amazon provider's S3 hook on the pipeline's AWS connection."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=config.AWS_CONN_ID)


def warehouse_connection(conn_id: str = config.WAREHOUSE_CONN_ID) -> psycopg.Connection:
    """A psycopg connection of ``conn_id`` (the loader's by default) in autocommit mode: each unit of work opens
    its own transaction."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn = PostgresHook(postgres_conn_id=conn_id).get_conn()
    conn.autocommit = True
    return conn
