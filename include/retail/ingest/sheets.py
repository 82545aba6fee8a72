"""What a reader makes of a file: the sheets that meet the contract as text columns, in batches or whole, and the
checks every reader makes of a sheet's header and cells (``csv_reader``, ``xlsx_reader``)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from include.retail.ingest import contract
from include.retail.ingest.contract import COLUMNS, HEADINGS, MAX_CELL_CHARACTERS, match_header
from include.retail.ingest.value_rules import DateEvidence, DateOrder

CONTRACT_HEADINGS = ", ".join(HEADINGS.values())


# Rows a batch of a workbook holds, about: ~15 MB of sheet XML, ~40 MB to read and type.
BATCH_ROWS = 50_000


@dataclass(frozen=True)
class Sheet:
    """One sheet (or the CSV) that meets the contract, as text columns named as in bronze."""

    name: str | None  # None for a CSV
    raw: pl.DataFrame  # COLUMNS as text, plus source_row (the header is row 1)
    written_as: dict[str, str]  # bronze column -> header as the file writes it
    positions: dict[str, int]  # bronze column -> position in the sheet's grid (0: its first column)


@dataclass(frozen=True)
class SheetBatch:
    """Consecutive rows of one sheet (or the CSV), read as ``read_source`` reads them, with the cells of formulas
    without a saved result among them (source row, column in the sheet's grid), and the rows the reader found
    broken (``row_faults``: source_row, reason; a CSV line shorter than its header), which typing rejects."""

    sheet: Sheet
    formulas: list[tuple[int, int]]
    row_faults: pl.DataFrame | None = None


@dataclass
class BatchedSource:
    """What ``iter_batches`` learns of the file as it reads; complete once its batches are exhausted, but for
    ``date_order``, settled before the first batch holding a date written with slashes is handed out."""

    ignored_sheets: list[str]
    encoding: str | None = None
    row_count: int = 0
    date_order: DateOrder | None = None  # how to read the file's dates written with slashes
    # The day/month evidence of the whole file, when the reader gathers it ahead (CSV); None: the batches read so far
    date_evidence: DateEvidence | None = None


@dataclass(frozen=True)
class SourceContents:
    sheets: list[Sheet]
    ignored_sheets: list[str]  # sheets with no contract column at all, e.g. notes
    encoding: str | None  # of a CSV
    date_order: DateOrder | None = None  # how to read its dates written with slashes (settled by read_source)

    @property
    def row_count(self) -> int:
        return sum(sheet.raw.height for sheet in self.sheets)


def shown(grid: pl.DataFrame, cells: int = 10) -> list[object]:
    """The first row's first cells, as a message shows them."""
    row = list(grid.row(0))
    while row and row[-1] is None:  # the blank cells a wider row below adds
        row.pop()
    return [value if value is None or len(value) <= 40 else value[:40] + "…" for value in row[:cells]]


def sheet_from_grid(grid: pl.DataFrame, sheet_name: str | None, source_name: str, first_row: int) -> Sheet | None:
    """Take the first row (the sheet's row ``first_row``) as the header; None when the sheet holds no
    contract column at all."""
    if grid.height == 0:
        return None
    header = list(grid.row(0))
    match = match_header(header)
    if not match.is_data_sheet:
        return None
    if not match.meets_contract:
        where = f"sheet {sheet_name!r}" if sheet_name is not None else "header"
        raise contract.FileRejected(
            source_name, f"{where}: {match.problem()}; the header (row {first_row}) reads {shown(grid, 40)}"
        )
    raw = raw_rows(grid, match.columns, first_row).slice(1)
    check_cell_lengths(raw, sheet_name, source_name, match.written_as)
    return Sheet(name=sheet_name, raw=raw, written_as=match.written_as, positions=match.columns)


def raw_rows(grid: pl.DataFrame, positions: dict[str, int], first_row: int) -> pl.DataFrame:
    """The contract's columns of ``grid`` (its first row is the sheet's row ``first_row``), numbered, blank lines
    left out."""
    return (
        grid.select(pl.col(grid.columns[positions[column]]).alias(column) for column in COLUMNS)
        .with_row_index("source_row", offset=first_row)
        .with_columns(pl.col("source_row").cast(pl.Int32))
        # A wholly blank line is layout, not a source row; the numbering of the others is kept.
        .filter(~pl.all_horizontal(pl.col(column).is_null() for column in COLUMNS))
    )


def check_cell_lengths(raw: pl.DataFrame, sheet_name: str | None, source_name: str, written_as: dict[str, str]) -> None:
    """No cell longer than Excel allows: such a value was not typed by a person, and bronze is no place for it."""
    for column in COLUMNS:
        if (raw[column].str.len_bytes().max() or 0) <= MAX_CELL_CHARACTERS:  # bytes >= characters: cheap first
            continue
        lengths = raw[column].str.len_chars()
        if (lengths.max() or 0) <= MAX_CELL_CHARACTERS:
            continue
        position = int((lengths > MAX_CELL_CHARACTERS).arg_true()[0])
        where = f"sheet {sheet_name!r} " if sheet_name is not None else ""
        raise contract.FileRejected(
            source_name,
            f"{where}row {raw['source_row'][position]}: {written_as[column]} holds {lengths[position]:,} characters, "
            f"more than the {MAX_CELL_CHARACTERS:,} a cell may hold",
        )
