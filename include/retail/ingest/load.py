"""Ingest one S3 object: fetch, check, load into bronze, then file it under processed/ or quarantine/.

Also what the ingest DAGs decide around the loads: which files under incoming/ to take, recording a file
``failed`` after its last try, and announcing what was loaded.

The order makes every step safe to repeat after a crash: the ledger is written before the object
moves, so a re-run of a loaded file finds its content in the ledger, records a duplicate and only
finishes the move.

Every error is either the file's fault or the platform's. The file's (a contract breach, a file the
reader cannot read or crashes on, a value PostgreSQL refuses) is final: FileRejected, quarantined with a
report, once (the Airflow task turns it into Airflow's no-retry failure). The platform's (the warehouse
or S3 unreachable) is a PlatformFault: retried with backoff, and after the last try recorded ``failed``
in the ledger and moved to failed/ (record_failed), so that nothing takes it again, and alerts again, until
someone moves it back to incoming/.
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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import psycopg
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from include.retail.platform import alerts, config

from include.retail.ingest import ledger
from include.retail.ingest.bronze import copy_into_bronze
from include.retail.ingest.contract import FileRejected, TypedSheet, check_rejected_count
from include.retail.ingest.ledger import LoadResult, SourceFile, Status
from include.retail.transform.summary import load_summary
from include.retail.ingest.sandboxed_read import ReadLimits, TypedSource, read_typed

log = logging.getLogger(__name__)

# A waiting run takes at most this many files; the next run takes the rest.
MAX_FILES_PER_RUN = 100
# A run woken by upload events takes up to this many (below Airflow's max_map_length, 1024): the events
# that woke it are consumed, so what it leaves waits for the next upload.
MAX_FILES_PER_EVENT_RUN = 1000

# Errors of the machine, not of the file, that may surface while reading: retried, never a rejection.
_RESOURCE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE, errno.EIO, errno.EROFS})

# PostgreSQL refusing a value (SQLSTATE class 22, data exception: a NUL byte, an invalid byte sequence, a
# number out of range) or a limit (class 54: a value too long) is the file's fault; anything else is not.
_REFUSED_VALUE_CLASSES = ("22", "54")


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
            f"{super().__str__()}. After its last try the file is recorded failed and moved to "
            f"{filed_key(self.key, config.FAILED_PREFIX)}: move it back to {self.key} to load it again."
        )


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split()) or "(no message)"
    return f"{type(error).__name__}: {text[:500]}"


def filed_key(key: str, prefix: str) -> str:
    """Where an object goes once handled: its path under incoming/, re-rooted at ``prefix``."""
    relative = key.removeprefix(config.INCOMING_PREFIX)
    return prefix + relative


def files_waiting(s3_objects: Iterable[dict]) -> list[str]:
    """The keys of the listed objects (S3 metadata dicts), folder markers left out."""
    return [item["Key"] for item in s3_objects if not item["Key"].endswith("/")]


def keys_to_load(s3: S3Hook, bucket: str, *, limit: int = MAX_FILES_PER_RUN) -> list[str]:
    """The files waiting under incoming/ (folder markers left out), in name order, at most ``limit``."""
    waiting = sorted(files_waiting(s3.iter_file_metadata(config.INCOMING_PREFIX, bucket_name=bucket)))
    if len(waiting) > limit:
        log.warning("%d files wait under %s; this run takes the first %d", len(waiting), config.INCOMING_PREFIX, limit)
    return waiting[:limit]


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
            _record_failed_if_possible(connect, s3, bucket, fault, run_id)
        raise


def _record_failed_if_possible(
    connect: Callable[[], psycopg.Connection], s3: S3Hook, bucket: str, fault: PlatformFault, run_id: str | None
) -> None:
    """Best effort: when the warehouse itself is still down there is nowhere to record it, and when S3 is,
    nowhere to move it; either way the file stays in incoming/ and the next run takes it again (its failure
    alert has gone out either way)."""
    try:
        with connect() as conn:
            record_failed(conn, s3, bucket, fault, run_id=run_id)
        _move(s3, bucket, fault.key, filed_key(fault.key, config.FAILED_PREFIX))
    except Exception:
        log.exception("%s: could not record the file as failed and move it to %s", fault.key, config.FAILED_PREFIX)
        return
    fault.recorded_failed = True


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
            key=key, sha256=_sha256(local), etag=head.get("ETag", "").strip('"') or None, size=local.stat().st_size
        )
        learnt["source"] = source
        log.info("%s: downloaded %s MB (SHA-256 %s)", key, f"{source.size / 1e6:,.1f}", source.sha256[:12])
        reject = _rejecter(s3, bucket, conn, source, batch_id, started_at, run_id)

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
            _move(s3, bucket, key, filed_key(key, config.PROCESSED_PREFIX))
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
            if not (error.sqlstate or "").startswith(_REFUSED_VALUE_CLASSES):
                raise
            # The load's transaction rolled back whole: nothing of the file is in bronze.
            reject(FileRejected(key, _refused_value(error)), typed.rows_rejected, round(time.perf_counter() - clock, 3))
        finally:
            typed.close()
    _move(s3, bucket, key, filed_key(key, config.PROCESSED_PREFIX))
    log.info(
        "%s: %s, %s rows loaded, %s rejected; filed to %s",
        key,
        result.status,
        f"{result.rows_loaded:,}",
        f"{result.rows_rejected:,}",
        filed_key(key, config.PROCESSED_PREFIX),
    )
    return result


def load_into_bronze(
    conn: psycopg.Connection,
    source: SourceFile,
    sheets: list[TypedSheet] | TypedSource,
    *,
    batch_id: str | None = None,
    started_at: datetime,
    read_seconds: float | None = None,
    run_id: str | None = None,
    max_rejected_fraction: float | None = None,
    read_clock: float | None = None,
) -> LoadResult:
    """Load every sheet's rows and rejected rows, and the ledger row, in one transaction.

    ``sheets`` is the typed sheets, or a ``TypedSource`` still being read: its batches are COPYed as they
    come, and a breach found in a later batch (FileRejected, or more than ``max_rejected_fraction`` of the
    rows rejected) rolls the transaction back whole. ``read_clock`` (perf_counter when the read began)
    times the read, which then overlaps the load.

    Idempotent by content: under a lock on the content hash, a version already loaded is recorded as a
    duplicate and nothing else is written. So is a file whose typed rows are exactly those of another
    current file (``bronze.rows_fingerprint``: the same data re-exported in another format or order); a file
    that shares only some rows loads, and the ledger counts them (``rows_overlapping``). A new version
    of a key that was loaded before supersedes the older load (its rows stay in bronze;
    ``retail_transactions_current`` leaves them out). The rows are COPYed before the locks are taken
    (the fingerprint is known only once they are all read); a duplicate's rows are then rolled back.
    """
    batch_id = batch_id or str(uuid.uuid4())
    clock = time.perf_counter()
    recorded = {"source": source, "batch_id": batch_id, "started_at": started_at, "run_id": run_id}
    streamed = isinstance(sheets, TypedSource)
    with conn.transaction():
        conn.execute("savepoint rows_of_the_file")
        try:
            copied = copy_into_bronze(conn, source, sheets.batches() if streamed else sheets, batch_id)
            row_count = sheets.row_count if streamed else copied.rows_loaded + copied.rows_rejected
        except FileRejected as rejection:
            rejection.rows_rejected = sheets.rows_rejected if streamed else 0
            raise
        if streamed and read_clock is not None:
            read_seconds = round(time.perf_counter() - read_clock, 3)
        if max_rejected_fraction is not None:
            try:
                check_rejected_count(
                    source.key, copied.rows_rejected, list(copied.rejected_sample), row_count, max_rejected_fraction
                )
            except FileRejected as rejection:
                rejection.rows_rejected = copied.rows_rejected
                raise
        ledger.lock_content(conn, source, copied.fingerprint)
        already = ledger.earlier_load_of(conn, source, copied.fingerprint, has_rows=copied.rows_loaded > 0)
        if already:
            conn.execute("rollback to savepoint rows_of_the_file")
            ledger.lock_content(conn, source, copied.fingerprint)  # the rollback released the locks
            return ledger.record(
                conn,
                status=Status.DUPLICATE,
                duplicate_of=already,
                read_seconds=read_seconds,
                load_seconds=round(time.perf_counter() - clock, 3),
                **recorded,
            )
        return ledger.record_loaded(
            conn,
            rows_loaded=copied.rows_loaded,
            rows_rejected=copied.rows_rejected,
            sheets=[name for name in copied.sheets if name is not None],
            read_seconds=read_seconds,
            load_seconds=round(time.perf_counter() - clock, 3),
            fingerprint=copied.fingerprint,
            rows_overlapping=copied.rows_overlapping,
            **recorded,
        )


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
) -> Callable[[FileRejected, int, float | None], NoReturn]:
    """Reject the file: its ``rejected`` ledger row, then quarantine with the report, then raise."""

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
        _quarantine(s3, bucket, source.key, _report(source, batch_id, rows_rejected, rejection))
        raise rejection

    return reject


def record_failed(
    conn: psycopg.Connection, s3: S3Hook, bucket: str, fault: PlatformFault, *, run_id: str | None
) -> LoadResult:
    """After the last try: record the file ``failed`` (``make health`` lists it until it loads).

    When the fault came before the file was read, its ETag and size come from S3 (if S3 answers) and
    ``etag:<ETag>`` stands in for its SHA-256: no loaded content has that hash, so it blocks nothing.
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
        source = SourceFile(key=fault.key, sha256=f"etag:{etag or 'unknown'}", etag=etag, size=size)
    return ledger.record(
        conn,
        source,
        Status.FAILED,
        batch_id=str(uuid.uuid4()),
        started_at=datetime.now(UTC),
        run_id=run_id,
        error=str(fault).removeprefix(f"{fault.key}: "),
    )


