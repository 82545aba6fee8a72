"""The batched read (issue 15): a workbook cut into batches reads as it reads whole, and a breach found in a
late batch still rejects the file."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from devstack.sample import HEADER, sample_rows, write_csv, write_workbook
from include.retail.ingest import workbook_limits
from include.retail.ingest.contract import MAX_CELL_CHARACTERS, FileRejected
from include.retail.ingest.reader import iter_batches, read_source
from include.retail.ingest.sandboxed_read import read_typed
from tests import hostile_files


def layout_of(path: Path):
    reason, layout = workbook_limits.check_file(
        path, path.name, max_uncompressed_mb=1024, max_compression_ratio=100, max_sheet_cells=10**9
    )
    assert reason is None
    return layout


@pytest.mark.parametrize("batch_rows", [1, 7, 100, 10**6])
def test_batches_hold_every_row_once_typed_as_the_whole_read(tmp_path: Path, batch_rows: int) -> None:
    rows = sample_rows(40)
    rows[10] = [None] * len(HEADER)  # a wholly blank line inside a batch, or on its edge
    path = write_workbook(tmp_path / "sample.xlsx", {"Notes": [["read me"]], "Online Retail": [HEADER, *rows]})
    whole = read_source(path, "incoming/sample.xlsx", layout_of(path))
    found, batches = iter_batches(path, "incoming/sample.xlsx", layout_of(path), batch_rows)
    parts = [batch.sheet.raw for batch in batches]

    assert len(parts) > 1 or batch_rows == 10**6
    assert pl.concat(parts).equals(whole.sheets[0].raw)  # no row lost, duplicated or mistyped at an edge
    assert found.row_count == whole.row_count
    assert found.ignored_sheets == ["Notes"]


def test_a_formula_in_a_late_batch_rejects_its_row(tmp_path: Path) -> None:
    path = hostile_files.formula_workbook(tmp_path / "formula.xlsx")
    _found, batches = iter_batches(path, "incoming/formula.xlsx", layout_of(path), 1)
    formulas = [cell for batch in batches for cell in batch.formulas]
    assert formulas == [(3, 4)]  # row 3, column D (Quantity), as unsaved_formulas finds it


def test_a_breach_in_a_late_batch_rejects_the_file(tmp_path: Path) -> None:
    rows = [hostile_files.row_xml(1, hostile_files.HEADER)]
    rows += [hostile_files.row_xml(number, [*hostile_files.ROW, "United Kingdom"]) for number in range(2, 60_000)]
    rows.append(hostile_files.row_xml(60_000, [*hostile_files.ROW[:2], "x" * (MAX_CELL_CHARACTERS + 1)]))
    path = hostile_files.write_raw_workbook(tmp_path / "late.xlsx", rows)

    source = read_typed(path, "incoming/late.xlsx")  # the first batch is read: the breach is not yet found
    first = next(source.batches())
    assert first.rows.height > 0
    with pytest.raises(FileRejected) as rejection:
        list(source.batches())
    assert "row 60000: Description holds 32,768 characters" in rejection.value.reason
    source.close()
    assert list(tmp_path.iterdir()) == [path]  # the child's files are gone


def csv_rows(count: int) -> list[list]:
    rows = sample_rows(count)
    rows[3][2] = 'A "QUOTED" NAME,\nON TWO LINES'  # a quoted line end and separator: one record, not two
    rows[5][2] = "CRÈME BRÛLÉE DISH"
    rows[8] = [None] * len(HEADER)  # a wholly blank line: left out, the numbering of the others kept
    return rows


def assert_batches_read_as_whole(path: Path, batch_rows: int) -> None:
    name = f"incoming/{path.name}"
    whole = read_source(path, name)
    found, batches = iter_batches(path, name, None, batch_rows)
    parts = [batch.sheet.raw for batch in batches]
    assert len(parts) > 1 or batch_rows == 10**6
    assert pl.concat(parts).equals(whole.sheets[0].raw)
    assert (found.row_count, found.encoding) == (whole.row_count, whole.encoding)


@pytest.mark.parametrize("batch_rows", [1, 2, 7, 10**6])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252", "iso-8859-1", "utf-16"])
def test_csv_batches_hold_every_row_once_as_the_whole_read(tmp_path: Path, encoding: str, batch_rows: int) -> None:
    path = write_csv(tmp_path / "export.csv", [HEADER, *csv_rows(30)], encoding=encoding)
    assert_batches_read_as_whole(path, batch_rows)


@pytest.mark.parametrize("batch_rows", [1, 3, 10**6])
def test_csv_batches_with_crlf_semicolons_blank_lines_and_no_last_line_end(tmp_path: Path, batch_rows: int) -> None:
    lines = write_csv(tmp_path / "a.csv", [HEADER, *csv_rows(20)]).read_bytes().split(b"\r\n")
    lines[6:6] = [b"", b""]  # empty lines are parsed as blank rows, and numbered
    path = tmp_path / "semicolons.csv"
    path.write_bytes(b"\r\n".join(lines).replace(b",", b";").rstrip(b"\r\n"))
    assert_batches_read_as_whole(path, batch_rows)


def late_breach_csv(path: Path, last_line: bytes, *, rows: int = 60_000, bom: bytes = b"") -> Path:
    """A CSV whose breach is on its last line, past the first batch (BATCH_ROWS) of the reader's child."""
    header = ",".join(HEADER).encode()
    line = b"536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom"
    path.write_bytes(bom + b"\n".join([header, *[line] * (rows - 1), last_line]) + b"\n")
    return path


