"""Cheap checks of what a file declares and holds, before a reader is let loose on it.

A workbook is a zip of XML parts, and a reader trusts both: calamine turns the bounding box of the
cells into one dense grid (a cell at A1 and one at XFD1048576 make 2**34 cells, 512 GiB), and inflates
whatever the zip holds (a 1 MB zip can hold a 1 GB string). Reading the zip directory and the first
few kilobytes of each sheet costs nothing, so the obvious cases are rejected here, naming the limit;
what lies its way past (a dimension that understates, a size the directory misstates) meets the memory
limit of the child process in ``sandboxed_read``.

Nothing here imports polars, fastexcel or Airflow: the checks run in the task's process, and the
formula scan in the child's. Errors are returned as reasons (text), never with a local path.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from xml.etree import ElementTree

# Excel's own limits.
MAX_ROWS = 1_048_576
MAX_COLUMNS = 16_384

_ZIP_MAGIC = b"PK\x03\x04"
# An OLE2 compound file: what Excel 97-2003 (.xls) writes, and what Excel wraps a password-protected .xlsx in.
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Stream names in an OLE2 directory (UTF-16LE): an encrypted .xlsx's package, a legacy workbook's sheets.
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
_LEGACY_WORKBOOK = ("Workbook".encode("utf-16-le"), "Book\x00".encode("utf-16-le"))
# A document type declaration: no spreadsheet program writes one, and its entities are how an XML entity bomb
# expands (calamine refuses them, with a multi-line error of its own).
_DOCTYPE = re.compile(rb"<!(?:DOCTYPE|ENTITY)\b")
ENTITY_DECLARATIONS = (
    "declares XML entities (a <!DOCTYPE>), which spreadsheet programs never write and a reader would have to "
    "expand (an XML entity bomb): save the workbook again from Excel, or export it as CSV"
)
_HEAD_BYTES = 64 * 1024  # of each sheet's XML: its dimension and first row are near the start
_SMALL_PART_BYTES = 10 * 1024 * 1024  # workbook.xml and the rels are tiny; a bigger one is not read
_SCAN_BLOCK = 4 * 1024 * 1024

_DIMENSION = re.compile(rb'<(?:\w+:)?dimension\s+ref="\$?([A-Z]{1,3})\$?(\d{1,7})(?::\$?([A-Z]{1,3})\$?(\d{1,7}))?"')
# A cell with content (not self-closing), and where it is.
_FILLED_CELL = re.compile(rb'<(?:\w+:)?c\s[^>]*?\br="([A-Z]{1,3})(\d{1,7})"[^>]*?(?<!/)>')
_CELL = re.compile(rb"<(?:\w+:)?c\s[^>]*?/>|<(?:\w+:)?c\s.*?</(?:\w+:)?c>", re.DOTALL)
_CELL_REFERENCE = re.compile(rb'\br="([A-Z]{1,3})(\d{1,7})"')
_FORMULA = re.compile(rb"<(?:\w+:)?f[\s/>]")
_SAVED_VALUE = re.compile(rb"<(?:\w+:)?v>([^<]+)</(?:\w+:)?v>")
_STRING_RESULT = re.compile(rb'\bt="str"')


def column_index(letters: str | bytes) -> int:
    """A -> 1, XFD -> 16384."""
    index = 0
    for letter in letters.decode() if isinstance(letters, bytes) else letters:
        index = index * 26 + ord(letter) - 64
    return index


@dataclass(frozen=True)
class SheetPart:
    """Where a sheet's XML is in the zip, and where its cells start (calamine's grid starts there)."""

    xml: str
    first_row: int = 1
    first_column: int = 1


@dataclass(frozen=True)
class WorkbookLayout:
    sheets: dict[str, SheetPart] = field(default_factory=dict)  # by sheet name; empty when unknown


def _looks_like_text(head: bytes) -> bool:
    """Separated text (a CSV, or Excel's UTF-16 "Unicode text"), judged by its first kilobytes."""
    encoding = "utf-16" if head.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8"
    text = head.decode(encoding, errors="replace")
    printable = sum(character.isprintable() or character in "\r\n\t" for character in text)
    return printable >= 0.95 * len(text) and any(separator in text for separator in ",;\t|")


def check_file(
    path: Path, source_name: str, *, max_uncompressed_mb: int, max_compression_ratio: int, max_sheet_cells: int
) -> tuple[str | None, WorkbookLayout]:
    """The reason to reject ``path`` (None when it may be read), and the layout of a workbook."""
    size = path.stat().st_size
    if size == 0:
        return "empty file (0 bytes)", WorkbookLayout()
    if PurePosixPath(source_name).suffix.lower() != ".xlsx":
        return None, WorkbookLayout()
    with path.open("rb") as handle:
        head = handle.read(4096)
    if not head.startswith(_ZIP_MAGIC):
        if head.startswith(_OLE2_MAGIC):
            return _compound_file_reason(path), WorkbookLayout()
        if _looks_like_text(head):
            return "looks like a CSV, not an .xlsx workbook (rename it .csv)", WorkbookLayout()
        return "truncated or not an .xlsx workbook (it does not start as a zip archive)", WorkbookLayout()
    try:
        with zipfile.ZipFile(path) as archive:
            return _check_workbook(archive, max_uncompressed_mb, max_compression_ratio, max_sheet_cells)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, KeyError, ValueError) as error:
        return f"truncated or not an .xlsx workbook ({without_paths(error)})", WorkbookLayout()


