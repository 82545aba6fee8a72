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
    FAILED = "failed"  # the platform's fault, after the last try: left in incoming/, not taken again until it changes


@dataclass(frozen=True)
class SourceFile:
    """The file being loaded, as S3 describes it."""

    key: str
    version: str  # SHA-256 of the bytes: the same content is loaded once, under whatever key
    etag: str | None
    size: int


@dataclass
class LoadResult:
    """What became of one file: one ledger row."""

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


def loaded_batch_of(conn: psycopg.Connection, version: str) -> str | None:
    """The batch that already loaded this content, if any."""
    with _cursor(conn) as cur:
        cur.execute(
            "select batch_id from bronze.load_ledger where source_version = %s and status = 'loaded'",
            (version,),
        )
        row = cur.fetchone()
    return str(row[0]) if row else None


def insert_ledger_row(
    cur: psycopg.Cursor, source: SourceFile, result: LoadResult, started_at: datetime, run_id: str | None
) -> None:
    cur.execute(
        """
        insert into bronze.load_ledger (
            batch_id, source_key, source_version, source_etag, source_bytes, status,
            rows_loaded, rows_rejected, sheets, error, duplicate_of, airflow_run_id,
            started_at, read_seconds, load_seconds
        )
        values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (
            result.batch_id,
            source.key,
            source.version,
            source.etag,
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


def record_without_loading(
    conn: psycopg.Connection,
    source: SourceFile,
    result: LoadResult,
    *,
    started_at: datetime,
    run_id: str | None,
) -> None:
    """Write the ledger row of a file that loads nothing (a duplicate, or a rejected file)."""
    with conn.transaction(), _cursor(conn) as cur:
        insert_ledger_row(cur, source, result, started_at, run_id)


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
