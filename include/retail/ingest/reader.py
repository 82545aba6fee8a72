"""Read a workbook (.xlsx, every sheet) or a CSV into text columns named by the contract.

Every cell is read as text so that nothing is guessed: fastexcel (Rust calamine) would otherwise type
a column by its first rows, and the ``C…`` cancellation invoices of a numeric-looking InvoiceNo
column would become nulls. Typing is the contract's job (``contract.type_rows``).

fastexcel reads the 541,909-row workbook in about 4 s here, against about 46 s for pandas with openpyxl.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fastexcel
import polars as pl

from include.retail.ingest import contract
from include.retail.ingest.contract import COLUMNS, HEADINGS, MAX_CELL_CHARACTERS, match_header
from include.retail.ingest.workbook_limits import SheetPart, WorkbookLayout, formulas_without_result, without_paths

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

# Rows a batch of a workbook holds, about: ~15 MB of sheet XML, ~40 MB to read and type.
BATCH_ROWS = 50_000
_XML_BLOCK = 4 << 20
_CSV_BLOCK = 1 << 20
_SHEET_DATA = b"<sheetData>"
_ROW_END = b"</row>"
_SHEET_END = b"</sheetData></worksheet>"
_DIMENSION_ELEMENT = re.compile(rb"<dimension\b[^>]*/>")
_FIRST_REFERENCE = re.compile(rb'<c r="[A-Z]{1,3}(\d{1,7})"')
_REFERENCE_ROW = re.compile(rb'(<c r="[A-Z]{1,3})\d{1,7}"')
_EMPTY_SHEET = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData/></worksheet>'
)


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
    without a saved result among them (source row, column in the sheet's grid)."""

    sheet: Sheet
    formulas: list[tuple[int, int]]


@dataclass
class BatchedSource:
    """What ``iter_batches`` learns of the file as it reads; complete once its batches are exhausted."""

    ignored_sheets: list[str]
    encoding: str | None = None
    row_count: int = 0


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
        raise _no_contract_sheet(source_name, grids, first_rows)
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
                raise _undecodable_after_bom(source_name, encoding, error) from error
    _refuse_wide_text_without_bom(data[:4096], source_name)
    for encoding in CSV_ENCODINGS:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise AssertionError("unreachable: ISO-8859-1 decodes any byte")


def _undecodable_after_bom(source_name: str, encoding: str, error: UnicodeDecodeError) -> contract.FileRejected:
    return contract.FileRejected(
        source_name, f"the CSV starts as {encoding.upper()} but does not decode as it ({error.reason})"
    )


def _refuse_wide_text_without_bom(head: bytes, source_name: str) -> None:
    """Many NUL bytes in the first 4 KB: UTF-16 with no byte-order mark, which no decoding order can tell."""
    if head.count(0) > _WIDE_TEXT_NUL_SHARE * len(head):
        raise contract.FileRejected(
            source_name,
            "the CSV looks like UTF-16 without a byte-order mark, which cannot be told apart from other "
            "encodings: save it as CSV UTF-8, or as Unicode text with its byte-order mark",
        )


def _read_csv(path: Path, source_name: str) -> SourceContents:
    data = path.read_bytes()
    text, encoding = _decode(data, source_name)
    if encoding != "utf-8" or data.startswith(b"\xef\xbb\xbf"):
        data = text.encode("utf-8")
    _, _, sheet = _csv_sheet(data, text, source_name)
    return SourceContents(sheets=[sheet], ignored_sheets=[], encoding=encoding)


def _csv_sheet(data: bytes, text: str, source_name: str) -> tuple[str, pl.DataFrame, Sheet]:
    """Parse the CSV's first (or only) piece, UTF-8 ``data`` decoded as ``text``, with the separator its first line
    uses most: the separator, the grid of cells and the sheet it makes. Rejected, saying what row 1 holds, when
    row 1 is not the contract's header."""
    first_line = text[: text.find("\n")] if "\n" in text else text
    separator = max(CSV_SEPARATORS, key=first_line.count)
    grid = _parse_csv(data, separator, source_name)
    sheet = _sheet_from_grid(grid, None, source_name, 1)
    if sheet is None:
        header = next(csv.reader([first_line.rstrip("\r")], delimiter=separator), [])
        raise contract.FileRejected(
            source_name,
            f"row 1 is read as the header but has none of the contract's columns ({_CONTRACT_HEADINGS}); "
            f"it holds {header}",
        )
    return separator, grid, sheet


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
    raw = _raw_rows(grid, match.columns, first_row).slice(1)
    _check_cell_lengths(raw, sheet_name, source_name, match.written_as)
    return Sheet(name=sheet_name, raw=raw, written_as=match.written_as, positions=match.columns)


