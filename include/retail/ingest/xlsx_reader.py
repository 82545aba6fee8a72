"""Read an .xlsx workbook into the contract's text columns, every sheet that meets the contract: whole with
fastexcel, or cut at row ends into small workbooks that calamine reads one batch at a time."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import fastexcel
import polars as pl

from include.retail.ingest import contract
from include.retail.ingest.sheets import (
    CONTRACT_HEADINGS,
    BatchedSource,
    Sheet,
    SheetBatch,
    SourceContents,
    sheet_from_grid,
    shown,
)
from include.retail.ingest.workbook_limits import (
    SheetPart,
    WorkbookLayout,
    formulas_without_result,
    unreadable_workbook,
)

_XML_BLOCK = 4 << 20


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


def read_workbook(path: Path, source_name: str, layout: WorkbookLayout) -> SourceContents:
    try:
        workbook = fastexcel.read_excel(path)
        grids = {
            name: workbook.load_sheet(name, header_row=None, dtypes="string").to_polars()
            for name in workbook.sheet_names
        }
    except Exception as error:  # calamine raises several types for a damaged or foreign file
        reason = unreadable_workbook(error)
        raise contract.FileRejected(source_name, reason) from error
    sheets, ignored, first_rows = [], [], {}
    for name, grid in grids.items():
        part = layout.sheets.get(name)
        first_rows[name] = part.first_row if part else 1
        sheet = sheet_from_grid(grid, name, source_name, first_rows[name])
        if sheet is None:
            ignored.append(name)
        else:
            sheets.append(sheet)
    if not sheets:
        raise _no_contract_sheet(source_name, grids, first_rows)
    return SourceContents(sheets=sheets, ignored_sheets=ignored, encoding=None)


class _NotStreamable(Exception):
    """The sheet's XML is not laid out as the batched read needs: read it whole instead."""


def workbook_batches(
    path: Path, source_name: str, layout: WorkbookLayout, batch_rows: int, found: BatchedSource
) -> Iterator[SheetBatch]:
    from include.retail.ingest.workbook_limits import unsaved_formulas

    try:
        workbook = fastexcel.read_excel(path)
        names = workbook.sheet_names
    except Exception as error:
        reason = unreadable_workbook(error)
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
                reason = unreadable_workbook(error)
                raise contract.FileRejected(source_name, reason) from error
            firsts[name] = grid.head(1)
            sheet = sheet_from_grid(grid, name, source_name, first_rows[name])
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
        f"sheet {name!r} row {first_rows[name]} holds {shown(grid)}" if grid.height else f"sheet {name!r} is empty"
        for name, grid in grids.items()
    )
    return contract.FileRejected(
        source_name,
        f"no sheet has a header with the contract's columns ({CONTRACT_HEADINGS}) on its first row; "
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
                reason = unreadable_workbook(error)
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
                sheet = sheet_from_grid(grid, name, source_name, top)
                del grid
                if sheet is None:
                    return  # not a data sheet: ignored, as read_source ignores it
                formulas = formulas_without_result(rows) if b"<f" in rows or b":f" in rows else []
                yield SheetBatch(sheet, formulas)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
            if header_xml is None:
                raise _NotStreamable from error
            reason = unreadable_workbook(error)
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
