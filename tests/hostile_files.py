"""Generators of hostile and malformed source files (issue 9), each as small as the attack allows.

Workbooks are written as raw SpreadsheetML parts, streamed into the zip: a writer library would refuse
most of these (cells beyond Excel's limits, strings longer than a cell may hold) or hold them in memory.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape

from devstack.sample import HEADER, write_workbook

# One valid row of the contract, as a workbook holds it.
ROW: list[object] = [
    536365,
    "85123A",
    "WHITE HANGING HEART T-LIGHT HOLDER",
    6,
    datetime(2010, 12, 1, 8, 26),
    2.55,
    17850.0,
]
ROW_TEXT = ["536365", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", "6", "2010-12-01 08:26:00", "2.55", "17850"]

_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/sharedStrings.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
    "</Types>"
)
_ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
    'Target="xl/workbook.xml"/></Relationships>'
)
_WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    '<sheets><sheet name="Online Retail" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
    'Target="worksheets/sheet1.xml"/>'
    '<Relationship Id="rId2" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" '
    'Target="sharedStrings.xml"/></Relationships>'
)
_SHEET_OPEN = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
)
_LETTERS = "ABCDEFGH"


def column_letters(index: int) -> str:
    """0 -> A, 16383 -> XFD."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters


def _cell(reference: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        serial = (value - datetime(1899, 12, 30)).total_seconds() / 86400
        return f'<c r="{reference}" s="1"><v>{serial}</v></c>'
    if isinstance(value, (int, float)):
        return f'<c r="{reference}"><v>{value}</v></c>'
    return f'<c r="{reference}" t="inlineStr"><is><t>{escape(str(value))}</t></is></c>'


def row_xml(number: int, values: Sequence[object]) -> str:
    cells = "".join(_cell(f"{_LETTERS[column]}{number}", value) for column, value in enumerate(values))
    return f'<row r="{number}">{cells}</row>'


def _styles() -> str:
    """One date format (s="1"), so that date cells read as date-times."""
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        '<numFmts count="1"><numFmt numFmtId="164" formatCode="m/d/yyyy h:mm"/></numFmts>'
        '<fonts count="1"><font/></fonts><fills count="1"><fill/></fills><borders count="1"><border/></borders>'
        '<cellStyleXfs count="1"><xf/></cellStyleXfs>'
        '<cellXfs count="2"><xf/><xf numFmtId="164" applyNumberFormat="1"/></cellXfs></styleSheet>'
    )


def write_raw_workbook(
    path: Path,
    sheet_body: Iterable[str | bytes],
    *,
    dimension: str | None = None,
    shared_strings: Iterable[str | bytes] = (),
) -> Path:
    """A one-sheet workbook whose sheet XML is ``sheet_body`` (``<row>`` elements), streamed into the zip."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _ROOT_RELS)
        archive.writestr("xl/workbook.xml", _WORKBOOK)
        archive.writestr(
            "xl/_rels/workbook.xml.rels",
            _WORKBOOK_RELS.replace(
                "</Relationships>",
                '<Relationship Id="rId3" '
                'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" '
                'Target="styles.xml"/></Relationships>',
            ),
        )
        archive.writestr("xl/styles.xml", _styles())
        with archive.open("xl/sharedStrings.xml", "w", force_zip64=True) as strings:
            strings.write(
                b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
            )
            for piece in shared_strings:
                strings.write(piece.encode() if isinstance(piece, str) else piece)
            strings.write(b"</sst>")
        with archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            sheet.write(_SHEET_OPEN.encode())
            if dimension:
                sheet.write(f'<dimension ref="{dimension}"/>'.encode())
            sheet.write(b"<sheetData>")
            for piece in sheet_body:
                sheet.write(piece.encode() if isinstance(piece, str) else piece)
            sheet.write(b"</sheetData></worksheet>")
    return path


def _header_and_rows(count: int = 2, country: str = "United Kingdom") -> Iterator[str]:
    yield row_xml(1, [*HEADER])
    for number in range(2, count + 2):
        yield row_xml(number, [*ROW, country])


def far_corner_workbook(path: Path, *, dimension: str | None = "A1:XFD1048576") -> Path:
    """1.8 KB: a cell at A1 and one at XFD1048576, which a dense reader turns into 2**34 cells (512 GiB).

    ``dimension=None`` leaves out the declaration, so that only the cells themselves say how far they go."""
    far = '<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row>'
    return write_raw_workbook(path, [*_header_and_rows(1), far], dimension=dimension)


def _repeated(byte: bytes, total: int, block: int = 1 << 20) -> Iterator[bytes]:
    chunk = byte * block
    for _ in range(total // block):
        yield chunk
    if total % block:
        yield byte * (total % block)


def zip_bomb_workbook(path: Path, string_bytes: int = 1 << 30) -> Path:
    """About 1 MB on disk: one shared string of ``string_bytes`` (1 GiB) in a Description cell, written
    streaming so that the generator never holds it."""
    strings = [b"<si><t>", *_repeated(b"a", string_bytes), b"</t></si>"]
    body = [row_xml(1, [*HEADER]), row_xml(2, [*ROW[:2]]).replace("</row>", '<c r="C2" t="s"><v>0</v></c></row>')]
    return write_raw_workbook(path, body, dimension="A1:H2", shared_strings=strings)


def long_cell_workbook(path: Path, characters: int = 40_000) -> Path:
    """A Description cell longer than Excel's 32,767 characters per cell."""
    row = [*ROW, "United Kingdom"]
    row[2] = "x" * characters
    return write_raw_workbook(path, [row_xml(1, [*HEADER]), row_xml(2, row)], dimension="A1:H2")


