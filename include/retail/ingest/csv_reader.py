"""Read a CSV into the contract's text columns: its encoding (byte-order mark, else UTF-8, cp1252, ISO-8859-1),
its separator (the one its header line uses most), whole or in pieces of whole records.

Each piece's shape is checked before polars parses it, so that a malformed file is told by its line and in a
user's words (``_check_shape``), and a line shorter than the header is a rejected row, not a row of nulls and a
truncated value (``row_faults``). Dates written with slashes make the reader gather the whole file's evidence of
their day/month order, parsing only that column, before the first such batch is typed (``_date_evidence``).
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
from include.retail.ingest.value_rules import DateEvidence, writes_slash_dates

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
    _, _, sheet, _ = _csv_sheet(data, text, source_name)
    return SourceContents(sheets=[sheet], ignored_sheets=[], encoding=encoding)


def _csv_sheet(data: bytes, text: str, source_name: str) -> tuple[str, pl.DataFrame, Sheet, pl.DataFrame]:
    """Parse the CSV's first (or only) piece, UTF-8 ``data`` decoded as ``text``, with the separator its first line
    uses most: the separator, the grid of cells, the sheet it makes and its records shorter than the header.
    Rejected, saying what row 1 holds, when row 1 is not the contract's header."""
    first_line = text[: text.find("\n")] if "\n" in text else text
    separator = max(CSV_SEPARATORS, key=first_line.count)
    grid, short = _parse_csv(data, separator, source_name, 1)
    sheet = sheet_from_grid(grid, None, source_name, 1)
    if sheet is None:
        header = next(csv.reader([first_line.rstrip("\r")], delimiter=separator), [])
        raise contract.FileRejected(
            source_name,
            f"row 1 is read as the header but has none of the contract's columns ({CONTRACT_HEADINGS}); "
            f"it holds {header}",
        )
    return separator, grid, sheet, short


def csv_batches(
    path: Path, source_name: str, batch_rows: int, found: BatchedSource, *, date_evidence: bool = True
) -> Iterator[SheetBatch]:
    """The CSV as ``read_csv`` reads it, in pieces of whole records: the encoding is decided first (a pass that
    decodes and keeps nothing), then each piece is transcoded to UTF-8 and parsed with the first piece's columns,
    so memory follows the piece, not the file. Lines shorter than the header are the batch's ``row_faults``.

    With ``date_evidence``, the first piece holding a date written with slashes sets ``found.date_evidence`` to that
    of the rest of the file (the pieces before hold none) before it is handed out: the order is the whole file's."""
    found.encoding, codec, skip = _csv_encoding(path, source_name)
    pieces = _csv_pieces(path, codec, skip, batch_rows)
    first = next(pieces, b"")
    text = first.decode("utf-8")
    separator, grid, sheet, short = _csv_sheet(first, text, source_name)
    schema = dict.fromkeys(grid.columns, pl.String)
    width = len(schema)
    # source_row numbers the parsed records, header first, as read_csv does; lines count line ends, for messages
    next_row, next_line = 1 + grid.height, 1 + first.count(b"\n")
    del grid, first, text
    layout = _Layout(path, codec, skip, batch_rows, separator, schema, sheet.positions["invoice_date"])
    if date_evidence and writes_slash_dates(sheet.raw["invoice_date"]):
        found.date_evidence = _date_evidence(layout, source_name, 0, 1, 1)
    yield SheetBatch(sheet, [], _short_rows(short, 1, width))
    for number, piece in enumerate(pieces, start=1):
        grid, short = _parse_csv(piece, separator, source_name, next_line, schema)
        raw = raw_rows(grid, sheet.positions, next_row)
        faults = _short_rows(short, next_row, width)
        if date_evidence and found.date_evidence is None and writes_slash_dates(raw["invoice_date"]):
            found.date_evidence = _date_evidence(layout, source_name, number, next_row, next_line)
        next_row += grid.height
        next_line += piece.count(b"\n")
        del grid
        check_cell_lengths(raw, None, source_name, sheet.written_as)
        yield SheetBatch(Sheet(None, raw, sheet.written_as, sheet.positions), [], faults)