def _raw_rows(grid: pl.DataFrame, positions: dict[str, int], first_row: int) -> pl.DataFrame:
    """The contract's columns of ``grid`` (its first row is the sheet's row ``first_row``), numbered, blank lines
    left out."""
    return (
        grid.select(pl.col(grid.columns[positions[column]]).alias(column) for column in COLUMNS)
        .with_row_index("source_row", offset=first_row)
        .with_columns(pl.col("source_row").cast(pl.Int32))
        # A wholly blank line is layout, not a source row; the numbering of the others is kept.
        .filter(~pl.all_horizontal(pl.col(column).is_null() for column in COLUMNS))
    )


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


class _NotStreamable(Exception):
    """The sheet's XML is not laid out as the batched read needs: read it whole instead."""


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
        batches = _workbook_batches(path, source_name, layout or WorkbookLayout(), batch_rows, found)
    elif suffix == ".csv":
        batches = _csv_batches(path, source_name, batch_rows, found)
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


def _csv_batches(path: Path, source_name: str, batch_rows: int, found: BatchedSource) -> Iterator[SheetBatch]:
    """The CSV as ``_read_csv`` reads it, in pieces of whole records: the encoding is decided first (a pass that
    decodes and keeps nothing), then each piece is transcoded to UTF-8 and parsed with the first piece's columns,
    so memory follows the piece, not the file."""
    found.encoding, codec, skip = _csv_encoding(path, source_name)
    pieces = _csv_pieces(path, codec, skip, batch_rows)
    first = next(pieces, b"")
    text = first.decode("utf-8")
    separator, grid, sheet = _csv_sheet(first, text, source_name)
    schema = dict.fromkeys(grid.columns, pl.String)  # a later line with more fields breaks it, as in one read
    next_row = 1 + grid.height  # source_row numbers the parsed lines, header first, as _read_csv does
    del grid, first, text
    yield SheetBatch(sheet, [])
    for piece in pieces:
        grid = _parse_csv(piece, separator, source_name, schema)
        raw = _raw_rows(grid, sheet.positions, next_row)
        next_row += grid.height
        del grid
        _check_cell_lengths(raw, None, source_name, sheet.written_as)
        yield SheetBatch(Sheet(None, raw, sheet.written_as, sheet.positions), [])


def _parse_csv(
    data: bytes, separator: str, source_name: str, schema: dict[str, type[pl.String]] | None = None
) -> pl.DataFrame:
    try:
        return pl.read_csv(
            io.BytesIO(data), has_header=False, infer_schema=False, separator=separator, quote_char='"', schema=schema
        )
    except pl.exceptions.PolarsError as error:
        raise contract.FileRejected(source_name, f"not a well-formed CSV file ({without_paths(error)})") from error


def _csv_encoding(path: Path, source_name: str) -> tuple[str, str, int]:
    """(the encoding as ``_decode`` names it, the codec that decodes it, bytes of byte-order mark to skip),
    decided as ``_decode`` decides it but reading the file block by block."""
    with path.open("rb") as handle:
        head = handle.read(4096)
    for bom, encoding in CSV_BOMS:
        if head.startswith(bom):
            if encoding == "utf-32":
                raise contract.FileRejected(
                    source_name, "the CSV is encoded as UTF-32, which is not read: save it as CSV UTF-8"
                )
            codec = f"{encoding}-le" if bom == b"\xff\xfe" else encoding
            error = _decoding_error(path, codec, len(bom))
            if error is not None:
                raise _undecodable_after_bom(source_name, encoding, error) from error
            return encoding, codec, len(bom)
    _refuse_wide_text_without_bom(head, source_name)
    for encoding in CSV_ENCODINGS:
        if _decoding_error(path, encoding, 0) is None:
            return encoding, encoding, 0
    raise AssertionError("unreachable: ISO-8859-1 decodes any byte")


def _decoding_error(path: Path, codec: str, skip: int) -> UnicodeDecodeError | None:
    decoder = codecs.getincrementaldecoder(codec)()
    try:
        with path.open("rb") as handle:
            handle.seek(skip)
            while block := handle.read(_CSV_BLOCK):
                decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as error:
        return error
    return None


