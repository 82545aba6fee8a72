"""The batched read (issue 15): a workbook cut into batches reads as it reads whole, and a breach found in a
late batch still rejects the file."""

from __future__ import annotations

import csv
import io
import random
import re
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from devstack.sample import HEADER, sample_rows, write_csv, write_workbook
from include.retail.ingest import workbook_limits
from include.retail.ingest.contract import MAX_CELL_CHARACTERS, FileRejected, type_rows
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
    (
        b"536365,85123A,WHITE,6,2010-12-01 08:26:00,2.55,17850,United Kingdom,extra",
        b"",
        "not a well-formed CSV file: line 60001 has 9 fields where the header has 8: a value holding the separator "
        "',' must be in quotes",
    ),
    (b"536365,85123A,\xff,6", b"\xef\xbb\xbf", "the CSV starts as UTF-8 but does not decode as it"),
    (
        b'536365,85123A,12" RULER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom',
        b"",
        'not a well-formed CSV file: line 60001: a quote inside a field not in quotes (12" RULER)',
    ),
]


@pytest.mark.parametrize(
    ("last_line", "bom", "reason"), LATE_CSV_BREACHES, ids=["long-cell", "ragged", "encoding", "inch-mark"]
)
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


def dated_csv(path: Path, dates: list[str]) -> Path:
    """A CSV whose rows are dated ``dates`` (as written), otherwise valid."""
    lines = [f"536365,85123A,HEART,6,{date},2.55,17850,UK" for date in dates]
    path.write_text("\n".join([",".join(HEADER), *lines]) + "\n")
    return path


def typed_batches(path: Path, source_name: str, batch_rows: int, declared: str | None = None):
    found, batches = iter_batches(path, source_name, None, batch_rows, declared)
    typed = [
        type_rows(batch.sheet.raw, batch.sheet.written_as, date_order=found.date_order, row_faults=batch.row_faults)
        for batch in batches
    ]
    return found, pl.concat([sheet.rows for sheet in typed]), pl.concat([sheet.rejected for sheet in typed])


def test_the_day_first_evidence_of_a_csvs_last_row_settles_its_first_batch(tmp_path: Path) -> None:
    """Issue 22: 1-12 December day-first read month-first would be 12 January to 12 December; only the last row
    (13/12) tells. The whole file's date column is read ahead, so the first batch is read day-first too."""
    dates = [f"{day}/12/2010 09:00" for day in range(1, 13)] * 3 + ["13/12/2010 09:00"]
    path = dated_csv(tmp_path / "uk.csv", dates)

    found, rows, rejected = typed_batches(path, "incoming/uk.csv", batch_rows=5)

    assert found.date_order == "day_first"
    assert rejected.height == 0
    assert set(rows["invoice_date"].dt.month()) == {12}
    assert rows["invoice_date"].dt.day().to_list() == [*list(range(1, 13)) * 3, 13]


def test_a_csv_whose_last_row_is_month_first_is_rejected_before_its_first_batch(tmp_path: Path) -> None:
    path = dated_csv(tmp_path / "mixed.csv", ["13/12/2010 09:00", *["1/12/2010 09:00"] * 20, "12/13/2010 09:00"])
    _found, batches = iter_batches(path, "incoming/mixed.csv", None, 5)
    with pytest.raises(FileRejected) as rejection:
        next(batches)
    assert "row 2: '13/12/2010 09:00' reads only day-first, row 23: '12/13/2010 09:00' only month-first" in (
        rejection.value.reason
    )


def test_a_declared_order_settles_a_csv_its_dates_cannot(tmp_path: Path) -> None:
    path = dated_csv(tmp_path / "uk.csv", [f"{day:02d}/12/2010 09:00" for day in range(1, 11)])
    with pytest.raises(FileRejected, match="cannot be told from the file"):
        typed_batches(path, "incoming/uk.csv", 3)

    found, rows, _ = typed_batches(path, "incoming/uk.csv", 3, declared="day_first")
    assert found.date_order == "day_first"
    assert rows["invoice_date"].dt.day().to_list() == list(range(1, 11))


def test_the_evidence_of_a_csvs_late_batch_settles_the_childs_first(tmp_path: Path) -> None:
    """Through the reader's child, whose batches are of BATCH_ROWS (50,000): the first batch's dates all read both
    ways, the 60,001st row settles them."""
    path = dated_csv(tmp_path / "late.csv", ["01/12/2010 08:26"] * 60_000 + ["13/12/2010 08:26"])
    source = read_typed(path, "incoming/late.csv")
    first = next(source.batches())
    assert 0 < first.rows.height < 60_000  # about BATCH_ROWS
    assert set(first.rows["invoice_date"]) == {datetime(2010, 12, 1, 8, 26)}
    source.close()