@dataclass(frozen=True)
class _Layout:
    """How ``csv_batches`` reads the file, for a second pass over its date column."""

    path: Path
    codec: str
    skip: int
    batch_rows: int
    separator: str
    schema: dict[str, type[pl.String]]
    date_position: int


def _date_evidence(layout: _Layout, source_name: str, from_piece: int, first_row: int, first_line: int) -> DateEvidence:
    """The day/month evidence of the date column from piece ``from_piece`` (its first record being row
    ``first_row``, on line ``first_line``) to the end: each piece is parsed again, its date column only."""
    evidence = DateEvidence()
    pieces = _csv_pieces(layout.path, layout.codec, layout.skip, layout.batch_rows)
    for number, piece in enumerate(pieces):
        if number < from_piece:
            continue
        schema = layout.schema if number else None
        grid, _ = _parse_csv(piece, layout.separator, source_name, first_line, schema, [layout.date_position])
        rows = pl.int_range(first_row, first_row + grid.height, dtype=pl.Int32, eager=True)
        evidence = evidence.with_dates(grid.to_series(0), rows)
        if evidence.is_mixed:  # settled: the file is rejected
            break
        first_row += grid.height
        first_line += piece.count(b"\n")
    return evidence


def _short_rows(short: pl.DataFrame, first_row: int, width: int) -> pl.DataFrame | None:
    """The ``short`` records (numbered from ``first_row``) as row faults: each is rejected, saying why; loaded, its
    missing fields would be nulls, and a line cut inside ``1.50`` a price of ``1``."""
    if not short.height:
        return None
    return short.select(
        source_row=(pl.col("record") + first_row).cast(pl.Int32),
        reason=pl.format("{} fields where the header has {} (a line cut short?)", "fields", pl.lit(width)),
    )


