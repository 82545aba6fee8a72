"""Load a file's typed rows into bronze and its ledger row (``include.retail.ingest.ledger``) in one transaction.

Rows go straight into ``bronze.retail_transactions`` with COPY, batch by batch as the reader yields them, so
PostgreSQL writes one batch while the next is read. The file's lineage is not in the COPY stream: the load sets
it for its transaction and the columns' defaults take it (``include/sql/010_bronze.sql``). That is cheaper than
COPYing the lineage text on every row, and than staging the rows in a temporary table and copying them again.

``copy_into_bronze`` commits nothing: ``load_into_bronze``'s transaction holds the rows and the ledger row
together, so a file is in bronze whole or not at all.
"""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import polars as pl
import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from include.retail.ingest import ledger
from include.retail.ingest.contract import COLUMNS, REPORT_SAMPLE_ROWS, FileRejected, TypedSheet, check_rejected_count
from include.retail.ingest.ledger import LoadResult, SourceFile, Status
from include.retail.ingest.sandboxed_read import TypedSource

log = logging.getLogger(__name__)

# The columns a load COPYs: the contract's, plus where in the file the row came from (the lineage of the file
# itself comes from the columns' defaults).
COPIED_COLUMNS = (*COLUMNS, "source_sheet", "source_row")
REJECTED_COLUMNS = ("source_sheet", "source_row", "reason", "raw_values")

_TRANSACTIONS = sql.SQL("bronze.retail_transactions")
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


def _rows_overlapping(cur: psycopg.Cursor, batch_id: str, key: str, days: tuple[object, object]) -> int:
    """How many of this load's rows are identical (the eight source columns) to a row of another current file.

    Only rows of other current files within this load's days are read (BRIN on invoice_date), and when no other
    current file has a row on those days (a new month's first file) nothing is joined at all.
    """
    first, last = days
    if first is None:
        return 0
    others_on_those_days = sql.SQL(
        f"""
        from bronze.retail_transactions as other
        inner join bronze.load_ledger as other_load
            on other.batch_id = other_load.batch_id
        where
            other.invoice_date between %(first)s and %(last)s
            and other.source_key <> %(key)s
            and other_load.status = '{Status.LOADED}'
            and other_load.superseded_by is null
        """
    )
    bounds = {"first": first, "last": last, "key": key, "batch_id": batch_id}
    cur.execute(sql.SQL("select exists (select 1 {})").format(others_on_those_days), bounds)
    if not cur.fetchone()[0]:
        return 0
    # This load's rows are not in the table's statistics yet: the planner would take them for a few rows and
    # probe the other files once per row. A hash semi-join reads each side once. The reset is not in a
    # `finally`: after an error it would fail in the aborted transaction and hide the error (and the setting
    # ends with the transaction anyway).
    cur.execute("set local enable_nestloop = off")
    cur.execute(
        sql.SQL(
            """
            select count(*) from bronze.retail_transactions as new_row
            where
                new_row.batch_id = %(batch_id)s
                and exists (
                    select 1 {}
                        and other.invoice_date = new_row.invoice_date
                        and (other.invoice_no, other.stock_code, other.description, other.quantity,
                             other.unit_price, other.customer_id, other.country)
                            is not distinct from
                            (new_row.invoice_no, new_row.stock_code, new_row.description, new_row.quantity,
                             new_row.unit_price, new_row.customer_id, new_row.country)
                )
            """
        ).format(others_on_those_days),
        bounds,
    )
    (overlapping,) = cur.fetchone()
    cur.execute("reset enable_nestloop")
    return overlapping


def copy_into_bronze(
    conn: psycopg.Connection, source: SourceFile, sheets: Iterable[TypedSheet], batch_id: str
) -> CopiedRows:
    """COPY every sheet's rows (with the file's lineage) and rejected rows, in the caller's transaction.

    ``sheets`` may be batches as a reader yields them (several per sheet): each is COPYed as it comes, so
    PostgreSQL writes one batch while the next is read, and only one batch is held at a time.
    """
    rows_loaded = rows_rejected = 0
    fingerprint = Fingerprint()
    day_bounds: list[object] = []  # each batch's first and last invoice date (None for a batch without one)
    names: dict[str | None, None] = {}
    sample: dict[str | None, list[pl.DataFrame]] = {}
    with _cursor(conn) as cur:
        # Local to the load's transaction: the lineage columns' defaults (include/sql/010_bronze.sql).
        cur.execute(
            """
            select
                set_config('retail.load_source_key', %s, true),
                set_config('retail.load_source_version', %s, true),
                set_config('retail.load_batch_id', %s, true)
            """,
            (source.key, source.sha256, batch_id),
        )
        for sheet in sheets:
            names[sheet.name] = None
            fingerprint.add(sheet.rows)
            day_bounds += [sheet.rows["invoice_date"].min(), sheet.rows["invoice_date"].max()]
            with_sheet = pl.lit(sheet.name, dtype=pl.String).alias("source_sheet")
            _copy_frame(cur, _TRANSACTIONS, COPIED_COLUMNS, sheet.rows.with_columns(with_sheet))
            rows_loaded, rows_rejected = rows_loaded + sheet.rows.height, rows_rejected + sheet.rejected.height
            # One line per batch: a long load's task log (and make demo) shows it moving.
            log.info(
                "%s: COPY %s rows so far (%s rejected), sheet %s",
                source.key,
                f"{rows_loaded:,}",
                f"{rows_rejected:,}",
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

        days = [day for day in day_bounds if day is not None]
        return CopiedRows(
            rows_loaded,
            rows_rejected,
            _rows_overlapping(cur, batch_id, source.key, (min(days), max(days)) if days else (None, None)),
            fingerprint=fingerprint.value,
            sheets=tuple(names),
            rejected_sample=tuple(
                TypedSheet(name, rows=pl.DataFrame(), rejected=pl.concat(frames)) for name, frames in sample.items()
            ),
        )


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
