"""Ingest one S3 object: fetch, check, load into bronze, then file it under processed/ or quarantine/.

The order makes every step safe to repeat after a crash: the ledger is written before the object
moves, so a re-run of a loaded file finds its content in the ledger, records a duplicate and only
finishes the move.

Every error is either the file's fault or the platform's. The file's (a contract breach, a file the
reader cannot read or crashes on, a value PostgreSQL refuses) is final: FileRejected, quarantined with a
report, once. The platform's (the warehouse or S3 unreachable) is a PlatformFault: retried with backoff,
and after the last try recorded ``failed`` in the ledger (record_failed), so that the waiting DAG leaves
the file alone until its content changes or someone triggers ``retail_ingest_file`` for it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import psycopg
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from include.retail import config
from include.retail.bronze import TypedSheet, load_into_bronze
from include.retail.contract import FileRejected
from include.retail.ledger import (
    LoadResult,
    SourceFile,
    Status,
    loaded_batch_of,
    record_without_loading,
    rejected_in_run,
)
from include.retail.sandboxed_read import ReadLimits, read_typed

log = logging.getLogger(__name__)

_REPORT_SAMPLE_ROWS = 50

# Errors of the machine, not of the file, that may surface while reading: retried, never a rejection.
_RESOURCE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE, errno.EIO, errno.EROFS})

# PostgreSQL refusing a value (SQLSTATE class 22, data exception: a NUL byte, an invalid byte sequence, a
# number out of range) or a limit (class 54: a value too long) is the file's fault; anything else is not.
_REFUSED_VALUE_CLASSES = ("22", "54")


class QuarantinedFile(FileRejected, AirflowFailException):
    """A rejected file, once its ledger row and quarantine are written: final for Airflow (no retry).
    FileRejected itself is a plain exception, so that the reader's child process needs no Airflow."""

    @classmethod
    def of(cls, rejection: FileRejected) -> QuarantinedFile:
        return cls(rejection.source, rejection.reason, rejection.details)


class PlatformFault(Exception):
    """A fault of the platform (warehouse, S3) while handling a file: retried; after the last try the file is
    recorded ``failed``. Carries what was learnt of the file for that ledger row."""

    def __init__(self, key: str, error: BaseException, source: SourceFile | None) -> None:
        super().__init__(f"{key}: could not be loaded because of a platform fault, not the file: {_describe(error)}")
        self.key = key
        self.source = source
        self.recorded_failed = False  # set once the ledger says ``failed`` (after the last try)

    def __str__(self) -> str:
        if not self.recorded_failed:
            return super().__str__()
        return (
            f"{super().__str__()}. After its last try the file is recorded failed: it stays in incoming/ and the "
            "waiting DAG leaves it alone until it changes; trigger retail_ingest_file with its key to try again now."
        )


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split()) or "(no message)"
    return f"{type(error).__name__}: {text[:500]}"


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


def scratch_root() -> Path:
    """Where ingest keeps its copies of inputs: one folder per file handled, removed when done."""
    return Path(tempfile.gettempdir()) / "retail-ingest"