def formula_workbook(path: Path, extra_rows: int = 0) -> Path:
    """As openpyxl writes formulas: no cached value, so a reader sees an empty cell.

    Row 3's Quantity is ``=2*3`` with nothing saved; row 2 is a plain row; row 4 has a formula that was
    saved with its result (as Excel does) and loads."""
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Online Retail"
    sheet.append(HEADER)
    sheet.append([*ROW, "United Kingdom"])
    sheet.append([*ROW[:3], "=2*3", *ROW[4:], "United Kingdom"])
    sheet.append([*ROW, "United Kingdom"])
    for _ in range(extra_rows):
        sheet.append([*ROW, "France"])
    workbook.save(path)
    # Give row 4's formula a cached result, as Excel would have saved it.
    _rewrite_entry(
        path,
        "xl/worksheets/sheet1.xml",
        lambda xml: xml.replace(b'<c r="D4"><v>6</v></c>', b'<c r="D4"><f>2*3</f><v>6</v></c>'),
    )
    return path


def _rewrite_entry(path: Path, name: str, change) -> None:
    with zipfile.ZipFile(path) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    entries[name] = change(entries[name])
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for entry, content in entries.items():
            archive.writestr(entry, content)


def utf16_csv(path: Path, *, bom: bool = True) -> Path:
    """Excel's "Unicode text": UTF-16 little-endian with a BOM, tab separated."""
    lines = ["\t".join(HEADER), "\t".join([*ROW_TEXT, "United Kingdom"]), "\t".join([*ROW_TEXT, "España"])]
    text = "\r\n".join(lines) + "\r\n"
    path.write_bytes((b"\xff\xfe" if bom else b"") + text.encode("utf-16-le"))
    return path


def nul_byte_csv(path: Path, extra_rows: int = 0) -> Path:
    """A CSV whose second data row holds a NUL character in its Description (PostgreSQL refuses it)."""
    rows = [",".join(HEADER)]
    for n in range(3 + extra_rows):
        values = [*ROW_TEXT, "United Kingdom"]
        values[0] = str(536365 + n)
        if n == 1:
            values[2] = "WHITE HANGING\x00HEART"
        rows.append(",".join(values))
    path.write_bytes(("\n".join(rows) + "\n").encode())
    return path


def empty_file(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def csv_named_xlsx(path: Path) -> Path:
    path.write_text(",".join(HEADER) + "\n" + ",".join([*ROW_TEXT, "United Kingdom"]) + "\n")
    return path


def truncated_workbook(path: Path) -> Path:
    """A real workbook cut in half, as an interrupted upload leaves it."""
    whole = write_workbook(path.with_suffix(".whole.xlsx"), {"Online Retail": [HEADER, *[[*ROW, "France"]] * 200]})
    data = whole.read_bytes()
    whole.unlink()
    path.write_bytes(data[: len(data) // 2])
    return path


def undeclared_corner_workbook(path: Path) -> Path:
    """The far-corner workbook with no dimension to check: only the memory limit stops the reader."""
    return far_corner_workbook(path, dimension=None)


def utf16_csv_without_bom(path: Path) -> Path:
    return utf16_csv(path, bom=False)


def _csv(path: Path, lines: Iterable[str]) -> Path:
    path.write_bytes(("\n".join([",".join(HEADER), *lines]) + "\n").encode())
    return path


def _lines(first_invoice: int, count: int, **values: str) -> list[str]:
    """``count`` valid CSV lines, numbered from ``first_invoice`` (so that no two files have the same rows: a file
    whose typed rows were loaded before is a duplicate), with ``values`` (date, description, quantity, price)."""
    fields = {"date": "2010-12-01 08:26:00", "description": "WHITE HANGING HEART", "quantity": "6", "price": "2.55"}
    fields.update(values)
    return [
        f"{first_invoice + n},85123A,{fields['description']},{fields['quantity']},{fields['date']},{fields['price']},"
        "17850,United Kingdom"
        for n in range(count)
    ]


def inch_mark_csv(path: Path) -> Path:
    """An unquoted inch mark on line 7 (``12" RULER``): as polars reads quotes, it would open a quoted field running
    to the next quote, shifting every field in between."""
    return _csv(path, [*_lines(900_100, 5), *_lines(900_105, 1, description='12" RULER'), *_lines(900_106, 3)])


def ambiguous_dates_csv(path: Path, first_invoice: int = 900_200) -> Path:
    """1-10 December 2010 written day-first: every date reads both ways (month-first: 12 January to 12 October)."""
    return _csv(
        path, [_lines(first_invoice + day, 1, date=f"{day:02d}/12/2010 09:{day:02d}")[0] for day in range(1, 11)]
    )


def mixed_date_orders_csv(path: Path) -> Path:
    """13 December written day-first, then month-first: no order can be trusted."""
    dates = ["13/12/2010 09:00", "12/1/2010 09:00", "12/13/2010 09:00"]
    return _csv(path, [_lines(900_300 + n, 1, date=date)[0] for n, date in enumerate(dates)])


def far_future_date_csv(path: Path, extra_rows: int = 1_000) -> Path:
    """One row dated 9999-12-31 (row 3) among valid ones: it made dim_date 2,917,953 days long."""
    return _csv(path, [*_lines(910_000, 1), *_lines(910_001, 1, date="9999-12-31"), *_lines(910_002, extra_rows - 1)])


def huge_price_csv(path: Path, extra_rows: int = 1_000) -> Path:
    """One UnitPrice of 1e308 (row 3): a finite float, which made gold revenue a 300-digit number."""
    return _csv(path, [*_lines(920_000, 1), *_lines(920_001, 1, price="1e308"), *_lines(920_002, extra_rows - 1)])


def cut_short_csv(path: Path, extra_rows: int = 1_000) -> Path:
    """An upload cut inside the last line's ``1.50``: read as is, its price would be ``1`` and the rest nulls."""
    path = _csv(path, [*_lines(930_000, extra_rows), *_lines(931_000, 1, price="1.50")])
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b"1.50") + 1])
    return path


