"""COPY a file's typed rows into bronze, inside the caller's load transaction (``ingest.load_into_bronze``, which
writes the file's ledger row in the same transaction through ``include.retail.ledger``).

Rows go in with COPY: first into a temporary table holding only the source columns (temporary
tables write no WAL, so this is the cheap place for PostgreSQL to parse 500k rows of text), then into
``bronze.retail_transactions`` with the file's lineage added as constants in one INSERT … SELECT.
That is about twice as fast as COPYing the lineage text on every row.

Nothing here commits: the caller's transaction holds the rows and the ledger row together, so a file is in
bronze whole or not at all.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import polars as pl
import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from include.retail.contract import COLUMNS, REPORT_SAMPLE_ROWS, TypedSheet
from include.retail.ledger import SourceFile, Status

log = logging.getLogger(__name__)

# The columns of a staged row: the contract's, plus where in the file it came from.
STAGED_COLUMNS = (*COLUMNS, "source_sheet", "source_row")
REJECTED_COLUMNS = ("source_sheet", "source_row", "reason", "raw_values")

_COPY_SLICE_ROWS = 50_000

# Fixed seeds: the fingerprint must be the same in every process. polars does not promise the same row
# hashes across its versions, so after an upgrade a re-export of an older load may load again (as a new
# file, counted as overlapping); it can never hide a file that differs.
_ROW_HASH_SEEDS = (0x7265, 0x7461, 0x696C, 0x2031)
_FINGERPRINT_VERSION = "v1"


@dataclass(frozen=True)
class CopiedRows:
    """What one COPY put into bronze."""

    rows_loaded: int
    rows_rejected: int
    rows_overlapping: int  # identical to a row of another current file (a partial re-export)
    fingerprint: str = ""  # rows_fingerprint of the rows loaded
    sheets: tuple[str | None, ...] = ()  # in the order they came
    rejected_sample: tuple[TypedSheet, ...] = ()  # the first rejected rows of each sheet, for a report


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


def rows_fingerprint(sheets: Sequence[TypedSheet]) -> str:
    """A fingerprint of a file's typed rows that ignores the file's format, sheets and row order.

    Each row's eight typed values are hashed (prices as numbers, so "2.5" and "2.50" agree) and the
    hashes are summed, which is order-independent and counts repeated rows; with the row count this
    tells a re-export of the same rows (a workbook saved as CSV) from any other file. The sum is taken
    batch by batch (``Fingerprint``), so a file read in batches has the fingerprint it has whole.
    """
    fingerprint = Fingerprint()
    for sheet in sheets:
        fingerprint.add(sheet.rows)
    return fingerprint.value


class Fingerprint:
    """``rows_fingerprint``, summed over batches of rows."""

    def __init__(self) -> None:
        self.rows = self.high = self.low = 0

    def add(self, rows: pl.DataFrame) -> None:
        if not rows.height:
            return
        typed = rows.select(
            *(pl.col(column) for column in COLUMNS if column != "unit_price"),
            pl.col("unit_price").cast(pl.Float64),
        )
        hashes = typed.hash_rows(*_ROW_HASH_SEEDS)
        self.rows += typed.height
        self.high += (hashes // (1 << 32)).sum()  # 32-bit halves: no u64 sum overflows
        self.low += (hashes % (1 << 32)).sum()

    @property
    def value(self) -> str:
        if not self.rows:
            return f"{_FINGERPRINT_VERSION}:0"
        return f"{_FINGERPRINT_VERSION}:{self.rows}:{(self.high << 32) + self.low:x}"


def _rows_overlapping(cur: psycopg.Cursor, staged: sql.Identifier, key: str) -> int:
    """How many staged rows are identical (the eight source columns) to a row of another current file.

    Only rows of other current files within the staged rows' dates are read (BRIN on invoice_date), so
    the first load of a new month costs almost nothing extra; a file over the same days pays one join.
    """
    cur.execute(sql.SQL("select min(invoice_date), max(invoice_date) from {}").format(staged))
    first, last = cur.fetchone()
    if first is None:
        return 0
    cur.execute(
        sql.SQL(
            f"""
            select count(*) from {{}} as new_row
            where exists (
                select 1
                from bronze.retail_transactions as other
                inner join bronze.load_ledger as other_load
                    on other.batch_id = other_load.batch_id
                where
                    other.invoice_date between %s and %s
                    and other.source_key <> %s
                    and other_load.status = '{Status.LOADED}'
                    and other_load.superseded_by is null
                    and other.invoice_date = new_row.invoice_date
                    and (other.invoice_no, other.stock_code, other.description, other.quantity,
                         other.unit_price, other.customer_id, other.country)
                        is not distinct from
                        (new_row.invoice_no, new_row.stock_code, new_row.description, new_row.quantity,
                         new_row.unit_price, new_row.customer_id, new_row.country)
            )
            """
        ).format(staged),
        (first, last, key),
    )
    return cur.fetchone()[0]


def copy_into_bronze(
    conn: psycopg.Connection, source: SourceFile, sheets: Iterable[TypedSheet], batch_id: str
) -> CopiedRows:
    """COPY every sheet's rows (with the file's lineage) and rejected rows, in the caller's transaction.

    ``sheets`` may be batches as a reader yields them (several per sheet): each is COPYed as it comes, so
    PostgreSQL parses one batch while the next is read, and only one batch is held at a time.
    """
    staged = sql.Identifier("staged_transactions")
    rows_rejected = 0
    fingerprint = Fingerprint()
    names: dict[str | None, None] = {}
    sample: dict[str | None, list[pl.DataFrame]] = {}
    with _cursor(conn) as cur:
        cur.execute(
            sql.SQL(
                "create temporary table {} on commit drop as select {} from bronze.retail_transactions with no data"
            ).format(staged, sql.SQL(", ").join(map(sql.Identifier, STAGED_COLUMNS)))
        )
        copied = rejected = 0
        for sheet in sheets:
            names[sheet.name] = None
            fingerprint.add(sheet.rows)
            with_sheet = pl.lit(sheet.name, dtype=pl.String).alias("source_sheet")
            _copy_frame(cur, staged, STAGED_COLUMNS, sheet.rows.with_columns(with_sheet))
            copied, rejected = copied + sheet.rows.height, rejected + sheet.rejected.height
            # One line per batch: a long load's task log (and make demo) shows it moving.
            log.info(
                "%s: COPY %s rows so far (%s rejected), sheet %s",
                source.key,
                f"{copied:,}",
                f"{rejected:,}",
                sheet.name,
            )
            if sheet.rejected.height:
                _copy_frame(
                    cur,
                    sql.SQL("bronze.rejected_rows"),
                    ("batch_id", "source_key", *REJECTED_COLUMNS),
                    sheet.rejected.with_columns(
                        with_sheet, pl.lit(batch_id).alias("batch_id"), pl.lit(source.key).alias("source_key")
                    ),
                )
                kept = sum(frame.height for frame in sample.get(sheet.name, []))
                if kept < REPORT_SAMPLE_ROWS:
                    sample.setdefault(sheet.name, []).append(sheet.rejected.head(REPORT_SAMPLE_ROWS - kept))
            rows_rejected += sheet.rejected.height

        source_columns = sql.SQL(", ").join(map(sql.Identifier, STAGED_COLUMNS))
        cur.execute(
            sql.SQL(
                """
                insert into bronze.retail_transactions ({}, source_key, source_version, batch_id)
                select {}, %s, %s, %s from {}
                """
            ).format(source_columns, source_columns, staged),
            (source.key, source.sha256, batch_id),
        )
        rows_loaded = cur.rowcount
        return CopiedRows(
            rows_loaded,
            rows_rejected,
            _rows_overlapping(cur, staged, source.key),
            fingerprint=fingerprint.value,
            sheets=tuple(names),
            rejected_sample=tuple(
                TypedSheet(name, rows=pl.DataFrame(), rejected=pl.concat(frames)) for name, frames in sample.items()
            ),
        )