def key_digest(key: str) -> str:
    """Local names come from this hash of the key, never from the key: a key may be ``..``, hold a
    slash-dot, or be longer than the 255 bytes a file name may have, and no local path shows in a message."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _sweep_abandoned(root: Path) -> None:
    """Remove the folders of tasks that died without cleaning up (SIGKILL, OOM kill, a lost worker).

    Each live folder holds an exclusive lock on its ``.lock`` file for as long as its task runs; the
    kernel releases it when the process dies, so a folder whose lock can be taken is abandoned.
    """
    for folder in root.iterdir():
        lock_path = folder / ".lock"
        try:
            with lock_path.open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(folder, ignore_errors=True)
        except BlockingIOError:
            continue  # a live task's folder
        except FileNotFoundError:
            # A folder without its lock: being created right now, or left half-removed. Wait a minute.
            if folder.is_dir() and time.time() - folder.stat().st_mtime > 60:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            log.warning("could not sweep the scratch folder %s", folder, exc_info=True)


@contextmanager
def scratch_folder(key: str) -> Iterator[Path]:
    """A private folder for one file's copy and whatever reading it writes, named by a hash of the key;
    removed on the way out, or by the next task's sweep if this process is killed."""
    root = scratch_root()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    _sweep_abandoned(root)
    folder = Path(tempfile.mkdtemp(prefix=key_digest(key) + "-", dir=root))
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _local_name(key: str) -> str:
    """The copy's name: the key's hash, with the key's suffix when it is a plain one (.xlsx, .csv)."""
    suffix = Path(key).suffix.lower()
    return "input" + (suffix if suffix[1:].isalnum() and len(suffix) <= 8 else "")


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
    except (AirflowException, PlatformFault):
        raise  # FileRejected, AlreadyHandled, a missing key, a task timeout: already final or classified
    except Exception as error:
        raise PlatformFault(key, error, learnt.get("source")) from error


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
    if not _exists(s3, bucket, key):
        _raise_missing(s3, bucket, key)
    head = s3.head_object(key, bucket)
    with scratch_folder(key) as workdir:
        local = workdir / _local_name(key)
        s3.get_conn().download_file(bucket, key, str(local))
        source = SourceFile(
            key=key, version=_sha256(local), etag=head.get("ETag", "").strip('"') or None, size=local.stat().st_size
        )
        learnt["source"] = source
        reject = _rejecter(s3, bucket, conn, source, batch_id, started_at, run_id)

        already = loaded_batch_of(conn, source.version)
        if already:
            result = LoadResult(key=key, batch_id=batch_id, status=Status.DUPLICATE, duplicate_of=already)
            record_without_loading(conn, source, result, started_at=started_at, run_id=run_id)
            _move(s3, bucket, key, filed_key(key, config.PROCESSED_PREFIX))
            return result

        clock = time.perf_counter()
        sheets: list[TypedSheet] = []
        try:
            typed = _read(local, key, read_limits, workdir)
            sheets = typed.sheets
            _check_rejected_share(key, sheets, typed.row_count, max_rejected_fraction)
        except FileRejected as rejection:
            reject(rejection, sheets, round(time.perf_counter() - clock, 3))
        read_seconds = round(time.perf_counter() - clock, 3)

        try:
            result = load_into_bronze(
                conn, source, sheets, batch_id=batch_id, started_at=started_at, read_seconds=read_seconds, run_id=run_id
            )
        except psycopg.Error as error:
            if not (error.sqlstate or "").startswith(_REFUSED_VALUE_CLASSES):
                raise
            # The load's transaction rolled back whole: nothing of the file is in bronze.
            reject(FileRejected(key, _refused_value(error)), sheets, read_seconds)
    _move(s3, bucket, key, filed_key(key, config.PROCESSED_PREFIX))
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
        if error.errno in _RESOURCE_ERRNOS:
            raise
        raise FileRejected(key, f"the file could not be read: {_scrubbed(error, workdir)}") from error
    except BaseException as error:
        raise FileRejected(key, f"the reader failed on this file: {_scrubbed(error, workdir)}") from error


def _scrubbed(error: BaseException, workdir: Path) -> str:
    """The error as a user may read it: no local path, one line, bounded."""
    text = " ".join(str(error).split()).replace(str(workdir), "").replace(str(scratch_root()), "")
    return f"{type(error).__name__}: {text[:300] or '(no message)'}"


def _refused_value(error: psycopg.Error) -> str:
    """What PostgreSQL refused, with where in the COPY (the column and its value) when it says."""
    where = (error.diag.context or "").strip().splitlines()
    detail = f" ({where[0][:300]})" if where else ""
    return f"the warehouse refused a value of this file: {error.diag.message_primary or error}{detail}"


def _rejecter(
    s3: S3Hook,
    bucket: str,
    conn: psycopg.Connection,
    source: SourceFile,
    batch_id: str,
    started_at: datetime,
    run_id: str | None,
) -> Callable[[FileRejected, list[TypedSheet], float | None], NoReturn]:
    """Reject the file: its ``rejected`` ledger row, then quarantine with the report, then raise."""

    def reject(rejection: FileRejected, sheets: list[TypedSheet], read_seconds: float | None) -> NoReturn:
        result = LoadResult(
            key=source.key,
            batch_id=batch_id,
            status=Status.REJECTED,
            rows_rejected=sum(sheet.typed.rejected.height for sheet in sheets),
            error=rejection.reason,
            read_seconds=read_seconds,
        )
        if not rejected_in_run(conn, source.key, source.version, run_id):
            record_without_loading(conn, source, result, started_at=started_at, run_id=run_id)
        _quarantine(s3, bucket, source.key, _report(source, result, rejection))
        raise QuarantinedFile.of(rejection) from rejection

    return reject


def record_failed(
    conn: psycopg.Connection, s3: S3Hook, bucket: str, fault: PlatformFault, *, run_id: str | None
) -> LoadResult:
    """After the last try: record the file ``failed``, with the ETag the waiting DAG will leave alone.

    When the fault came before the file was read, its ETag and size come from S3 (if S3 answers) and its
    version stands in as ``etag:<ETag>``: no loaded content has that version, so it blocks nothing.
    """
    source = fault.source
    if source is None:
        etag = None
        size = 0
        try:
            head = s3.head_object(fault.key, bucket) or {}
            etag = head.get("ETag", "").strip('"') or None
            size = head.get("ContentLength", 0)
        except Exception:
            log.warning("could not read the ETag of s3://%s/%s", bucket, fault.key, exc_info=True)
        source = SourceFile(key=fault.key, version=f"etag:{etag or 'unknown'}", etag=etag, size=size)
    result = LoadResult(
        key=fault.key, batch_id=str(uuid.uuid4()), status=Status.FAILED, error=str(fault).removeprefix(f"{fault.key}: ")
    )
    record_without_loading(conn, source, result, started_at=datetime.now(UTC), run_id=run_id)
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
