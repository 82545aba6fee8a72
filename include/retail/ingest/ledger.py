"""The load ledger (``bronze.load_ledger``): one row per file handled, whatever became of it.

The ledger is what makes loads idempotent (the same content is loaded once), what the run's summary
is built from, and what the health check reads. Every read and write of it lives here.

Functions take a psycopg connection in autocommit mode (or a cursor inside the caller's transaction).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum

import psycopg
from psycopg.rows import dict_row, tuple_row


class Status(StrEnum):
    """What became of a file (the ledger's ``status`` column; include/sql/010_bronze.sql checks the same)."""

    LOADED = "loaded"  # its rows are in bronze
    DUPLICATE = "duplicate"  # its content was loaded before; nothing added
    REJECTED = "rejected"  # the file's fault: quarantined with a report, nothing loaded
    FAILED = "failed"  # the platform's fault, after the last try: moved to failed/ until someone moves it back


@dataclass(frozen=True)
class SourceFile:
    """The file being loaded, as S3 describes it."""

    key: str
    sha256: str  # of the bytes (the ledger's source_version): the same content is loaded once, under whatever key
    etag: str | None
    size: int
    s3_version_id: str | None = None  # the S3 VersionId read; None where the bucket keeps no versions


@dataclass
class LoadResult:
    """What became of one file: one ledger row. Made by ``record`` only, as the row is written."""

    key: str
    batch_id: str
    status: Status
    rows_loaded: int = 0
    rows_rejected: int = 0
    sheets: list[str] = field(default_factory=list)
    duplicate_of: str | None = None
    superseded: list[str] = field(default_factory=list)
    error: str | None = None
    read_seconds: float | None = None
    load_seconds: float | None = None

    def as_dict(self) -> dict:
        """Plain values only (the status as text), for XCom."""
        return asdict(self) | {"status": str(self.status)}


def _cursor(conn: psycopg.Connection) -> psycopg.Cursor:
    return conn.cursor(row_factory=tuple_row)


def loaded_batch_of(conn: psycopg.Connection, sha256: str) -> str | None:
    """The batch that already loaded this content, if any."""
    with _cursor(conn) as cur:
        cur.execute(
            f"select batch_id from bronze.load_ledger where source_version = %s and status = '{Status.LOADED}'",
            (sha256,),
        )
        row = cur.fetchone()
    return str(row[0]) if row else None


def record(
    conn: psycopg.Connection,
    source: SourceFile,
    status: Status,
    *,
    batch_id: str,
    started_at: datetime,
    run_id: str | None,
    rows_loaded: int = 0,
    rows_rejected: int = 0,
    sheets: list[str] | None = None,
    duplicate_of: str | None = None,
    error: str | None = None,
    read_seconds: float | None = None,
    load_seconds: float | None = None,
) -> LoadResult:
    """Write the file's ledger row and return it as a LoadResult: the one place both are made, so that a new
    column is added here. One statement: in the caller's transaction if it has one, else committed at once."""
    result = LoadResult(
        key=source.key,
        batch_id=batch_id,
        status=status,
        rows_loaded=rows_loaded,
        rows_rejected=rows_rejected,
        sheets=sheets or [],
        duplicate_of=duplicate_of,
        error=error,
        read_seconds=read_seconds,
        load_seconds=load_seconds,
    )
    conn.execute(
        """
        insert into bronze.load_ledger (
            batch_id, source_key, source_version, source_etag, source_s3_version_id, source_bytes, status,
            rows_loaded, rows_rejected, sheets, error, duplicate_of, airflow_run_id,
            started_at, read_seconds, load_seconds
        )
        values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (
            result.batch_id,
            source.key,
            source.sha256,
            source.etag,
            source.s3_version_id,
            source.size,
            result.status,
            result.rows_loaded,
            result.rows_rejected,
            result.sheets,
            result.error,
            result.duplicate_of,
            run_id,
            started_at,
            result.read_seconds,
            result.load_seconds,
        ),
    )
    return result


def lock_content(conn: psycopg.Connection, source: SourceFile, fingerprint: str) -> None:
    """Inside a load's transaction: wait for any load of the same content or the same rows to commit, so
    that the checks that follow (``earlier_load_of``) see it."""
    for lock in (source.sha256, fingerprint):
        conn.execute("select pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock,))


def earlier_load_of(conn: psycopg.Connection, source: SourceFile, fingerprint: str, *, has_rows: bool) -> str | None:
    """The current batch this file would duplicate: the same bytes, or (when it has rows) the same typed rows
    under another key (a re-export in another format or order). Call it under ``lock_content``."""
    already = loaded_batch_of(conn, source.sha256)
    if not already and has_rows:
        same_rows = current_batch_with_rows(conn, fingerprint, source.key)
        already = same_rows[0] if same_rows else None
    return already


def record_loaded(
    conn: psycopg.Connection,
    source: SourceFile,
    *,
    batch_id: str,
    started_at: datetime,
    run_id: str | None,
    rows_loaded: int,
    rows_rejected: int,
    sheets: list[str],
    read_seconds: float | None,
    load_seconds: float,
    fingerprint: str,
    rows_overlapping: int | None,
) -> LoadResult:
    """Inside the load's transaction: the ``loaded`` row with the rows' fingerprint and overlap, and the key's
    earlier current load superseded (its rows stay in bronze; retail_transactions_current leaves them out)."""
    result = record(
        conn,
        source,
        Status.LOADED,
        batch_id=batch_id,
        started_at=started_at,
        run_id=run_id,
        rows_loaded=rows_loaded,
        rows_rejected=rows_rejected,
        sheets=sheets,
        read_seconds=read_seconds,
        load_seconds=load_seconds,
    )
    conn.execute(
        "update bronze.load_ledger set rows_fingerprint = %s, rows_overlapping = %s where batch_id = %s",
        (fingerprint, rows_overlapping, batch_id),
    )
    superseded = conn.execute(
        f"""
        update bronze.load_ledger set superseded_by = %s
        where source_key = %s and status = '{Status.LOADED}' and superseded_by is null and batch_id <> %s
        returning batch_id
        """,
        (batch_id, source.key, batch_id),
    )
    result.superseded = [str(row[0]) for row in superseded.fetchall()]
    return result


def last_loaded_at(conn: psycopg.Connection) -> datetime | None:
    """When the latest file was loaded (None before the first): how fresh bronze is."""
    with _cursor(conn) as cur:
        cur.execute(f"select max(finished_at) from bronze.load_ledger where status = '{Status.LOADED}'")
        return cur.fetchone()[0]


def current_files(conn: psycopg.Connection) -> list[tuple[str, int]]:
    """``(key, rows_loaded)`` of every file whose rows bronze serves now (each key's latest load, the rows
    silver reads), in key order: what the warehouse holds."""
    with _cursor(conn) as cur:
        cur.execute(
            f"""
            select source_key, rows_loaded from bronze.load_ledger
            where status = '{Status.LOADED}' and superseded_by is null
            order by source_key
            """
        )
        return [(key, rows) for key, rows in cur.fetchall()]


def latest_row_of(conn: psycopg.Connection, key: str, since: datetime) -> dict | None:
    """The latest ledger row of ``key`` written since ``since`` (status, rows_loaded, rows_rejected, error,
    duplicate_of), or None: what became of one upload."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            select status, rows_loaded, rows_rejected, error, duplicate_of
            from bronze.load_ledger where source_key = %s and started_at >= %s
            order by finished_at desc limit 1
            """,
            (key, since),
        )
        row = cur.fetchone()
    return row and row | {"status": Status(row["status"])}


def ledger_rows_of_run(conn: psycopg.Connection, run_id: str) -> list[dict]:
    """Every file a DAG run handled, as LoadResult dicts, in the order it handled them."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            select
                ledger.source_key as key,
                ledger.batch_id::text as batch_id,
                ledger.status,
                ledger.rows_loaded,
                ledger.rows_rejected,
                ledger.sheets,
                ledger.duplicate_of::text as duplicate_of,
                coalesce(
                    (select array_agg(older.batch_id::text) from bronze.load_ledger as older
                     where older.superseded_by = ledger.batch_id),
                    '{}'
                ) as superseded,
                ledger.error,
                ledger.read_seconds::float as read_seconds,
                ledger.load_seconds::float as load_seconds
            from bronze.load_ledger as ledger
            where ledger.airflow_run_id = %s
            order by ledger.finished_at, ledger.source_key
            """,
            (run_id,),
        )
        return list(cur.fetchall())


def failed_files(conn: psycopg.Connection) -> list[dict]:
    """Files whose latest ledger row is ``failed`` (the platform's fault after the last try): key, etag,
    error, finished_at. They wait in failed/ for someone to look; a later load or rejection clears them."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"""
            select key, etag, error, finished_at
            from (
                select distinct on (source_key)
                    source_key as key, source_etag as etag, error, finished_at, status
                from bronze.load_ledger
                where source_key in (select source_key from bronze.load_ledger where status = '{Status.FAILED}')
                order by source_key, finished_at desc
            ) as latest
            where status = '{Status.FAILED}'
            order by finished_at
            """
        )
        return list(cur.fetchall())


_PENDING_ANNOUNCEMENT = f"""
    select
        ledger.source_key as key,
        ledger.batch_id::text as batch_id,
        ledger.rows_loaded,
        ledger.rows_rejected,
        ledger.rows_overlapping,
        ledger.airflow_run_id,
        ledger.finished_at
    from bronze.load_ledger as ledger
    where
        ledger.status = '{Status.LOADED}'
        and ledger.superseded_by is null
        and {{condition}}
    order by ledger.finished_at, ledger.source_key
"""


def unannounced_batches(conn: psycopg.Connection) -> list[dict]:
    """Current loaded batches whose summary and bronze Asset update never went out, oldest first.

    A crash between the bronze commit and the announcement (the process killed, S3 or SNS gone) leaves
    them here; the next ingest run announces them, whatever it loads itself. A batch superseded before
    it was announced is left out: the load that replaced it is announced instead.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_PENDING_ANNOUNCEMENT.format(condition="ledger.announced_at is null"))
        return list(cur.fetchall())


def batches_announced_by(conn: psycopg.Connection, run_id: str) -> list[dict]:
    """Current loaded batches that ``run_id`` marked announced: a retry of that run announces them again,
    because a task killed after marking them but before Airflow recorded its Asset event emitted none."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_PENDING_ANNOUNCEMENT.format(condition="ledger.announced_by = %s"), (run_id,))
        return list(cur.fetchall())


def mark_announced(conn: psycopg.Connection, batch_ids: list[str], *, run_id: str | None = None) -> None:
    """Record that the summary of these batches was published and their Asset update is being emitted."""
    if not batch_ids:
        return
    with conn.transaction(), _cursor(conn) as cur:
        cur.execute(
            """
            update bronze.load_ledger
            set announced_at = clock_timestamp(), announced_by = %s
            where batch_id = any(%s::uuid[]) and (announced_at is null or announced_by is not distinct from %s)
            """,
            (run_id, batch_ids, run_id),
        )


def batches_missing_from_silver(conn: psycopg.Connection) -> list[dict]:
    """Current loaded batches that silver does not hold yet (key, batch_id, rows_loaded, finished_at).

    A batch is held when silver.transactions or silver.transactions_set_aside has a row of it; a batch
    of no rows needs nothing. Before silver exists every current loaded batch is missing. Needs read
    access to bronze's ledger and to silver (the transformer's or the owner's connection).
    """
    with _cursor(conn) as cur:
        cur.execute("select to_regclass('silver.transactions'), to_regclass('silver.transactions_set_aside')")
        transactions, set_aside = cur.fetchone()
    held = [
        f"exists (select 1 from silver.{table} as held where held.source_key = ledger.source_key"
        " and held.batch_id = ledger.batch_id)"
        for table, exists in (("transactions", transactions), ("transactions_set_aside", set_aside))
        if exists is not None
    ]
    not_held = f"and not ({' or '.join(held)})" if held else ""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"""
            select ledger.source_key as key, ledger.batch_id::text as batch_id, ledger.rows_loaded,
                   ledger.finished_at
            from bronze.load_ledger as ledger
            where ledger.status = '{Status.LOADED}' and ledger.superseded_by is null and ledger.rows_loaded > 0
                {not_held}
            order by ledger.finished_at, ledger.source_key
            """
        )
        return list(cur.fetchall())


def current_batch_with_rows(conn: psycopg.Connection, fingerprint: str, key: str) -> tuple[str, str] | None:
    """A current load of another key whose typed rows are exactly these (batch id, key): a re-export."""
    with _cursor(conn) as cur:
        cur.execute(
            f"""
            select batch_id::text, source_key from bronze.load_ledger
            where rows_fingerprint = %s and status = '{Status.LOADED}' and superseded_by is null and source_key <> %s
            order by finished_at
            limit 1
            """,
            (fingerprint, key),
        )
        row = cur.fetchone()
    return (row[0], row[1]) if row else None


def load_details(conn: psycopg.Connection, batch_ids: list[str]) -> dict[str, dict]:
    """For the summary: per batch, the rows overlapping other files and the key of the load it duplicates."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            select ledger.batch_id::text as batch_id, ledger.rows_overlapping, original.source_key as duplicate_of_key
            from bronze.load_ledger as ledger
            left join bronze.load_ledger as original on ledger.duplicate_of = original.batch_id
            where ledger.batch_id = any(%s::uuid[])
            """,
            (batch_ids,),
        )
        return {row.pop("batch_id"): row for row in cur.fetchall()}


def rejected_in_run(conn: psycopg.Connection, key: str, sha256: str, run_id: str | None) -> bool:
    """Whether this run already recorded this content of ``key`` rejected: a retry after the quarantine
    itself failed (S3 down) finishes the quarantine without a second ledger row."""
    if run_id is None:
        return False
    with _cursor(conn) as cur:
        cur.execute(
            "select 1 from bronze.load_ledger where source_key = %s and source_version = %s "
            f"and status = '{Status.REJECTED}' and airflow_run_id = %s",
            (key, sha256, run_id),
        )
        return cur.fetchone() is not None
