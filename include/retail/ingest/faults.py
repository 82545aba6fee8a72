"""Whose fault an error is while a file is handled: the file's (final, a rejection) or the platform's (retried).

The file's fault (a value PostgreSQL refuses, a reader crash on it) becomes ``FileRejected`` in ``load``; the
platform's (the warehouse or S3 unreachable, the machine out of disk) is a ``PlatformFault``: retried with
backoff, and after the last try recorded ``failed`` in the ledger and moved to failed/ (``record_failed``), so
that nothing takes it again, and alerts again, until someone moves it back to incoming/.
"""

from __future__ import annotations

import errno
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from include.retail.ingest import filing, ledger
from include.retail.ingest.ledger import LoadResult, SourceFile, Status
from include.retail.ingest.scratch import scratch_root
from include.retail.platform import config

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

log = logging.getLogger(__name__)

# Errors of the machine, not of the file, that may surface while reading: retried, never a rejection.
RESOURCE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE, errno.EIO, errno.EROFS})

# PostgreSQL refusing a value (SQLSTATE class 22, data exception: a NUL byte, an invalid byte sequence, a
# number out of range) or a limit (class 54: a value too long) is the file's fault; anything else is not.
REFUSED_VALUE_CLASSES = ("22", "54")


class PlatformFault(Exception):
    """A fault of the platform (warehouse, S3) while handling a file: retried; after the last try the file is
    recorded ``failed``. Carries what was learnt of the file for that ledger row."""

    def __init__(self, key: str, error: BaseException, source: SourceFile | None) -> None:
        super().__init__(f"{key}: could not be loaded because of a platform fault, not the file: {_describe(error)}")
        self.key = key
        self.source = source
        # Set once the ledger says ``failed`` and the version that failed is in failed/ (after the last try).
        self.recorded_failed = False

    def __str__(self) -> str:
        if not self.recorded_failed:
            return super().__str__()
        return (
            f"{super().__str__()}. After its last try the file is recorded failed and moved to "
            f"{filing.filed_key(self.key, config.FAILED_PREFIX)}: move it back to {self.key} to load it again."
        )


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split()) or "(no message)"
    return f"{type(error).__name__}: {text[:500]}"


def scrubbed(error: BaseException, workdir: Path) -> str:
    """The error as a user may read it: no local path, one line, bounded."""
    text = " ".join(str(error).split()).replace(str(workdir), "").replace(str(scratch_root()), "")
    return f"{type(error).__name__}: {text[:300] or '(no message)'}"


def refused_value(error: psycopg.Error) -> str:
    """What PostgreSQL refused, with where in the COPY (the column and its value) when it says."""
    where = (error.diag.context or "").strip().splitlines()
    detail = f" ({where[0][:300]})" if where else ""
    return f"the warehouse refused a value of this file: {error.diag.message_primary or error}{detail}"


def unread_source(s3: S3Hook, bucket: str, key: str) -> SourceFile:
    """The version of ``key`` a fault came before reading: its ETag, size and S3 VersionId from a HEAD (if S3
    answers), and ``etag:<ETag>`` standing in for its SHA-256: no loaded content has that hash, so it blocks
    nothing. The move to failed/ then takes that version only."""
    etag = version_id = None
    size = 0
    try:
        head = s3.head_object(key, bucket) or {}
        etag = head.get("ETag", "").strip('"') or None
        size = head.get("ContentLength", 0)
        version_id = filing.version_id_of(head)
    except Exception:
        log.warning("could not read the ETag of s3://%s/%s", bucket, key, exc_info=True)
    return SourceFile(key=key, sha256=f"etag:{etag or 'unknown'}", etag=etag, size=size, s3_version_id=version_id)


def record_failed(
    conn: psycopg.Connection, source: SourceFile, fault: PlatformFault, *, run_id: str | None
) -> LoadResult:
    """After the last try: record the file ``failed`` (``make health`` lists it until it loads)."""
    return ledger.record(
        conn,
        source,
        Status.FAILED,
        batch_id=str(uuid.uuid4()),
        started_at=datetime.now(UTC),
        run_id=run_id,
        error=str(fault).removeprefix(f"{fault.key}: "),
    )


def record_failed_if_possible(
    connect: Callable[[], psycopg.Connection], s3: S3Hook, bucket: str, fault: PlatformFault, run_id: str | None
) -> None:
    """Best effort: when the warehouse itself is still down there is nowhere to record it, and when S3 is,
    nowhere to move it; either way the file stays in incoming/ and the next run takes it again (its failure
    alert has gone out either way). Only the version that failed moves: a newer upload of the key stays."""
    try:
        source = fault.source or unread_source(s3, bucket, fault.key)
        with connect() as conn:
            record_failed(conn, source, fault, run_id=run_id)
        filed = filing.move(s3, bucket, filing.Upload(source), filing.filed_key(fault.key, config.FAILED_PREFIX))
    except Exception:
        log.exception("%s: could not record the file as failed and move it to %s", fault.key, config.FAILED_PREFIX)
        return
    fault.recorded_failed = filed
