"""The bodies of the ingest DAG's tasks: configuration read at run time, hooks built, logic called.

Kept out of the DAG file, and importing the heavy modules (polars, fastexcel, psycopg through the
Postgres provider) inside each function, so that parsing the DAG stays cheap.
"""

from __future__ import annotations

import logging

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk import Variable
from airflow.sdk.exceptions import AirflowSkipException

from include.retail import config

MAX_FILES_PER_RUN = 100


def bucket() -> str:
    return Variable.get(config.BUCKET_VARIABLE)


def wants_loading(files: list[dict], **_context) -> bool:
    """S3KeySensor check: fire for any object under the prefix but folder markers and failed files.

    A file recorded ``failed`` (the platform's fault after its last try) waits, unchanged, for someone to
    look: firing for it would start a run that takes nothing, again and again.
    """
    candidates = {file["Key"]: _etag(file) for file in files if not file["Key"].endswith("/")}
    if not candidates:
        return False
    try:
        return bool(_takeable(candidates))
    except Exception:  # the ledger unreadable: fire, and let the loads meet (and report) the fault
        logging.getLogger(__name__).warning("could not read the failed files from the ledger", exc_info=True)
        return True


def _etag(file: dict) -> str | None:
    return (file.get("ETag") or "").strip('"') or None


def _takeable(candidates: dict[str, str | None]) -> list[str]:
    """The keys of ``candidates`` (key -> ETag) but those whose ETag the ledger records as failed."""
    from include.retail.ledger import failed_etags

    with _warehouse_connection(config.WAREHOUSE_CONN_ID) as conn:
        failed = failed_etags(conn)
    return sorted(key for key, etag in candidates.items() if etag is None or failed.get(key) != etag)


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
    """The keys waiting under incoming/, in name order, at most MAX_FILES_PER_RUN of them, but failed files
    whose content has not changed since (a manual ``retail_ingest_file`` run still takes them)."""
    hook = S3Hook(aws_conn_id=config.AWS_CONN_ID)
    candidates = {
        file["Key"]: _etag(file)
        for file in hook.iter_file_metadata(config.INCOMING_PREFIX, bucket_name=bucket())
        if not file["Key"].endswith("/")
    }
    return _takeable(candidates)[:MAX_FILES_PER_RUN]


def read_limits():
    """The reader's limits (include.retail.sandboxed_read.ReadLimits), each overridable by an Airflow Variable
    named ``config.READ_LIMIT_VARIABLE_PREFIX`` + the field's name; unset ones keep their documented default."""
    from dataclasses import MISSING, fields

    from include.retail.sandboxed_read import ReadLimits

    settings = {}
    for limit in fields(ReadLimits):
        value = Variable.get(config.READ_LIMIT_VARIABLE_PREFIX + limit.name, default=None)
        if value is not None:
            kind = type(limit.default) if limit.default is not MISSING else float
            settings[limit.name] = kind(float(value)) if kind is int else kind(value)
    return ReadLimits(**settings)


def ingest_file(key: str, run_id: str) -> dict:
    """Load one file. A platform fault on the last try records the file ``failed`` before the task fails, so
    that the waiting DAG leaves it alone (and alerts once) until its content changes or someone asks."""
    from airflow.sdk import get_current_context

    from include.retail.ingest import PlatformFault, ingest_object

    max_rejected = float(
        Variable.get(config.MAX_REJECTED_FRACTION_VARIABLE, default=config.DEFAULT_MAX_REJECTED_FRACTION)
    )
    limits = read_limits()
    s3 = S3Hook(aws_conn_id=config.AWS_CONN_ID)
    try:
        with _warehouse_connection(config.WAREHOUSE_CONN_ID) as conn:
            result = ingest_object(
                s3, bucket(), key, conn, max_rejected_fraction=max_rejected, read_limits=limits, run_id=run_id
            )
    except PlatformFault as fault:
        ti = get_current_context()["ti"]
        if ti.try_number > ti.max_tries:
            _record_failed(s3, fault, run_id)
        raise
    return result.as_dict()