def _compound_file_reason(path: Path) -> str:
    """What an OLE2 file named .xlsx is, by the streams its directory names: a password-protected workbook, or an
    Excel 97-2003 one."""
    legacy, tail = False, b""
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_SCAN_BLOCK), b""):
            window = tail + block  # a name split across two blocks is still found
            if _ENCRYPTED_PACKAGE in window:
                return (
                    "a password-protected (encrypted) workbook, which cannot be read without its password: "
                    "save a copy without a password (Excel: File > Info > Protect Workbook), or export it as CSV"
                )
            legacy = legacy or any(name in window for name in _LEGACY_WORKBOOK)
            tail = block[-64:]
    if legacy:
        return "an Excel 97-2003 workbook (.xls) named .xlsx: save it as an Excel Workbook (.xlsx), or as CSV"
    return "not an .xlsx workbook: an Office compound document of another kind"


def unreadable_workbook(error: BaseException) -> str:
    """The rejection of a workbook the reader failed on, in one line without the reader's internals."""
    text = without_paths(error) if isinstance(error, Exception) else type(error).__name__
    if "unrecognized entity" in text or "DOCTYPE" in text:
        return f"the workbook {ENTITY_DECLARATIONS}"
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"truncated or not an .xlsx workbook ({first.removesuffix(':').strip()[:300]})"


def without_paths(error: Exception) -> str:
    """An error's text without local paths (a worker's temp folder means nothing to the user)."""
    return re.sub(r"(/[^\s'\"]+)+", "<file>", str(error)) or type(error).__name__


def _check_workbook(
    archive: zipfile.ZipFile, max_uncompressed_mb: int, max_ratio: int, max_sheet_cells: int
) -> tuple[str | None, WorkbookLayout]:
    entries = archive.infolist()
    total = sum(entry.file_size for entry in entries)
    if total > max_uncompressed_mb << 20:
        return (
            f"the workbook unpacks to {total / 2**20:,.0f} MB, more than the {max_uncompressed_mb:,} MB allowed",
            WorkbookLayout(),
        )
    for entry in entries:
        # Small parts compress extremely well (a rels file is mostly one repeated URL): only big ones count.
        if entry.file_size > 1 << 20 and entry.file_size > max_ratio * max(entry.compress_size, 1):
            ratio = entry.file_size / max(entry.compress_size, 1)
            return (
                f"{entry.filename} unpacks {ratio:,.0f} times ({entry.file_size / 2**20:,.0f} MB from "
                f"{entry.compress_size / 2**20:,.1f} MB), more than the {max_ratio} times a workbook's data does",
                WorkbookLayout(),
            )
    names = {entry.filename for entry in entries}
    if "xl/workbook.xml" not in names and "[Content_Types].xml" not in names:
        return "truncated or not an .xlsx workbook (it is a zip archive without a workbook in it)", WorkbookLayout()
    for entry in entries:
        if entry.filename.endswith((".xml", ".rels")):
            with archive.open(entry) as handle:
                if _DOCTYPE.search(handle.read(_HEAD_BYTES)):
                    return f"{entry.filename} {ENTITY_DECLARATIONS}", WorkbookLayout()
    layout = _layout(archive, names)
    for name, part in layout.sheets.items():
        with archive.open(part.xml) as handle:
            head = handle.read(_HEAD_BYTES)
        reason = _check_dimension(name, head, max_sheet_cells)
        if reason:
            return reason, WorkbookLayout()
        layout.sheets[name] = _with_start(part, head)
    return None, layout