def _report(source: SourceFile, batch_id: str, rows_rejected: int, rejection: FileRejected) -> dict:
    """The report left beside a quarantined file: enough to fix the file without opening the logs."""
    return {
        "file": source.key,
        "status": Status.REJECTED,
        "reason": rejection.reason,
        "batch_id": batch_id,
        "sha256": source.sha256,
        "bytes": source.size,
        "rows_rejected": rows_rejected,
        "rejected_at": datetime.now(UTC).isoformat(),
        **rejection.details,
        "what_to_do": "Fix the file and upload it again under incoming/; nothing from it was loaded.",
    }


def announce_batches(conn: psycopg.Connection, run_id: str, *, alerts_topic: Callable[[], str]) -> dict | None:
    """Publish what the run loaded, and every loaded batch an earlier run never announced, to the SNS topic
    ``alerts_topic`` names (asked only when there is something to publish); None when there is nothing to
    announce (the task then skips, so its outlet emits no bronze Asset event).

    Every loaded batch reaches silver: a run killed after its bronze commit (before the move, or with S3
    or SNS gone) leaves its batch unannounced in the ledger, and the next run, even one that finds only
    duplicates, announces it. The ledger is marked only after the summary is published, so a failed
    publish is retried. Airflow records the Asset event after the task returns: if the task dies in
    that window its retry finds the batches marked by this same run and announces them again (at least
    once: a summary may go out twice, a batch is never stranded; past the last retry ``make health``
    lists the batch as missing from silver).
    """
    results = ledger.ledger_rows_of_run(conn, run_id)
    pending = {batch["batch_id"]: batch for batch in ledger.batches_announced_by(conn, run_id)}
    pending |= {batch["batch_id"]: batch for batch in ledger.unannounced_batches(conn)}
    details = ledger.load_details(conn, [result["batch_id"] for result in results])
    if not pending:
        return None
    results = [result | details.get(result["batch_id"], {}) for result in results]
    of_this_run = {result["batch_id"] for result in results}
    earlier = [batch for batch_id, batch in pending.items() if batch_id not in of_this_run]
    subject, message = load_summary(results, run_id=run_id, earlier=earlier)
    message_id = alerts.publish(alerts_topic(), subject, message)
    ledger.mark_announced(conn, list(pending), run_id=run_id)
    earlier = [batch | {"finished_at": batch["finished_at"].isoformat()} for batch in earlier]
    return {"subject": subject, "message_id": message_id, "files": results, "earlier": earlier}
