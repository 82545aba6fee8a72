"""Load typed rows into bronze in one transaction, with the file's ledger row (``include.retail.ledger``).

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
from dataclasses import dataclass
from datetime import datetime

import polars as pl
import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from include.retail.contract import COLUMNS, TypedRows
from include.retail.ledger import LoadResult, SourceFile, Status, insert_ledger_row, loaded_batch_of

# The columns of a staged row: the contract's, plus where in the file it came from.
STAGED_COLUMNS = (*COLUMNS, "source_sheet", "source_row")
REJECTED_COLUMNS = ("source_sheet", "source_row", "reason", "raw_values")

_COPY_SLICE_ROWS = 50_000


@dataclass(frozen=True)
class TypedSheet:
    name: str | None
    typed: TypedRows


def _cursor(conn: psycopg.Connection) -> psycopg.Cursor:
    return conn.cursor(row_factory=tuple_row)


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
        status=Status.LOADED,
        sheets=[sheet.name for sheet in sheets if sheet.name is not None],
        read_seconds=read_seconds,
    )
    staged = sql.Identifier("staged_transactions")
    with conn.transaction(), _cursor(conn) as cur:
        cur.execute("select pg_advisory_xact_lock(hashtextextended(%s, 0))", (source.version,))
        already = loaded_batch_of(conn, source.version)  # now under the lock: a concurrent load has committed
        if already:
            result.status, result.duplicate_of, result.sheets = Status.DUPLICATE, already, []
            result.load_seconds = round(time.perf_counter() - clock, 3)
            insert_ledger_row(cur, source, result, started_at, run_id)
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
        insert_ledger_row(cur, source, result, started_at, run_id)
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
