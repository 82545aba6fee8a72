"""Ingest one S3 object: fetch, check, load into bronze, then file it under processed/ or quarantine/.

The order makes every step safe to repeat after a crash: the ledger is written before the object
moves, so a re-run of a loaded file finds its content in the ledger, records a duplicate and only
finishes the move.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import psycopg
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from include.retail import config
from include.retail.bronze import TypedSheet, load_into_bronze
from include.retail.contract import FileRejected, type_rows
from include.retail.ledger import LoadResult, SourceFile, Status, loaded_batch_of, record_without_loading
from include.retail.reader import read_source

_REPORT_SAMPLE_ROWS = 50


def filed_key(key: str, prefix: str) -> str:
    """Where an object goes once handled: its path under incoming/, re-rooted at ``prefix``."""
    relative = key.removeprefix(config.INCOMING_PREFIX)
    return prefix + relative


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _move(s3: S3Hook, bucket: str, key: str, destination: str) -> None:
    s3.copy_object(
        source_bucket_key=key, dest_bucket_key=destination, source_bucket_name=bucket, dest_bucket_name=bucket
    )
    s3.delete_objects(bucket=bucket, keys=[key])


def _quarantine(s3: S3Hook, bucket: str, key: str, report: dict) -> str:
    destination = filed_key(key, config.QUARANTINE_PREFIX)
    s3.load_string(
        json.dumps(report, indent=2, default=str),
        key=destination + config.REPORT_SUFFIX,
        bucket_name=bucket,
        replace=True,
    )
    _move(s3, bucket, key, destination)
    return destination


class AlreadyHandled(AirflowSkipException):
    """The object was filed by an earlier run (a manual run named a file the waiting sensor had taken)."""


def _exists(s3: S3Hook, bucket: str, key: str) -> bool:
    """By listing, not HEAD: on AWS the execution role may list the pipeline's prefixes but not read
    ``processed/``, and a HEAD of a missing key without bucket-wide ListBucket answers 403, not 404."""
    return key in s3.list_keys(bucket_name=bucket, prefix=key)


def _raise_missing(s3: S3Hook, bucket: str, key: str) -> NoReturn:
    for prefix in (config.PROCESSED_PREFIX, config.QUARANTINE_PREFIX):
        filed = filed_key(key, prefix)
        if _exists(s3, bucket, filed):
            raise AlreadyHandled(f"s3://{bucket}/{key} was already handled: it is now at {filed}")
    raise AirflowFailException(f"s3://{bucket}/{key} does not exist; expected an object under {config.INCOMING_PREFIX}")


@contextmanager
def _one_handler_per_key(conn: psycopg.Connection, key: str) -> Iterator[None]:
    """Hold a session lock on ``key`` while it is handled: the waiting DAG and a manual run may both take
    the same file, and the second must find it filed (and skip), not move it from under the first."""
    lock = ("retail ingest of " + key,)
    conn.execute("select pg_advisory_lock(hashtextextended(%s, 0))", lock)
    try:
        yield
    finally:
        if not conn.closed:  # a lost session has released its locks
            conn.execute("select pg_advisory_unlock(hashtextextended(%s, 0))", lock)


def ingest_object(
    s3: S3Hook,
    bucket: str,
    key: str,
    conn: psycopg.Connection,
    *,
    max_rejected_fraction: float = config.DEFAULT_MAX_REJECTED_FRACTION,
    run_id: str | None = None,
) -> LoadResult:
    """Load ``s3://bucket/key`` into bronze. Raises FileRejected (after quarantining it) for bad input."""
    if not key.startswith(config.INCOMING_PREFIX):
        raise AirflowFailException(f"{key}: expected a key under {config.INCOMING_PREFIX}, where files are loaded from")
    with _one_handler_per_key(conn, key):
        return _ingest_held_object(s3, bucket, key, conn, max_rejected_fraction, run_id)


def _ingest_held_object(
    s3: S3Hook, bucket: str, key: str, conn: psycopg.Connection, max_rejected_fraction: float, run_id: str | None
) -> LoadResult:
    started_at = datetime.now(UTC)
    batch_id = str(uuid.uuid4())
    if not _exists(s3, bucket, key):
        _raise_missing(s3, bucket, key)
    head = s3.head_object(key, bucket)
    with tempfile.TemporaryDirectory(prefix="retail-ingest-") as workdir:
        local = Path(workdir) / Path(key).name
        s3.get_conn().download_file(bucket, key, str(local))
        source = SourceFile(
            key=key, version=_sha256(local), etag=head.get("ETag", "").strip('"') or None, size=local.stat().st_size
        )

        already = loaded_batch_of(conn, source.version)
        if already:
            result = LoadResult(key=key, batch_id=batch_id, status=Status.DUPLICATE, duplicate_of=already)
            record_without_loading(conn, source, result, started_at=started_at, run_id=run_id)
            _move(s3, bucket, key, filed_key(key, config.PROCESSED_PREFIX))
            return result

        clock = time.perf_counter()
        sheets: list[TypedSheet] = []
        try:
            contents = read_source(local, key)
            sheets = [TypedSheet(sheet.name, type_rows(sheet.raw, sheet.written_as)) for sheet in contents.sheets]
            _check_rejected_share(key, sheets, contents.row_count, max_rejected_fraction)
        except FileRejected as rejection:
            result = LoadResult(
                key=key,
                batch_id=batch_id,
                status=Status.REJECTED,
                rows_rejected=sum(sheet.typed.rejected.height for sheet in sheets),
                error=rejection.reason,
                read_seconds=round(time.perf_counter() - clock, 3),
            )
            record_without_loading(conn, source, result, started_at=started_at, run_id=run_id)
            _quarantine(s3, bucket, key, _report(source, result, rejection))
            raise
        read_seconds = round(time.perf_counter() - clock, 3)

        result = load_into_bronze(
            conn, source, sheets, batch_id=batch_id, started_at=started_at, read_seconds=read_seconds, run_id=run_id
        )
    _move(s3, bucket, key, filed_key(key, config.PROCESSED_PREFIX))
    return result


def _check_rejected_share(key: str, sheets: list[TypedSheet], total: int, limit: float) -> None:
    rejected = sum(sheet.typed.rejected.height for sheet in sheets)
    if rejected and rejected > limit * total:
        first = next(sheet for sheet in sheets if sheet.typed.rejected.height)
        example = first.typed.rejected.row(0, named=True)
        where = f"sheet {first.name!r} " if first.name else ""
        raise FileRejected(
            key,
            f"{rejected} of {total} rows ({rejected / total:.1%}) have values that cannot be typed, more than the "
            f"{limit:.1%} allowed; first: {where}row {example['source_row']}: {example['reason']}",
            details={
                "rejected_rows": [
                    {"sheet": sheet.name, **row}
                    for sheet in sheets
                    for row in sheet.typed.rejected.head(_REPORT_SAMPLE_ROWS).to_dicts()
                ][:_REPORT_SAMPLE_ROWS]
            },
        )


def _report(source: SourceFile, result: LoadResult, rejection: FileRejected) -> dict:
    """The report left beside a quarantined file: enough to fix the file without opening the logs."""
    return {
        "file": source.key,
        "status": "rejected",
        "reason": rejection.reason,
        "batch_id": result.batch_id,
        "sha256": source.version,
        "bytes": source.size,
        "rows_rejected": result.rows_rejected,
        "rejected_at": datetime.now(UTC).isoformat(),
        **rejection.details,
        "what_to_do": "Fix the file and upload it again under incoming/; nothing from it was loaded.",
    }