def _check_dimension(sheet: str, head: bytes, max_sheet_cells: int) -> str | None:
    found = _DIMENSION.search(head)
    if not found:
        return None
    first_column, first_row, last_column, last_row = found.groups()
    last_column, last_row = last_column or first_column, last_row or first_row
    columns = column_index(last_column) - column_index(first_column) + 1
    rows = int(last_row) - int(first_row) + 1
    declared = found.group(0).decode().split('"')[1]
    if int(last_row) > MAX_ROWS or column_index(last_column) > MAX_COLUMNS:
        return f"sheet {sheet!r} declares {declared}, beyond Excel's {MAX_ROWS:,} rows and {MAX_COLUMNS:,} columns"
    if rows * columns > max_sheet_cells:
        return (
            f"sheet {sheet!r} declares {declared} ({rows:,} rows × {columns:,} columns = {rows * columns:,} cells), "
            f"more than the {max_sheet_cells:,} cells allowed"
        )
    return None


def _with_start(part: SheetPart, head: bytes) -> SheetPart:
    """Where calamine's grid starts: at the first filled cell's row and the leftmost column seen near it."""
    cells = [(column_index(letters), int(row)) for letters, row in _FILLED_CELL.findall(head)]
    if not cells:
        return part
    first_row = cells[0][1]
    first_column = min(column for column, row in cells if row <= first_row + 100)
    return SheetPart(part.xml, first_row, first_column)


def _read_small(archive: zipfile.ZipFile, name: str) -> bytes:
    with archive.open(name) as handle:
        return handle.read(_SMALL_PART_BYTES)


def _layout(archive: zipfile.ZipFile, names: set[str]) -> WorkbookLayout:
    """Sheet name -> its XML part, from xl/workbook.xml and its rels; empty when they cannot be read."""
    try:
        workbook = ElementTree.fromstring(_read_small(archive, "xl/workbook.xml"))
        rels = ElementTree.fromstring(_read_small(archive, "xl/_rels/workbook.xml.rels"))
    except (KeyError, ElementTree.ParseError):
        return WorkbookLayout()
    targets = {}
    for relation in rels.iterfind(".//{*}Relationship"):
        target = relation.get("Target", "")
        target = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
        targets[relation.get("Id")] = str(PurePosixPath(target))
    sheets = {}
    for sheet in workbook.iterfind(".//{*}sheet"):
        relation = next((value for key, value in sheet.attrib.items() if key.endswith("}id")), None)
        part = targets.get(relation)
        if part in names:
            sheets[sheet.get("name", "")] = SheetPart(part)
    return WorkbookLayout(sheets)


def unsaved_formulas(path: Path, part: SheetPart) -> list[tuple[int, int]]:
    """(row, column) of each formula cell with no saved result, which a reader sees as blank.

    Libraries (openpyxl) write formulas without results; Excel saves them. One pass over the sheet's
    XML, ~0.7 s for the real workbook, spent in zlib and ``bytes.find`` (which release the GIL or are
    C-fast): only the rare blocks holding a formula are parsed.
    """
    found: list[tuple[int, int]] = []
    carry = b""
    with zipfile.ZipFile(path) as archive, archive.open(part.xml) as handle:
        while block := handle.read(_SCAN_BLOCK):
            block = carry + block
            cut = block.rfind(b"<c ")  # a cell may straddle two blocks: keep it for the next one
            cut = max(cut, block.rfind(b"</row>"))
            body, carry = (block[:cut], block[cut:]) if cut > 0 else (block, b"")
            if b"<f" in body or b":f" in body:
                found.extend(formulas_without_result(body))
        if carry and (b"<f" in carry or b":f" in carry):
            found.extend(formulas_without_result(carry))
    return found


def formulas_without_result(xml: bytes) -> list[tuple[int, int]]:
    """(row, column) of each formula cell in ``xml`` (whole cells) that has no saved result."""
    found = []
    for cell in _CELL.finditer(xml):
        text = cell.group(0)
        if not _FORMULA.search(text) or _SAVED_VALUE.search(text) or _STRING_RESULT.search(text[: text.find(b">")]):
            continue
        reference = _CELL_REFERENCE.search(text[: text.find(b">")])
        if reference:
            found.append((int(reference.group(2)), column_index(reference.group(1))))
    return found