def _record_failed(s3: S3Hook, fault, run_id: str) -> None:
    """Best effort: when the warehouse itself is still down there is nowhere to record it, and the next
    waiting run takes the file again (its failure alert has gone out either way)."""
    from include.retail.ingest import record_failed

    try:
        with _warehouse_connection(config.WAREHOUSE_CONN_ID) as conn:
            record_failed(conn, s3, bucket(), fault, run_id=run_id)
    except Exception:
        logging.getLogger(__name__).exception("%s: could not record the file as failed in the ledger", fault.key)
        return
    fault.recorded_failed = True


def announce_loads(run_id: str) -> dict:
    """Publish what the run loaded, and every loaded batch an earlier run never announced; the task's
    outlet then updates the bronze Asset. Skipped (so no Asset event) when there is nothing to announce.

    Every loaded batch reaches silver: a run killed after its bronze commit (before the move, or with S3
    or SNS gone) leaves its batch unannounced in the ledger, and the next run, even one that finds only
    duplicates, announces it. The ledger is marked only after the summary is published, so a failed
    publish is retried. Airflow records the Asset event after this function returns: if the task dies in
    that window its retry finds the batches marked by this same run and announces them again (at least
    once: a summary may go out twice, a batch is never stranded; past the last retry ``make health``
    lists the batch as missing from silver).
    """
    from include.retail.alerts import load_summary, publish
    from include.retail.ledger import (
        batches_announced_by,
        ledger_rows_of_run,
        load_details,
        mark_announced,
        unannounced_batches,
    )

    with _warehouse_connection(config.WAREHOUSE_CONN_ID) as conn:
        results = ledger_rows_of_run(conn, run_id)
        pending = {batch["batch_id"]: batch for batch in batches_announced_by(conn, run_id)}
        pending |= {batch["batch_id"]: batch for batch in unannounced_batches(conn)}
        details = load_details(conn, [result["batch_id"] for result in results])
        if not pending:
            raise AirflowSkipException("No file was loaded in this run nor left unannounced; bronze is unchanged.")
        results = [result | details.get(result["batch_id"], {}) for result in results]
        of_this_run = {result["batch_id"] for result in results}
        earlier = [batch for batch_id, batch in pending.items() if batch_id not in of_this_run]
        subject, message = load_summary(results, run_id=run_id, earlier=earlier)
        message_id = publish(Variable.get(config.ALERTS_TOPIC_VARIABLE), subject, message)
        mark_announced(conn, list(pending), run_id=run_id)
    earlier = [batch | {"finished_at": batch["finished_at"].isoformat()} for batch in earlier]
    return {"subject": subject, "message_id": message_id, "files": results, "earlier": earlier}


def announce_transform(run_id: str, started_at) -> dict:
    """Publish what the transform built (it runs only when every model and test succeeded); skipped, saying why,
    when there is nothing to announce."""
    from datetime import UTC, datetime

    from include.retail.alerts import publish, subject_line
    from include.retail.dbt_project import DBT_MANIFEST
    from include.retail.transform import DbtProject, layer_counts, nothing_to_announce, transform_summary

    project = DbtProject.from_manifest(DBT_MANIFEST)
    seconds = (datetime.now(UTC) - started_at).total_seconds()
    with _warehouse_connection(config.WAREHOUSE_TRANSFORM_CONN_ID) as conn:
        counts = layer_counts(conn, project)
        if reason := nothing_to_announce(counts):
            raise AirflowSkipException(reason)
        subject, message = transform_summary(conn, project, counts, run_id=run_id, seconds=seconds)
    message_id = publish(Variable.get(config.ALERTS_TOPIC_VARIABLE), subject, message)
    return {"subject": subject_line(subject), "message_id": message_id, "rows": counts}
