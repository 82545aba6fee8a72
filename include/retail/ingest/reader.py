"""Read a workbook (.xlsx, every sheet) or a CSV into text columns named by the contract.

Every cell is read as text so that nothing is guessed: fastexcel (Rust calamine) would otherwise type
a column by its first rows, and the ``C…`` cancellation invoices of a numeric-looking InvoiceNo
column would become nulls. Typing is the contract's job (``contract.type_rows``).

fastexcel reads the 541,909-row workbook in about 4 s here, against about 46 s for pandas with openpyxl. This
module picks the reader by the file's type (``xlsx_reader``, ``csv_reader``); the sheets they make are ``sheets``'.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from include.retail.ingest import contract
from include.retail.ingest.csv_reader import csv_batches, read_csv
from include.retail.ingest.sheets import BATCH_ROWS, BatchedSource, SheetBatch, SourceContents
from include.retail.ingest.workbook_limits import WorkbookLayout
from include.retail.ingest.xlsx_reader import read_workbook, workbook_batches

SUPPORTED_SUFFIXES = (".xlsx", ".csv")


def read_source(path: Path, source_name: str, layout: WorkbookLayout | None = None) -> SourceContents:
    """Read ``path``; ``source_name`` (the S3 key) names the file in every error.

    ``layout`` (from ``workbook_limits.check_file``) says on which row each sheet's cells start, so that
    row numbers are the sheet's own; without it a sheet is taken to start on row 1.
    """
    suffix = Path(source_name).suffix.lower()
    if suffix == ".xlsx":
        contents = read_workbook(path, source_name, layout or WorkbookLayout())
    elif suffix == ".csv":
        contents = read_csv(path, source_name)
    else:
        raise contract.FileRejected(
            source_name,
            f"unsupported file type {suffix or '(none)'!r}: expected one of {', '.join(SUPPORTED_SUFFIXES)}",
        )
    if contents.row_count == 0:
        raise contract.FileRejected(source_name, "the file has a header but no data rows")
    return contents


def iter_batches(
    path: Path, source_name: str, layout: WorkbookLayout | None = None, batch_rows: int = BATCH_ROWS
) -> tuple[BatchedSource, Iterator[SheetBatch]]:
    """Read ``path`` as ``read_source`` does, but in batches of about ``batch_rows`` rows, so that memory follows
    the batch, not the file. Returns what is learnt of the file (filled in as the batches are read) and the batches.

    A workbook's sheet is cut at row ends into small workbooks that calamine reads one at a time (the header row
    copied into each, so that every batch is typed as the whole sheet would be); a sheet laid out otherwise than
    writers lay them out (cells without their reference, rows out of order, a header not in column A) is read whole.
    Raises contract.FileRejected as ``read_source`` does, from the batch where the breach is found.
    """
    suffix = Path(source_name).suffix.lower()
    found = BatchedSource(ignored_sheets=[])
    if suffix == ".xlsx":
        batches = workbook_batches(path, source_name, layout or WorkbookLayout(), batch_rows, found)
    elif suffix == ".csv":
        batches = csv_batches(path, source_name, batch_rows, found)
    else:
        read_source(path, source_name)  # raises the unsupported file type
        raise AssertionError("unreachable")

    def counted() -> Iterator[SheetBatch]:
        for batch in batches:
            found.row_count += batch.sheet.raw.height
            yield batch
        if found.row_count == 0:
            raise contract.FileRejected(source_name, "the file has a header but no data rows")

    return found, counted()