def _csv_pieces(path: Path, codec: str, skip: int, batch_rows: int) -> Iterator[bytes]:
    """The file as UTF-8, in pieces of whole records of about ``batch_rows`` lines each.

    A record ends at a line end outside quotes, every quote character toggling (as polars splits lines; an
    escaped quote toggles twice). A file whose quotes never close is one piece from there on, parsed (and
    rejected) as a whole read parses it.
    """
    decoder = None if codec == "utf-8" else codecs.getincrementaldecoder(codec)()
    size = min(_CSV_BLOCK, max(1024, batch_rows * 20))  # ~1/4 batch: a line of the real CSV export is ~90 bytes
    buffer = bytearray()  # appended to in place: a file whose quotes never close grows it without copies
    scanned = 0  # buffer[:scanned] is scanned: whether it ends inside quotes, its lines, its last record end
    inside, lines, cut = False, 0, 0
    with path.open("rb") as handle:
        handle.seek(skip)
        while True:
            block = handle.read(size)
            done = not block
            if decoder is not None:
                block = decoder.decode(block, final=done).encode("utf-8")
            buffer += block
            end = len(buffer)
            lines += buffer.count(b"\n", scanned, end)
            ends_inside = inside ^ (buffer.count(b'"', scanned, end) % 2 == 1)
            quoted, line_end = ends_inside, end
            while (line_end := buffer.rfind(b"\n", scanned, line_end)) >= 0:
                quoted ^= buffer.count(b'"', line_end, end) % 2 == 1
                end = line_end
                if not quoted:
                    cut = line_end + 1
                    break
            inside, scanned = ends_inside, len(buffer)
            if not done and (lines < batch_rows or not cut):
                continue
            if cut:
                yield bytes(buffer[:cut])
                del buffer[:cut]
                scanned, cut = scanned - cut, 0
                lines = buffer.count(b"\n")
            if done:
                if buffer:
                    yield bytes(buffer)
                return


def _workbook_batches(
    path: Path, source_name: str, layout: WorkbookLayout, batch_rows: int, found: BatchedSource
) -> Iterator[SheetBatch]:
    from include.retail.ingest.workbook_limits import unsaved_formulas

    try:
        workbook = fastexcel.read_excel(path)
        names = workbook.sheet_names
    except Exception as error:
        reason = f"truncated or not an .xlsx workbook ({without_paths(error)})"
        raise contract.FileRejected(source_name, reason) from error
    firsts: dict[str, pl.DataFrame] = {}  # sheet -> its grid's first row, for the message when no sheet is data
    first_rows: dict[str, int] = {}
    any_data = False
    for name in names:
        part = layout.sheets.get(name)
        first_rows[name] = part.first_row if part else 1
        firsts[name] = pl.DataFrame()
        try:
            if part is None:
                raise _NotStreamable
            batches = _sheet_batches(path, name, part, layout, source_name, batch_rows, firsts)
            first = next(batches, None)
        except _NotStreamable:
            try:
                grid = workbook.load_sheet(name, header_row=None, dtypes="string").to_polars()
            except Exception as error:
                reason = f"truncated or not an .xlsx workbook ({without_paths(error)})"
                raise contract.FileRejected(source_name, reason) from error
            firsts[name] = grid.head(1)
            sheet = _sheet_from_grid(grid, name, source_name, first_rows[name])
            del grid
            if sheet is None:
                found.ignored_sheets.append(name)
                continue
            any_data = True
            formulas = unsaved_formulas(path, part) if part else []
            for piece in sheet.raw.iter_slices(batch_rows):
                rows = set(piece["source_row"].to_list()) if formulas else set()
                yield SheetBatch(
                    Sheet(name, piece, sheet.written_as, sheet.positions),
                    [cell for cell in formulas if cell[0] in rows],
                )
            continue
        if first is None:
            found.ignored_sheets.append(name)
            continue
        any_data = True
        yield first
        yield from batches
    if not any_data:
        raise _no_contract_sheet(source_name, firsts, first_rows)


def _no_contract_sheet(source_name: str, grids: dict, first_rows: dict) -> contract.FileRejected:
    """The rejection of a workbook none of whose sheets has the contract's header, saying what each holds."""
    held = "; ".join(
        f"sheet {name!r} row {first_rows[name]} holds {_shown(grid)}" if grid.height else f"sheet {name!r} is empty"
        for name, grid in grids.items()
    )
    return contract.FileRejected(
        source_name,
        f"no sheet has a header with the contract's columns ({_CONTRACT_HEADINGS}) on its first row; "
        f"{held or 'the workbook has no sheets'}",
    )


def _row_pieces(archive: zipfile.ZipFile, part: SheetPart, batch_rows: int) -> Iterator[tuple[bytes, bytes]]:
    """(the XML before the rows, with no dimension; then pieces of whole rows, about ``batch_rows`` each)."""
    size = min(_XML_BLOCK, max(1024, batch_rows * 64))  # a row of the real workbook is ~290 bytes of XML
    with archive.open(part.xml) as handle:
        buffer = b""
        while _SHEET_DATA not in buffer:
            block = handle.read(size)
            if not block:
                raise _NotStreamable  # no <sheetData> (an empty sheet, a prefixed namespace): read it whole
            buffer += block
        start = buffer.index(_SHEET_DATA) + len(_SHEET_DATA)
        prefix, buffer = _DIMENSION_ELEMENT.sub(b"", buffer[:start]), buffer[start:]
        blocks, rows = [buffer], buffer.count(_ROW_END)  # joined once per batch: appending would copy it each time
        while True:
            block = handle.read(size)
            blocks.append(block)
            rows += block.count(_ROW_END)  # a row end split between blocks is counted in the next batch
            if block and rows < batch_rows:
                continue
            buffer = b"".join(blocks)
            cut = buffer.rfind(_ROW_END)
            if cut < 0:
                return
            cut += len(_ROW_END)
            yield prefix, buffer[:cut]
            blocks, rows = [buffer[cut:]], 0
            if not block:
                return