def _parse_csv(
    data: bytes,
    separator: str,
    source_name: str,
    first_line: int,
    schema: dict[str, type[pl.String]] | None = None,
    columns: list[int] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse ``data`` (whose first line is the file's line ``first_line``; the first piece, without ``schema``, sets
    the width: its first record, the header): the grid, and the records with fewer fields than the header (their
    place in the piece, from 0, and their count of fields), which polars would fill with nulls.

    Quotes are checked first, cheaply (they are few); fields are counted only where it can matter: a record with
    too few has a null in its last column, one with too many makes polars fail."""
    text = np.frombuffer(data, dtype=np.uint8)
    quotes = np.flatnonzero(text == ord('"'))
    if quotes.size:
        _check_quotes(data, text, quotes, separator, source_name, first_line)
    try:
        grid = pl.read_csv(
            io.BytesIO(data),
            has_header=False,
            infer_schema=False,
            separator=separator,
            quote_char='"',
            schema=schema,
            columns=columns,
        )
    except pl.exceptions.PolarsError as error:
        fields, ends = _record_fields(data, text, quotes, separator)
        _check_width(data, fields, ends, len(schema) if schema else int(fields[0]), separator, source_name, first_line)
        raise _malformed(source_name, data, first_line) from error
    short = pl.DataFrame(schema={"record": pl.Int64, "fields": pl.Int64})
    if columns is None and grid.height and grid.to_series(grid.width - 1).has_nulls():
        fields, ends = _record_fields(data, text, quotes, separator)
        if grid.height != fields.size:
            raise _malformed(source_name, data, first_line)
        _check_width(data, fields, ends, grid.width, separator, source_name, first_line)
        blank = grid.select(pl.all_horizontal(pl.all().is_null())).to_series().to_numpy()  # layout, not a row
        record = np.flatnonzero((fields < grid.width) & ~blank)
        short = pl.DataFrame({"record": record, "fields": fields[record]}, schema=short.schema)
    return grid, short


def _malformed(source_name: str, data: bytes, first_line: int) -> contract.FileRejected:
    """A piece polars cannot parse though its shape checks out: said without the library's words."""
    last_line = first_line + data.count(b"\n", 0, len(data) - 1)
    return contract.FileRejected(
        source_name, f"not a well-formed CSV file: lines {first_line} to {last_line} cannot be read as CSV"
    )


def _record_fields(data: bytes, text: np.ndarray, quotes: np.ndarray, separator: str) -> tuple[np.ndarray, np.ndarray]:
    """Each record's count of fields and where it ends, split as polars splits them: a record ends at a line end
    outside quotes (``quotes`` pair up: ``_check_quotes`` has passed)."""
    line_ends = np.flatnonzero(text == ord("\n"))
    separators = np.flatnonzero(text == ord(separator))
    opening, closing = quotes[0::2], quotes[1::2]
    inside = np.zeros(line_ends.size + 1, dtype=np.int64)  # +1 where a quoted field starts, -1 past its end
    np.add.at(inside, np.searchsorted(line_ends, opening), 1)
    np.add.at(inside, np.searchsorted(line_ends, closing), -1)
    ends = line_ends[np.cumsum(inside[:-1]) == 0]
    if data and not data.endswith(b"\n"):
        ends = np.append(ends, len(data))  # the last line, with no line end
    fields = np.diff(np.searchsorted(separators, ends), prepend=0) + 1
    quoted = np.searchsorted(separators, closing) - np.searchsorted(separators, opening)
    fields -= np.bincount(np.searchsorted(ends, opening), weights=quoted, minlength=ends.size).astype(fields.dtype)
    return fields, ends


def _check_width(
    data: bytes, fields: np.ndarray, ends: np.ndarray, width: int, separator: str, source_name: str, first_line: int
) -> None:
    """Rejects the file at its first record with more fields than the header's ``width``, naming its line."""
    wide = np.flatnonzero(fields > width)
    if not wide.size:
        return
    record = int(wide[0])
    line = first_line + (data.count(b"\n", 0, int(ends[record - 1]) + 1) if record else 0)
    raise contract.FileRejected(
        source_name,
        f"not a well-formed CSV file: line {line} has {fields[record]} fields where the header has {width}: "
        f"a value holding the separator {separator!r} must be in quotes",
    )


def _check_quotes(
    data: bytes, text: np.ndarray, quotes: np.ndarray, separator: str, source_name: str, first_line: int
) -> None:
    """Rejects, naming the line and what to do, a quote a CSV writer would not write. As polars reads them, every
    quote toggles (a doubled quote inside quotes closes and reopens): an opening quote must start a field and a
    closing one end it; the last must close. An inch mark (12" RULER) would otherwise shift the fields of every
    line up to the next quote."""
    opening, closing = quotes[0::2], quotes[1::2]
    field_ends = [ord(separator), ord("\n"), ord('"')]
    before = text[np.maximum(opening - 1, 0)]
    stray_opening = opening[(opening > 0) & ~np.isin(before, field_ends)]
    after = text[np.minimum(closing + 1, text.size - 1)]
    stray_closing = closing[(closing + 1 < text.size) & ~np.isin(after, [*field_ends, ord("\r")])]
    unclosed = opening[-1:] if quotes.size % 2 else opening[:0]
    faults = [
        (int(found[0]), kind) for kind, found in enumerate((stray_opening, stray_closing, unclosed)) if found.size
    ]
    if not faults:
        return
    at, kind = min(faults)
    line_start = data.rfind(b"\n", 0, at) + 1
    if kind == 0:  # the field starts after the separator before the quote
        start = max(data.rfind(separator.encode(), line_start, at) + 1, line_start)
    elif kind == 1:  # at the quote that opened it
        start = int(quotes[np.searchsorted(quotes, at) - 1])
    else:
        start = at
    ends = [found for mark in (separator.encode(), b"\n") if (found := data.find(mark, at + 1)) >= 0]
    field = data[start : min(ends, default=len(data))].decode("utf-8", errors="replace").rstrip("\r")
    line = first_line + data.count(b"\n", 0, at)
    problem = [
        f"a quote inside a field not in quotes ({_shown(field)}): put the field in quotes and double its quote "
        f"({_shown(chr(34) + field.replace(chr(34), chr(34) * 2) + chr(34))})",
        f'a quote inside a quoted field ({_shown(field)}) must be doubled ("")',
        f"a quote opens a field that is never closed ({_shown(field)})",
    ][kind]
    raise contract.FileRejected(source_name, f"not a well-formed CSV file: line {line}: {problem}")


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


def _shown(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "…"
