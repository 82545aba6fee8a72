"""Read a workbook (.xlsx, every sheet) or a CSV into text columns named by the contract.

Every cell is read as text so that nothing is guessed: fastexcel (Rust calamine) would otherwise type
a column by its first rows, and the ``C…`` cancellation invoices of a numeric-looking InvoiceNo
column would become nulls. Typing is the contract's job (``contract.type_rows``).

fastexcel reads the 541,909-row workbook in about 4 s here, against about 46 s for pandas with openpyxl.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import fastexcel
import polars as pl

from include.retail.contract import COLUMNS, FileRejected, match_header

SUPPORTED_SUFFIXES = (".xlsx", ".csv")

# Tried in order; ISO-8859-1 decodes any byte, so it is the last resort. cp1252 comes before it
# because Windows exports write "€" and curly quotes where ISO-8859-1 has control characters.
CSV_ENCODINGS = ("utf-8", "cp1252", "iso-8859-1")
CSV_SEPARATORS = (",", ";", "\t", "|")


@dataclass(frozen=True)
class Sheet:
    """One sheet (or the CSV) that meets the contract, as text columns named as in bronze."""

    name: str | None  # None for a CSV
    raw: pl.DataFrame  # COLUMNS as text, plus source_row (the header is row 1)
    written_as: dict[str, str]  # bronze column -> header as the file writes it


@dataclass(frozen=True)
class SourceContents:
    sheets: list[Sheet]
    ignored_sheets: list[str]  # sheets with no contract column at all, e.g. notes
    encoding: str | None  # of a CSV

    @property
    def row_count(self) -> int:
        return sum(sheet.raw.height for sheet in self.sheets)


def read_source(path: Path, source_name: str) -> SourceContents:
    """Read ``path``; ``source_name`` (the S3 key) names the file in every error."""
    suffix = Path(source_name).suffix.lower()
    if suffix == ".xlsx":
        contents = _read_workbook(path, source_name)
    elif suffix == ".csv":
        contents = _read_csv(path, source_name)
    else:
        raise FileRejected(
            source_name,
            f"unsupported file type {suffix or '(none)'!r}: expected one of {', '.join(SUPPORTED_SUFFIXES)}",
        )
    if contents.row_count == 0:
        raise FileRejected(source_name, "the file has a header but no data rows")
    return contents


def _read_workbook(path: Path, source_name: str) -> SourceContents:
    try:
        workbook = fastexcel.read_excel(path)
        grids = {
            name: workbook.load_sheet(name, header_row=None, dtypes="string").to_polars()
            for name in workbook.sheet_names
        }
    except Exception as error:  # calamine raises several types for a damaged or foreign file
        raise FileRejected(source_name, f"not a readable .xlsx workbook ({error})") from error
    sheets, ignored = [], []
    for name, grid in grids.items():
        sheet = _sheet_from_grid(grid, name, source_name)
        if sheet is None:
            ignored.append(name)
        else:
            sheets.append(sheet)
    if not sheets:
        raise FileRejected(
            source_name,
            f"no sheet has the contract's columns ({', '.join(COLUMNS)}); sheets: {', '.join(grids) or 'none'}",
        )
    return SourceContents(sheets=sheets, ignored_sheets=ignored, encoding=None)


def _read_csv(path: Path, source_name: str) -> SourceContents:
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for encoding in CSV_ENCODINGS:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        break
    if encoding != "utf-8":
        data = text.encode("utf-8")
    first_line = text[: text.find("\n")] if "\n" in text else text
    separator = max(CSV_SEPARATORS, key=first_line.count)
    try:
        grid = pl.read_csv(io.BytesIO(data), has_header=False, infer_schema=False, separator=separator, quote_char='"')
    except pl.exceptions.PolarsError as error:
        raise FileRejected(source_name, f"not a well-formed CSV file ({error})") from error
    sheet = _sheet_from_grid(grid, None, source_name)
    if sheet is None:
        header = next(csv.reader([first_line], delimiter=separator), [])
        raise FileRejected(
            source_name, f"the header has none of the contract's columns ({', '.join(COLUMNS)}); it reads {header}"
        )
    return SourceContents(sheets=[sheet], ignored_sheets=[], encoding=encoding)


def _sheet_from_grid(grid: pl.DataFrame, sheet_name: str | None, source_name: str) -> Sheet | None:
    """Take the first row as the header; None when the sheet holds no contract column at all."""
    if grid.height == 0:
        return None
    header = list(grid.row(0))
    match = match_header(header)
    if not match.is_data_sheet:
        return None
    if not match.meets_contract:
        where = f"sheet {sheet_name!r}" if sheet_name is not None else "header"
        raise FileRejected(source_name, f"{where}: {match.problem()}; the header reads {header}")
    raw = (
        grid.select(pl.col(grid.columns[match.columns[column]]).alias(column) for column in COLUMNS)
        .with_row_index("source_row", offset=1)
        .slice(1)
        .with_columns(pl.col("source_row").cast(pl.Int32))
        # A wholly blank line is layout, not a source row; the numbering of the others is kept.
        .filter(~pl.all_horizontal(pl.col(column).is_null() for column in COLUMNS))
    )
    return Sheet(name=sheet_name, raw=raw, written_as=match.written_as)
