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

from include.retail import contract
from include.retail.contract import COLUMNS, HEADINGS, MAX_CELL_CHARACTERS, match_header
from include.retail.workbook_limits import WorkbookLayout, without_paths

SUPPORTED_SUFFIXES = (".xlsx", ".csv")

# Tried in order; ISO-8859-1 decodes any byte, so it is the last resort. cp1252 comes before it
# because Windows exports write "€" and curly quotes where ISO-8859-1 has control characters.
CSV_ENCODINGS = ("utf-8", "cp1252", "iso-8859-1")
CSV_SEPARATORS = (",", ";", "\t", "|")
# Byte-order marks, longest first (UTF-32's starts like UTF-16's).
CSV_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
# A text with this share of NUL bytes is UTF-16 (or UTF-32) without a byte-order mark, not 8-bit text.
_WIDE_TEXT_NUL_SHARE = 0.1
_CONTRACT_HEADINGS = ", ".join(HEADINGS.values())


@dataclass(frozen=True)
class Sheet:
    """One sheet (or the CSV) that meets the contract, as text columns named as in bronze."""

    name: str | None  # None for a CSV
    raw: pl.DataFrame  # COLUMNS as text, plus source_row (the header is row 1)
    written_as: dict[str, str]  # bronze column -> header as the file writes it
    positions: dict[str, int]  # bronze column -> position in the sheet's grid (0: its first column)


@dataclass(frozen=True)
class SourceContents:
    sheets: list[Sheet]
    ignored_sheets: list[str]  # sheets with no contract column at all, e.g. notes
    encoding: str | None  # of a CSV

    @property
    def row_count(self) -> int:
        return sum(sheet.raw.height for sheet in self.sheets)


def read_source(path: Path, source_name: str, layout: WorkbookLayout | None = None) -> SourceContents:
    """Read ``path``; ``source_name`` (the S3 key) names the file in every error.

    ``layout`` (from ``workbook_limits.check_file``) says on which row each sheet's cells start, so that
    row numbers are the sheet's own; without it a sheet is taken to start on row 1.
    """
    suffix = Path(source_name).suffix.lower()
    if suffix == ".xlsx":
        contents = _read_workbook(path, source_name, layout or WorkbookLayout())
    elif suffix == ".csv":
        contents = _read_csv(path, source_name)
    else:
        raise contract.FileRejected(
            source_name,
            f"unsupported file type {suffix or '(none)'!r}: expected one of {', '.join(SUPPORTED_SUFFIXES)}",
        )
    if contents.row_count == 0:
        raise contract.FileRejected(source_name, "the file has a header but no data rows")
    return contents


def _read_workbook(path: Path, source_name: str, layout: WorkbookLayout) -> SourceContents:
    try:
        workbook = fastexcel.read_excel(path)
        grids = {
            name: workbook.load_sheet(name, header_row=None, dtypes="string").to_polars()
            for name in workbook.sheet_names
        }
    except Exception as error:  # calamine raises several types for a damaged or foreign file
        reason = f"truncated or not an .xlsx workbook ({without_paths(error)})"
        raise contract.FileRejected(source_name, reason) from error
    sheets, ignored, first_rows = [], [], {}
    for name, grid in grids.items():
        part = layout.sheets.get(name)
        first_rows[name] = part.first_row if part else 1
        sheet = _sheet_from_grid(grid, name, source_name, first_rows[name])
        if sheet is None:
            ignored.append(name)
        else:
            sheets.append(sheet)
    if not sheets:
        held = "; ".join(
            f"sheet {name!r} row {first_rows[name]} holds {_shown(grid)}" if grid.height else f"sheet {name!r} is empty"
            for name, grid in grids.items()
        )
        raise contract.FileRejected(
            source_name,
            f"no sheet has a header with the contract's columns ({_CONTRACT_HEADINGS}) on its first row; "
            f"{held or 'the workbook has no sheets'}",
        )
    return SourceContents(sheets=sheets, ignored_sheets=ignored, encoding=None)