LATE_CSV_BREACHES = [
    (b"536365,85123A," + b"x" * (MAX_CELL_CHARACTERS + 1), b"", "row 60001: Description holds 32,768 characters"),
    (b"536365,85123A,WHITE,6,2010-12-01 08:26:00,2.55,17850,United Kingdom,extra", b"", "not a well-formed CSV file"),
    (b"536365,85123A,\xff,6", b"\xef\xbb\xbf", "the CSV starts as UTF-8 but does not decode as it"),
]


@pytest.mark.parametrize(("last_line", "bom", "reason"), LATE_CSV_BREACHES, ids=["long-cell", "ragged", "encoding"])
def test_a_breach_in_a_late_csv_batch_rejects_the_file_as_the_whole_read(
    tmp_path: Path, last_line: bytes, bom: bytes, reason: str
) -> None:
    path = late_breach_csv(tmp_path / "late.csv", last_line, bom=bom)
    with pytest.raises(FileRejected) as whole:
        read_source(path, "incoming/late.csv")
    _found, batches = iter_batches(path, "incoming/late.csv", None, 1000)
    with pytest.raises(FileRejected) as batched:
        list(batches)
    assert reason in batched.value.reason
    assert batched.value.reason == whole.value.reason


def test_a_late_csv_breach_is_found_after_the_first_batch_is_handed_out(tmp_path: Path) -> None:
    path = late_breach_csv(tmp_path / "late.csv", LATE_CSV_BREACHES[0][0])

    source = read_typed(path, "incoming/late.csv")
    first = next(source.batches())
    assert first.rows.height > 0
    with pytest.raises(FileRejected) as rejection:
        list(source.batches())
    assert LATE_CSV_BREACHES[0][2] in rejection.value.reason
    source.close()
    assert list(tmp_path.iterdir()) == [path]


def test_an_encoding_found_late_is_the_whole_file_s(tmp_path: Path) -> None:
    """A cp1252 byte on the last line makes the whole file cp1252, its earlier UTF-8 text read as cp1252 too."""
    path = late_breach_csv(tmp_path / "late.csv", "536365,85123A,CRÈME,6,2010-12-01 08:26:00,2.55,,UK".encode())
    path.write_bytes(path.read_bytes() + "536365,85123A,€ OFF,6,2010-12-01 08:26:00,2.55,,UK\n".encode("cp1252"))
    assert_batches_read_as_whole(path, 1000)
    found, batches = iter_batches(path, "incoming/late.csv", None, 1000)
    descriptions = pl.concat(batch.sheet.raw for batch in batches)["description"]
    assert found.encoding == "cp1252"
    assert descriptions[-2:].to_list() == ["CRÃˆME", "€ OFF"]
