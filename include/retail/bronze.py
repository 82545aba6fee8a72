"""Load typed rows into bronze in one transaction, and keep the ledger that makes loads idempotent.

Rows go in with COPY: first into a temporary table holding only the source columns (temporary
tables write no WAL, so this is the cheap place for PostgreSQL to parse 500k rows of text), then into
``bronze.retail_transactions`` with the file's lineage added as constants in one INSERT … SELECT.
That is about twice as fast as COPYing the lineage text on every row.

Functions here take a psycopg connection in autocommit mode and open their own transactions, so
that a ledger row is committed whether or not the caller goes on to raise.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime

import polars as pl
import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from include.retail.contract import COLUMNS, TypedRows

# The columns of a staged row: the contract's, plus where in the file it came from.
STAGED_COLUMNS = (*COLUMNS, "source_sheet", "source_row")
REJECTED_COLUMNS = ("source_sheet", "source_row", "reason", "raw_values")

_COPY_SLICE_ROWS = 50_000


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
    status: str  # loaded | duplicate | rejected
    rows_loaded: int = 0
    rows_rejected: int = 0
    sheets: list[str] = field(default_factory=list)
    duplicate_of: str | None = None
    superseded: list[str] = field(default_factory=list)
    error: str | None = None
    read_seconds: float | None = None
    load_seconds: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TypedSheet:
    name: str | None
    typed: TypedRows


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


def _insert_ledger_row(
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
        _insert_ledger_row(cur, source, result, started_at, run_id)


def _copy_frame(cur: psycopg.Cursor, table: sql.Composable, columns: Sequence[str], frame: pl.DataFrame) -> None:
    """COPY a frame as CSV, in slices, so that PostgreSQL parses one slice while polars writes the next.

    polars writes nulls unquoted (NULL to COPY) and empty strings as "" (an empty string to COPY).
    """
    statement = sql.SQL("copy {} ({}) from stdin (format csv)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with cur.copy(statement) as copy:
        for piece in frame.select(columns).iter_slices(_COPY_SLICE_ROWS):
            buffer = io.BytesIO()
            piece.write_csv(buffer, include_header=False, quote_style="necessary")
            copy.write(buffer.getbuffer())


def load_into_bronze(
    conn: psycopg.Connection,
    source: SourceFile,
    sheets: Sequence[TypedSheet],
    *,
    batch_id: str | None = None,
    started_at: datetime,
    read_seconds: float | None = None,
    run_id: str | None = None,
) -> LoadResult:
    """Load every sheet's rows and rejected rows, and the ledger row, in one transaction.

    Idempotent by content: under a lock on the content hash, a version already loaded is recorded as a
    duplicate and nothing else is written. A new version of a key that was loaded before supersedes
    the older load (its rows stay in bronze; ``retail_transactions_current`` leaves them out).
    """
    batch_id = batch_id or str(uuid.uuid4())
    clock = time.perf_counter()
    result = LoadResult(
        key=source.key,
        batch_id=batch_id,
        status="loaded",
        sheets=[sheet.name for sheet in sheets if sheet.name is not None],
        read_seconds=read_seconds,
    )
    staged = sql.Identifier("staged_transactions")
    with conn.transaction(), _cursor(conn) as cur:
        cur.execute("select pg_advisory_xact_lock(hashtextextended(%s, 0))", (source.version,))
        already = loaded_batch_of(conn, source.version)  # now under the lock: a concurrent load has committed
        if already:
            result.status, result.duplicate_of, result.sheets = "duplicate", already, []
            result.load_seconds = round(time.perf_counter() - clock, 3)
            _insert_ledger_row(cur, source, result, started_at, run_id)
            return result

        cur.execute(
            sql.SQL(
                "create temporary table {} on commit drop as select {} from bronze.retail_transactions with no data"
            ).format(staged, sql.SQL(", ").join(map(sql.Identifier, STAGED_COLUMNS)))
        )
        for sheet in sheets:
            with_sheet = pl.lit(sheet.name, dtype=pl.String).alias("source_sheet")
            _copy_frame(cur, staged, STAGED_COLUMNS, sheet.typed.rows.with_columns(with_sheet))
            if sheet.typed.rejected.height:
                _copy_frame(
                    cur,
                    sql.SQL("bronze.rejected_rows"),
                    ("batch_id", "source_key", *REJECTED_COLUMNS),
                    sheet.typed.rejected.with_columns(
                        with_sheet, pl.lit(batch_id).alias("batch_id"), pl.lit(source.key).alias("source_key")
                    ),
                )
            result.rows_rejected += sheet.typed.rejected.height

        source_columns = sql.SQL(", ").join(map(sql.Identifier, STAGED_COLUMNS))
        cur.execute(
            sql.SQL(
                """
                insert into bronze.retail_transactions ({}, source_key, source_version, batch_id)
                select {}, %s, %s, %s from {}
                """
            ).format(source_columns, source_columns, staged),
            (source.key, source.version, batch_id),
        )
        result.rows_loaded = cur.rowcount
        result.load_seconds = round(time.perf_counter() - clock, 3)
        _insert_ledger_row(cur, source, result, started_at, run_id)
        cur.execute(
            """
            update bronze.load_ledger set superseded_by = %s
            where source_key = %s and status = 'loaded' and superseded_by is null and batch_id <> %s
            returning batch_id
            """,
            (batch_id, source.key, batch_id),
        )
        result.superseded = [str(row[0]) for row in cur.fetchall()]
    return result


def ledger_rows_of_run(conn: psycopg.Connection, run_id: str) -> list[dict]:
    """Every file a DAG run handled, as LoadResult dicts, in the order it handled them."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
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
