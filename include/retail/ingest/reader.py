"""Read a workbook (.xlsx, every sheet) or a CSV into text columns named by the contract.

Every cell is read as text so that nothing is guessed: fastexcel (Rust calamine) would otherwise type
a column by its first rows, and the ``C…`` cancellation invoices of a numeric-looking InvoiceNo
column would become nulls. Typing is the contract's job (``contract.type_rows``).

fastexcel reads the 541,909-row workbook in about 4 s here, against about 46 s for pandas with openpyxl. This
module picks the reader by the file's type (``xlsx_reader``, ``csv_reader``); the sheets they make are ``sheets``'.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

from include.retail.ingest import contract
from include.retail.ingest.csv_reader import csv_batches, read_csv
from include.retail.ingest.sheets import BATCH_ROWS, BatchedSource, Sheet, SheetBatch, SourceContents
from include.retail.ingest.value_rules import DateEvidence, DateOrder, writes_slash_dates
from include.retail.ingest.workbook_limits import WorkbookLayout
from include.retail.ingest.xlsx_reader import read_workbook, workbook_batches

SUPPORTED_SUFFIXES = (".xlsx", ".csv")


def read_source(
    path: Path, source_name: str, layout: WorkbookLayout | None = None, declared_date_order: DateOrder | None = None
) -> SourceContents:
    """Read ``path``; ``source_name`` (the S3 key) names the file in every error.

    ``layout`` (from ``workbook_limits.check_file``) says on which row each sheet's cells start, so that
    row numbers are the sheet's own; without it a sheet is taken to start on row 1. The order of dates written
    with slashes is the ``declared_date_order``, else the one the whole file's own dates settle. What a reader finds
    of single rows (formulas without results, CSV lines cut short) is the batched read's (``iter_batches``), which
    ingest uses.
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
    dated = [sheet for sheet in contents.sheets if writes_slash_dates(sheet.raw["invoice_date"])]
    if not dated:
        return dataclasses.replace(contents, date_order=declared_date_order)
    evidence = DateEvidence()
    for sheet in dated:
        evidence = evidence.with_dates(sheet.raw["invoice_date"], sheet.raw["source_row"], sheet.name)
    heading = dated[0].written_as["invoice_date"]
    order = contract.settle_date_order(evidence, declared_date_order, source_name, heading)
    return dataclasses.replace(contents, date_order=order)


def iter_batches(
    path: Path,
    source_name: str,
    layout: WorkbookLayout | None = None,
    batch_rows: int = BATCH_ROWS,
    declared_date_order: DateOrder | None = None,
) -> tuple[BatchedSource, Iterator[SheetBatch]]:
    """Read ``path`` as ``read_source`` does, but in batches of about ``batch_rows`` rows, so that memory follows
    the batch, not the file. Returns what is learnt of the file (filled in as the batches are read) and the batches.

    A workbook's sheet is cut at row ends into small workbooks that calamine reads one at a time (the header row
    copied into each, so that every batch is typed as the whole sheet would be); a sheet laid out otherwise than
    writers lay them out (cells without their reference, rows out of order, a header not in column A) is read whole.
    Raises contract.FileRejected as ``read_source`` does, from the batch where the breach is found.

    ``found.date_order`` is settled before the first batch holding a date written with slashes is handed out: the
    ``declared_date_order``, else by the evidence of the whole file (a CSV's date column is read ahead for it), or,
    in a workbook, of its rows read so far: text dates in a workbook are rare (Excel stores dates as numbers, read
    as ISO text), and reading it twice would double its cost. So a workbook whose first ~50,000 rows with such
    dates all read both ways is rejected even if later rows would settle it, and one whose later rows contradict
    the order settled is rejected from that batch (its load rolled back): never guessed.
    """
    suffix = Path(source_name).suffix.lower()
    found = BatchedSource(ignored_sheets=[], date_order=declared_date_order)
    if suffix == ".xlsx":
        batches = workbook_batches(path, source_name, layout or WorkbookLayout(), batch_rows, found)
    elif suffix == ".csv":
        batches = csv_batches(path, source_name, batch_rows, found, date_evidence=declared_date_order is None)
    else:
        read_source(path, source_name)  # raises the unsupported file type
        raise AssertionError("unreachable")

    read_so_far = DateEvidence()

    def settle_date_order(sheet: Sheet) -> DateOrder | None:
        nonlocal read_so_far
        heading = sheet.written_as["invoice_date"]
        if suffix == ".csv":  # the whole file's evidence, gathered at its first date written with slashes
            if found.date_evidence is None or found.date_order is not None:
                return found.date_order
            return contract.settle_date_order(found.date_evidence, None, source_name, heading)
        if not writes_slash_dates(sheet.raw["invoice_date"]):
            return found.date_order
        read_so_far = read_so_far.with_dates(sheet.raw["invoice_date"], sheet.raw["source_row"], sheet.name)
        judged_on = f"the file up to sheet {sheet.name!r} row {sheet.raw['source_row'][-1]} (the rows read so far)"
        return contract.settle_date_order(read_so_far, None, source_name, heading, judged_on)

    def counted() -> Iterator[SheetBatch]:
        for batch in batches:
            found.row_count += batch.sheet.raw.height
            if declared_date_order is None:
                found.date_order = settle_date_order(batch.sheet)
            yield batch
        if found.row_count == 0:
            raise contract.FileRejected(source_name, "the file has a header but no data rows")

    return found, counted()