# Each file that must be rejected whole: (generator, file name, what the rejection says).
REJECTED_FILES: list[tuple[Callable[[Path], Path], str, str]] = [
    (
        far_corner_workbook,
        "far_corner.xlsx",
        "sheet 'Online Retail' declares A1:XFD1048576 (1,048,576 rows × 16,384 columns = 17,179,869,184 cells), "
        "more than the 67,108,864 cells allowed",
    ),
    (undeclared_corner_workbook, "undeclared_corner.xlsx", "needs more than the 2,048 MB allowed to read"),
    (
        zip_bomb_workbook,
        "bomb.xlsx",
        "xl/sharedStrings.xml unpacks 1,029 times (1,024 MB from 1.0 MB), more than the 100 times",
    ),
    (
        long_cell_workbook,
        "long_cell.xlsx",
        "sheet 'Online Retail' row 2: Description holds 40,000 characters, more than the 32,767 a cell may hold",
    ),
    (empty_file, "empty.xlsx", "empty file (0 bytes)"),
    (empty_file, "empty.csv", "empty file (0 bytes)"),
    (csv_named_xlsx, "export.xlsx", "looks like a CSV, not an .xlsx workbook (rename it .csv)"),
    (truncated_workbook, "cut.xlsx", "truncated or not an .xlsx workbook"),
    (utf16_csv_without_bom, "unicode_text.csv", "the CSV looks like UTF-16 without a byte-order mark"),
    (
        inch_mark_csv,
        "inch_mark.csv",
        'not a well-formed CSV file: line 7: a quote inside a field not in quotes (12" RULER): put the field in '
        'quotes and double its quote ("12"" RULER")',
    ),
    (
        ambiguous_dates_csv,
        "day_first.csv",
        "InvoiceDate: the day/month order of its dates cannot be told from the file: every date written with slashes "
        "reads both ways (row 2: '01/12/2010 09:01' is 1 December or 12 January 2010); declare the order",
    ),
    (
        mixed_date_orders_csv,
        "mixed_orders.csv",
        "InvoiceDate: its dates follow both day/month orders (row 2: '13/12/2010 09:00' reads only day-first, "
        "row 4: '12/13/2010 09:00' only month-first)",
    ),
]
# Files with one bad row among valid ones, which loads without it: (generator, file name, that row's reason).
BAD_ROW_FILES: list[tuple[Callable[..., Path], str, int, str]] = [
    (
        far_future_date_csv,
        "far_future.csv",
        3,
        "InvoiceDate: '9999-12-31' is after {tomorrow}, the latest plausible date (tomorrow, UTC)",
    ),
    (huge_price_csv, "huge_price.csv", 3, "UnitPrice: '1e308' is outside ±1,000,000, the plausible range"),
    (cut_short_csv, "cut_short.csv", 1_002, "6 fields where the header has 8 (a line cut short?)"),
]
BAD_ROW_FILE_IDS = [name for _, name, _, _ in BAD_ROW_FILES]
REJECTED_FILE_IDS = [name for _, name, _ in REJECTED_FILES]