def _decode(data: bytes, source_name: str) -> tuple[str, str]:
    """The text and its encoding: by byte-order mark, else the first of CSV_ENCODINGS that decodes."""
    for bom, encoding in CSV_BOMS:
        if data.startswith(bom):
            if encoding == "utf-32":
                raise contract.FileRejected(
                    source_name, "the CSV is encoded as UTF-32, which is not read: save it as CSV UTF-8"
                )
            try:
                return data[len(bom) :].decode(f"{encoding}-le" if bom == b"\xff\xfe" else encoding), encoding
            except UnicodeDecodeError as error:
                raise contract.FileRejected(
                    source_name, f"the CSV starts as {encoding.upper()} but does not decode as it ({error.reason})"
                ) from error
    head = data[:4096]
    if head.count(0) > _WIDE_TEXT_NUL_SHARE * len(head):
        raise contract.FileRejected(
            source_name,
            "the CSV looks like UTF-16 without a byte-order mark, which cannot be told apart from other "
            "encodings: save it as CSV UTF-8, or as Unicode text with its byte-order mark",
        )
    for encoding in CSV_ENCODINGS:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise AssertionError("unreachable: ISO-8859-1 decodes any byte")


def _read_csv(path: Path, source_name: str) -> SourceContents:
    data = path.read_bytes()
    text, encoding = _decode(data, source_name)
    if encoding != "utf-8" or data.startswith(b"\xef\xbb\xbf"):
        data = text.encode("utf-8")
    first_line = text[: text.find("\n")] if "\n" in text else text
    separator = max(CSV_SEPARATORS, key=first_line.count)
    try:
        grid = pl.read_csv(io.BytesIO(data), has_header=False, infer_schema=False, separator=separator, quote_char='"')
    except pl.exceptions.PolarsError as error:
        raise contract.FileRejected(source_name, f"not a well-formed CSV file ({without_paths(error)})") from error
    sheet = _sheet_from_grid(grid, None, source_name, 1)
    if sheet is None:
        header = next(csv.reader([first_line.rstrip("\r")], delimiter=separator), [])
        raise contract.FileRejected(
            source_name,
            f"row 1 is read as the header but has none of the contract's columns ({_CONTRACT_HEADINGS}); "
            f"it holds {header}",
        )
    return SourceContents(sheets=[sheet], ignored_sheets=[], encoding=encoding)


def _shown(grid: pl.DataFrame, cells: int = 10) -> list[object]:
    """The first row's first cells, as a message shows them."""
    row = list(grid.row(0))
    while row and row[-1] is None:  # the blank cells a wider row below adds
        row.pop()
    return [value if value is None or len(value) <= 40 else value[:40] + "…" for value in row[:cells]]


def _sheet_from_grid(grid: pl.DataFrame, sheet_name: str | None, source_name: str, first_row: int) -> Sheet | None:
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
            source_name, f"{where}: {match.problem()}; the header (row {first_row}) reads {_shown(grid, 40)}"
        )
    raw = (
        grid.select(pl.col(grid.columns[match.columns[column]]).alias(column) for column in COLUMNS)
        .with_row_index("source_row", offset=first_row)
        .slice(1)
        .with_columns(pl.col("source_row").cast(pl.Int32))
        # A wholly blank line is layout, not a source row; the numbering of the others is kept.
        .filter(~pl.all_horizontal(pl.col(column).is_null() for column in COLUMNS))
    )
    _check_cell_lengths(raw, sheet_name, source_name, match.written_as)
    return Sheet(name=sheet_name, raw=raw, written_as=match.written_as, positions=match.columns)


def _check_cell_lengths(
    raw: pl.DataFrame, sheet_name: str | None, source_name: str, written_as: dict[str, str]
) -> None:
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