def text_dated_workbook(path: Path, dates: list[str]) -> Path:
    """A workbook whose InvoiceDate cells are text (as a workbook of another locale's dates holds them)."""
    rows = [[536365 + n, "85123A", "HEART", 6, date, 2.55, 17850.0, "UK"] for n, date in enumerate(dates)]
    return write_workbook(path, {"Online Retail": [HEADER, *rows]})


def test_a_workbooks_text_dates_are_settled_by_the_rows_read_so_far(tmp_path: Path) -> None:
    settled = text_dated_workbook(tmp_path / "settled.xlsx", ["13/12/2010 09:00", *["1/12/2010 09:00"] * 10])
    found, batches = iter_batches(settled, "incoming/settled.xlsx", layout_of(settled), 4)
    first = next(batches)
    assert found.date_order == "day_first"
    assert first.sheet.raw.height + sum(batch.sheet.raw.height for batch in batches) == 11  # in several batches
    assert first.sheet.raw.height < 11

    # The same rows, the evidence last: a whole read settles them, a batched read of a workbook does not.
    unsettled = text_dated_workbook(tmp_path / "late.xlsx", [*["1/12/2010 09:00"] * 10, "13/12/2010 09:00"])
    assert read_source(unsettled, "incoming/late.xlsx").date_order == "day_first"
    _found, batches = iter_batches(unsettled, "incoming/late.xlsx", layout_of(unsettled), 4)
    with pytest.raises(FileRejected) as rejection:
        next(batches)
    last_read = re.search(
        r"cannot be told from the file up to sheet 'Online Retail' row (\d+) \(the rows read so far\)",
        rejection.value.reason,
    )
    assert last_read
    assert int(last_read.group(1)) < 12


def test_a_workbooks_text_dates_contradicted_in_a_later_batch_reject_the_file(tmp_path: Path) -> None:
    path = text_dated_workbook(tmp_path / "mixed.xlsx", ["13/12/2010 09:00", *["1/12/2010 09:00"] * 8, "12/13/2010"])
    _found, batches = iter_batches(path, "incoming/mixed.xlsx", layout_of(path), 4)
    next(batches)
    with pytest.raises(FileRejected) as rejection:
        list(batches)
    assert "sheet 'Online Retail' row 2: '13/12/2010 09:00' reads only day-first, sheet 'Online Retail' row 11: " in (
        rejection.value.reason
    )


def test_a_workbooks_date_cells_need_no_order(tmp_path: Path) -> None:
    path = write_workbook(tmp_path / "cells.xlsx", {"Online Retail": [HEADER, *sample_rows(5)]})
    found, _rows, rejected = typed_batches(path, "incoming/cells.xlsx", 3)
    assert (found.date_order, rejected.height) == (None, 0)


@pytest.mark.parametrize("batch_rows", [1, 4, 10**6])
@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_csv_lines_shorter_than_the_header_are_the_rows_polars_would_fill(
    tmp_path: Path, batch_rows: int, line_end: str
) -> None:
    """Fields counted as the csv module counts them, whatever the quotes, separators and line ends in values."""
    rng = random.Random(22)
    values = ["PLAIN", "", 'A "QUOTED" NAME', "COMMA, INSIDE", "TWO\nLINES", '12"" RULER', ""]
    rows = []
    for n in range(60):
        row = [
            str(536365 + n),
            "85123A",
            rng.choice(values),
            "6",
            "2010-12-01 08:26:00",
            "2.55",
            "",
            rng.choice(values),
        ]
        rows.append(row[: rng.choice([8, 8, 8, 7, 6, 3, 1])] if n % 9 else [])
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=line_end).writerows([HEADER, *rows])
    path = tmp_path / "ragged.csv"
    path.write_bytes(buffer.getvalue().encode())

    found, batches = iter_batches(path, "incoming/ragged.csv", None, batch_rows)
    faults = pl.concat([batch.row_faults for batch in batches if batch.row_faults is not None])

    expected = [
        (number, f"{len(row)} fields where the header has 8 (a line cut short?)")
        for number, row in enumerate(csv.reader(io.StringIO(buffer.getvalue())), start=1)
        if 0 < len(row) < 8 and any(row)
    ]
    assert faults.rows() == expected
    assert found.row_count == 60 - 7  # blank lines are layout


def test_the_line_of_a_malformed_quote_counts_the_lines_of_values_before(tmp_path: Path) -> None:
    path = tmp_path / "inch.csv"
    lines = [
        ",".join(HEADER),
        '536365,85123A,"TWO\nLINES",6,2010-12-01 08:26:00,2.55,,UK',
        *["536365,85123A,X,6,2010-12-01 08:26:00,2.55,,UK"] * 5,
    ]
    path.write_text("\n".join([*lines, '536365,85123A,12" RULER,6,2010-12-01 08:26:00,2.55,,UK']) + "\n")
    for batch_rows in (2, 10**6):
        _found, batches = iter_batches(path, "incoming/inch.csv", None, batch_rows)
        with pytest.raises(FileRejected, match="line 9: a quote inside a field not in quotes"):
            list(batches)
