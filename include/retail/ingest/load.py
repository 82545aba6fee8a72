"""Ingest one S3 object: fetch it, check it, load it into bronze, then file it under processed/ or quarantine/.

The order makes every step safe to repeat after a crash: the ledger is written before the object
moves, so a re-run of a loaded file finds its content in the ledger, records a duplicate and only
finishes the move.

The object is read, fingerprinted and filed by its version (``filing``): the same key uploaded again during
the load stays under incoming/ as the newer version, and the next run loads it.

Every error is either the file's fault or the platform's (``faults``). The file's (a contract breach, a file
the reader cannot read or crashes on, a value PostgreSQL refuses) is final: FileRejected, quarantined with a
report, once (the Airflow task turns it into Airflow's no-retry failure). The platform's is a PlatformFault:
retried with backoff, and recorded ``failed`` after the last try.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import psycopg
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from include.retail.ingest import filing, ledger
from include.retail.ingest.bronze import load_into_bronze
from include.retail.ingest.contract import FileRejected
from include.retail.ingest.faults import (
    REFUSED_VALUE_CLASSES,
    RESOURCE_ERRNOS,
    PlatformFault,
    record_failed_if_possible,
    refused_value,
    scrubbed,
)
from include.retail.ingest.ledger import LoadResult, SourceFile, Status
from include.retail.ingest.sandboxed_read import ReadLimits, read_typed
from include.retail.ingest.scratch import local_name, scratch_folder
from include.retail.platform import config

log = logging.getLogger(__name__)


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
    read_limits: ReadLimits | None = None,
    run_id: str | None = None,
) -> LoadResult:
    """Load ``s3://bucket/key`` into bronze.

    Raises FileRejected (after quarantining it, once) for anything that is the file's fault, and
    PlatformFault for anything that is not (to be retried).
    """
    if not key.startswith(config.INCOMING_PREFIX):
        raise AirflowFailException(f"{key}: expected a key under {config.INCOMING_PREFIX}, where files are loaded from")
    learnt: dict[str, SourceFile] = {}
    try:
        with _one_handler_per_key(conn, key):
            return _ingest_held_object(s3, bucket, key, conn, max_rejected_fraction, read_limits, run_id, learnt)
    except (FileRejected, AirflowException, PlatformFault):
        raise  # quarantined, AlreadyHandled, a missing key, a task timeout: already final or classified
    except Exception as error:
        raise PlatformFault(key, error, learnt.get("source")) from error


def ingest_or_record_failed(
    s3: S3Hook,
    bucket: str,
    key: str,
    connect: Callable[[], psycopg.Connection],
    *,
    max_rejected_fraction: float,
    read_limits: ReadLimits,
    run_id: str | None,
    last_try: bool,
) -> LoadResult:
    """``ingest_object`` over a connection from ``connect``; a platform fault on the ``last_try`` records the
    file ``failed`` and moves it to failed/ before it is raised, so that it is taken (and alerted) once."""
    try:
        with connect() as conn:
            return ingest_object(
                s3,
                bucket,
                key,
                conn,
                max_rejected_fraction=max_rejected_fraction,
                read_limits=read_limits,
                run_id=run_id,
            )
    except PlatformFault as fault:
        if last_try:
            record_failed_if_possible(connect, s3, bucket, fault, run_id)
        raise


def _ingest_held_object(
    s3: S3Hook,
    bucket: str,
    key: str,
    conn: psycopg.Connection,
    max_rejected_fraction: float,
    read_limits: ReadLimits | None,
    run_id: str | None,
    learnt: dict[str, SourceFile],
) -> LoadResult:
    started_at = datetime.now(UTC)
    batch_id = str(uuid.uuid4())
    if not filing.exists(s3, bucket, key):
        filing.raise_missing(s3, bucket, key)
    processed = filing.filed_key(key, config.PROCESSED_PREFIX)
    # Filed inside the scratch folder: where the bucket keeps no versions and the object changed during the
    # load, the bytes loaded are filed from this local copy (filing.move).
    with scratch_folder(key) as workdir:
        local = workdir / local_name(key)
        upload = filing.fetch(s3, bucket, key, local)
        source = learnt["source"] = upload.source
        log.info(
            "%s: downloaded %s MB (SHA-256 %s, %s)",
            key,
            f"{source.size / 1e6:,.1f}",
            source.sha256[:12],
            f"S3 version {source.s3_version_id}" if source.s3_version_id else f"ETag {source.etag}, no S3 version",
        )
        reject = _rejecter(s3, bucket, conn, upload, batch_id, started_at, run_id)

        already = ledger.loaded_batch_of(conn, source.sha256)
        if already:
            result = ledger.record(
                conn,
                source,
                Status.DUPLICATE,
                batch_id=batch_id,
                started_at=started_at,
                run_id=run_id,
                duplicate_of=already,
            )
            filing.move(s3, bucket, upload, processed)
            log.info("%s: the same content was loaded before (batch %s); filed to processed/", key, already)
            return result

        log.info("%s: reading and typing it (in a child process under memory limits) ...", key)
        clock = time.perf_counter()
        try:
            typed = _read(local, key, read_limits, workdir)
        except FileRejected as rejection:
            reject(rejection, 0, round(time.perf_counter() - clock, 3))
        # The child goes on reading while the first batches are COPYed: a breach it finds in a later batch
        # rolls the load's transaction back whole, and the file is rejected as if it had been found first.
        try:
            result = load_into_bronze(
                conn,
                source,
                typed,
                batch_id=batch_id,
                started_at=started_at,
                run_id=run_id,
                max_rejected_fraction=max_rejected_fraction,
                read_clock=clock,
            )
        except FileRejected as rejection:
            reject(rejection, rejection.rows_rejected, round(time.perf_counter() - clock, 3))
        except psycopg.Error as error:
            if not (error.sqlstate or "").startswith(REFUSED_VALUE_CLASSES):
                raise
            # The load's transaction rolled back whole: nothing of the file is in bronze.
            reject(FileRejected(key, refused_value(error)), typed.rows_rejected, round(time.perf_counter() - clock, 3))
        finally:
            typed.close()
        filing.move(s3, bucket, upload, processed)
    log.info(
        "%s: %s, %s rows loaded, %s rejected; filed to %s",
        key,
        result.status,
        f"{result.rows_loaded:,}",
        f"{result.rows_rejected:,}",
        processed,
    )
    return result


def _read(local: Path, key: str, limits: ReadLimits | None, workdir: Path):
    """Read and type the file; whatever goes wrong while reading is the file's fault, but for the machine's.

    The reader is meant to turn every bad file into FileRejected; a crash of the libraries under it
    (a calamine panic, which PyO3 raises as a BaseException, or an unexpected exception) on a file is
    still that file's fault, and becomes a rejection naming the error, never a loop of retries.
    """
    try:
        return read_typed(local, key, limits)
    except FileRejected:
        raise
    except (KeyboardInterrupt, SystemExit, GeneratorExit, AirflowException):
        raise
    except OSError as error:
        if error.errno in RESOURCE_ERRNOS:
            raise
        raise FileRejected(key, f"the file could not be read: {scrubbed(error, workdir)}") from error
    except BaseException as error:
        raise FileRejected(key, f"the reader failed on this file: {scrubbed(error, workdir)}") from error


def _rejecter(
    s3: S3Hook,
    bucket: str,
    conn: psycopg.Connection,
    upload: filing.Upload,
    batch_id: str,
    started_at: datetime,
    run_id: str | None,
) -> Callable[[FileRejected, int, float | None], NoReturn]:
    """Reject the file: its ``rejected`` ledger row, then quarantine with the report, then raise."""
    source = upload.source

    def reject(rejection: FileRejected, rows_rejected: int, read_seconds: float | None) -> NoReturn:
        if not ledger.rejected_in_run(conn, source.key, source.sha256, run_id):
            ledger.record(
                conn,
                source,
                Status.REJECTED,
                batch_id=batch_id,
                started_at=started_at,
                run_id=run_id,
                rows_rejected=rows_rejected,
                error=rejection.reason,
                read_seconds=read_seconds,
            )
        filing.quarantine(s3, bucket, upload, _report(source, batch_id, rows_rejected, rejection))
        raise rejection

    return reject


def _report(source: SourceFile, batch_id: str, rows_rejected: int, rejection: FileRejected) -> dict:
    """The report left beside a quarantined file: enough to fix the file without opening the logs."""
    return {
        "file": source.key,
        "status": Status.REJECTED,
        "reason": rejection.reason,
        "batch_id": batch_id,
        "sha256": source.sha256,
        "s3_version_id": source.s3_version_id,
        "bytes": source.size,
        "rows_rejected": rows_rejected,
        "rejected_at": datetime.now(UTC).isoformat(),
        **rejection.details,
        "what_to_do": "Fix the file and upload it again under incoming/; nothing from it was loaded.",
    }
