"""Read a CSV into the contract's text columns: its encoding (byte-order mark, else UTF-8, cp1252, ISO-8859-1),
its separator (the one its header line uses most), whole or in pieces of whole records."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from include.retail.ingest import contract
from include.retail.ingest.sheets import (
    CONTRACT_HEADINGS,
    BatchedSource,
    Sheet,
    SheetBatch,
    SourceContents,
    check_cell_lengths,
    raw_rows,
    sheet_from_grid,
)
from include.retail.ingest.workbook_limits import without_paths

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


_CSV_BLOCK = 1 << 20


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


def read_csv(path: Path, source_name: str) -> SourceContents:
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
    sheet = sheet_from_grid(grid, None, source_name, 1)
    if sheet is None:
        header = next(csv.reader([first_line.rstrip("\r")], delimiter=separator), [])
        raise contract.FileRejected(
            source_name,
            f"row 1 is read as the header but has none of the contract's columns ({CONTRACT_HEADINGS}); "
            f"it holds {header}",
        )
    return separator, grid, sheet


def csv_batches(path: Path, source_name: str, batch_rows: int, found: BatchedSource) -> Iterator[SheetBatch]:
    """The CSV as ``read_csv`` reads it, in pieces of whole records: the encoding is decided first (a pass that
    decodes and keeps nothing), then each piece is transcoded to UTF-8 and parsed with the first piece's columns,
    so memory follows the piece, not the file."""
    found.encoding, codec, skip = _csv_encoding(path, source_name)
    pieces = _csv_pieces(path, codec, skip, batch_rows)
    first = next(pieces, b"")
    text = first.decode("utf-8")
    separator, grid, sheet = _csv_sheet(first, text, source_name)
    schema = dict.fromkeys(grid.columns, pl.String)  # a later line with more fields breaks it, as in one read
    next_row = 1 + grid.height  # source_row numbers the parsed lines, header first, as read_csv does
    del grid, first, text
    yield SheetBatch(sheet, [])
    for piece in pieces:
        grid = _parse_csv(piece, separator, source_name, schema)
        raw = raw_rows(grid, sheet.positions, next_row)
        next_row += grid.height
        del grid
        check_cell_lengths(raw, None, source_name, sheet.written_as)
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