def _sheet_batches(
    path: Path,
    name: str,
    part: SheetPart,
    layout: WorkbookLayout,
    source_name: str,
    batch_rows: int,
    firsts: dict[str, pl.DataFrame],
) -> Iterator[SheetBatch]:
    """The batches of one sheet; raises _NotStreamable before its first batch when the sheet must be read whole."""
    with zipfile.ZipFile(path) as archive:
        sheet_parts = {other.xml for other in layout.sheets.values()}
        # The workbook's other parts (shared strings, styles) are small: check_file bounds them.
        kept = {entry: archive.read(entry) for entry in archive.namelist() if entry not in sheet_parts}

        def workbook_of(xml: bytes) -> bytes:
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as mini:
                for entry, data in kept.items():
                    mini.writestr(entry, data)
                for other in sheet_parts:
                    mini.writestr(other, xml if other == part.xml else _EMPTY_SHEET)
            return buffer.getvalue()

        def grid_of(xml: bytes) -> pl.DataFrame:
            try:
                return (
                    fastexcel.read_excel(workbook_of(xml))
                    .load_sheet(name, header_row=None, dtypes="string")
                    .to_polars()
                )
            except Exception as error:
                reason = f"truncated or not an .xlsx workbook ({without_paths(error)})"
                raise contract.FileRejected(source_name, reason) from error

        header_xml = header_values = None
        last_row = 0
        try:
            for number, (prefix, rows) in enumerate(_row_pieces(archive, part, batch_rows)):
                if rows.count(b"<c") != rows.count(b'<c r="'):  # a cell without its reference
                    if number == 0:
                        raise _NotStreamable
                    raise contract.FileRejected(source_name, _odd_layout(name, last_row))
                opening = _FIRST_REFERENCE.search(rows)
                if opening is None:
                    continue  # only empty rows
                first = int(opening.group(1))
                last = int(_FIRST_REFERENCE.match(rows, rows.rfind(b'<c r="')).group(1))
                if number == 0:
                    grid = grid_of(b"".join((prefix, rows, _SHEET_END)))
                    firsts[name] = grid.head(1)
                    if grid.height == 0 or part.first_column != 1 or grid.row(0)[0] is None or first != part.first_row:
                        raise _NotStreamable  # the header is not the first row in column A: read whole
                    header_xml = _row_xml(rows, part.first_row)
                    header_values = [value for value in grid.row(0) if value is not None]
                    top = part.first_row
                else:
                    if first <= last_row or header_xml is None:
                        raise contract.FileRejected(source_name, _odd_layout(name, last_row))
                    top = first - 1
                    header = _REFERENCE_ROW.sub(rb'\g<1>%d"' % top, header_xml)
                    grid = grid_of(b"".join((prefix, header, rows, _SHEET_END)))
                    if (
                        grid.height > last - top + 1
                        or [value for value in grid.row(0) if value is not None] != header_values
                    ):
                        raise contract.FileRejected(source_name, _odd_layout(name, last_row))
                last_row = last
                sheet = _sheet_from_grid(grid, name, source_name, top)
                del grid
                if sheet is None:
                    return  # not a data sheet: ignored, as read_source ignores it
                formulas = formulas_without_result(rows) if b"<f" in rows or b":f" in rows else []
                yield SheetBatch(sheet, formulas)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
            if header_xml is None:
                raise _NotStreamable from error
            reason = f"truncated or not an .xlsx workbook ({without_paths(error)})"
            raise contract.FileRejected(source_name, reason) from error


def _row_xml(rows: bytes, row: int) -> bytes:
    """The XML of row ``row``'s cells, wrapped in a bare row element (its attributes would name its number)."""
    start = rows.index(b'<c r="', 0)
    while int(_FIRST_REFERENCE.match(rows, start).group(1)) != row:
        start = rows.index(b'<c r="', start + 1)
    end = rows.index(_ROW_END, start)
    return b"<row>" + rows[start:end] + _ROW_END


def _odd_layout(sheet: str, after_row: int) -> str:
    return (
        f"sheet {sheet!r}: past row {after_row:,} the rows are out of order or their cells lack references, "
        "which no spreadsheet program writes: open and save the file in Excel, or export it as CSV"
    )
