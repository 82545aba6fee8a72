from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from devstack.sample import HEADER, write_csv, write_workbook
from include.retail.ingest.contract import FileRejected
from include.retail.ingest.reader import read_source

ROWS = [
    [
        536365,
        85123,
        "WHITE HANGING HEART T-LIGHT HOLDER",
        6,
        datetime(2010, 12, 1, 8, 26),
        2.55,
        17850.0,
        "United Kingdom",
    ],
    ["C536379", "D", "Discount", -1, datetime(2010, 12, 1, 9, 41), 27.5, 14527.0, "United Kingdom"],
    [536370, "POST", "POSTAGE", 3, datetime(2010, 12, 1, 8, 45), 18.0, None, "France"],
]


def test_mixed_type_codes_survive_as_text(tmp_path: Path) -> None:
    path = write_workbook(tmp_path / "mixed.xlsx", {"Online Retail": [HEADER, *ROWS]})
    contents = read_source(path, "incoming/mixed.xlsx")
    (sheet,) = contents.sheets
    assert sheet.name == "Online Retail"
    rows = sheet.raw.to_dicts()
    # A numeric InvoiceNo cell and a "C…" text cell in one column both arrive, as text.
    assert [row["invoice_no"] for row in rows] == ["536365", "C536379", "536370"]
    assert [row["stock_code"] for row in rows] == ["85123", "D", "POST"]
    assert rows[0]["customer_id"] == "17850"  # the float 17850.0 as the code it is
    assert rows[2]["customer_id"] is None
    assert rows[0]["invoice_date"] == "2010-12-01 08:26:00"
    assert [row["source_row"] for row in rows] == [2, 3, 4]


def test_every_sheet_that_meets_the_contract_is_read_and_notes_are_ignored(tmp_path: Path) -> None:
    later_edition = [
        "Invoice",
        "StockCode",
        "Description",
        "Quantity",
        "InvoiceDate",
        "Price",
        "Customer ID",
        "Country",
    ]
    path = write_workbook(
        tmp_path / "two_years.xlsx",
        {
            "Year 2009-2010": [later_edition, ROWS[0]],
            "About": [["Notes"], ["Exported from the shop system"]],
            "Year 2010-2011": [later_edition, ROWS[1], ROWS[2]],
        },
    )
    contents = read_source(path, "incoming/two_years.xlsx")
    assert [sheet.name for sheet in contents.sheets] == ["Year 2009-2010", "Year 2010-2011"]
    assert contents.ignored_sheets == ["About"]
    assert contents.row_count == 3
    assert contents.sheets[1].written_as["unit_price"] == "Price"


def test_a_sheet_missing_a_column_rejects_the_file_naming_sheet_and_column(tmp_path: Path) -> None:
    header = [name for name in HEADER if name != "CustomerID"]
    path = write_workbook(tmp_path / "broken.xlsx", {"Good": [HEADER, ROWS[0]], "Bad": [header, ROWS[1][:7]]})
    with pytest.raises(FileRejected) as rejection:
        read_source(path, "incoming/broken.xlsx")
    message = str(rejection.value)
    assert message.startswith("incoming/broken.xlsx: sheet 'Bad': missing required column(s): CustomerID")
    assert "the header (row 1) reads ['InvoiceNo', 'StockCode'" in message  # as the file writes it


def test_blank_rows_are_skipped_and_row_numbers_kept(tmp_path: Path) -> None:
    path = write_workbook(tmp_path / "gaps.xlsx", {"S": [HEADER, ROWS[0], [None] * 8, ROWS[1]]})
    (sheet,) = read_source(path, "incoming/gaps.xlsx").sheets
    assert sheet.raw["source_row"].to_list() == [2, 4]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "iso-8859-1", "cp1252"])
def test_csv_in_utf8_or_iso_8859_1(tmp_path: Path, encoding: str) -> None:
    rows = [[*ROWS[0][:2], "RETRO COFFEE MUGS £5 SET", *ROWS[0][3:]]]
    path = write_csv(tmp_path / "export.csv", [HEADER, *rows], encoding=encoding)
    contents = read_source(path, "incoming/export.csv")
    (sheet,) = contents.sheets
    assert sheet.name is None
    assert sheet.raw["description"].to_list() == ["RETRO COFFEE MUGS £5 SET"]
    assert sheet.raw["invoice_date"].to_list() == ["2010-12-01 08:26:00"]
    assert contents.encoding == {"utf-8-sig": "utf-8", "iso-8859-1": "cp1252"}.get(encoding, encoding)


def test_semicolon_separated_csv(tmp_path: Path) -> None:
    path = tmp_path / "semicolons.csv"
    path.write_text(";".join(HEADER) + "\n536365;85123A;HEART;6;2010-12-01 08:26:00;2,55;17850;United Kingdom\n")
    (sheet,) = read_source(path, "incoming/semicolons.csv").sheets
    assert sheet.raw.row(0, named=True)["unit_price"] == "2,55"  # typing will reject it, with a reason


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("notes.txt", b"hello", "unsupported file type '.txt': expected one of .xlsx, .csv"),
        ("fake.xlsx", b"this is not a zip file", "truncated or not an .xlsx workbook"),
        ("empty.csv", ",".join(HEADER).encode() + b"\n", "the file has a header but no data rows"),
        ("other.csv", b"a,b\n1,2\n", "row 1 is read as the header but has none of the contract's columns"),
    ],
)
def test_unreadable_files_are_rejected_with_a_reason(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(FileRejected) as rejection:
        read_source(path, f"incoming/{name}")
    assert rejection.value.source == f"incoming/{name}"
    assert reason in rejection.value.reason


def test_a_csv_without_a_header_says_what_row_1_holds(tmp_path: Path) -> None:
    path = tmp_path / "headless.csv"
    path.write_text("536365,85123A,HEART,6\n")
    with pytest.raises(FileRejected) as rejection:
        read_source(path, "incoming/headless.csv")
    assert rejection.value.reason == (
        "row 1 is read as the header but has none of the contract's columns (InvoiceNo (or Invoice), StockCode, "
        "Description, Quantity, InvoiceDate, UnitPrice (or Price), CustomerID (or Customer ID), Country); "
        "it holds ['536365', '85123A', 'HEART', '6']"
    )


def test_the_order_of_slash_dates_is_settled_by_every_sheet_of_the_file(tmp_path: Path) -> None:
    """Issue 22: the evidence (13/12 only reads day-first) may be in any sheet; the order is the file's."""
    rows = [[536365, "85123A", "HEART", 6, date, 2.55, 17850.0, "UK"] for date in ("1/12/2010 8:26", "13/12/2010")]
    path = write_workbook(tmp_path / "text_dates.xlsx", {"2010": [HEADER, rows[0]], "2011": [HEADER, rows[1]]})
    assert read_source(path, "incoming/text_dates.xlsx").date_order == "day_first"

    ambiguous = write_workbook(tmp_path / "ambiguous.xlsx", {"2010": [HEADER, rows[0]]})
    with pytest.raises(FileRejected, match="sheet '2010' row 2: '1/12/2010 8:26' is 1 December or 12 January 2010"):
        read_source(ambiguous, "incoming/ambiguous.xlsx")
    assert read_source(ambiguous, "incoming/ambiguous.xlsx", declared_date_order="month_first").date_order == (
        "month_first"
    )
    assert read_source(write_workbook(tmp_path / "cells.xlsx", {"S": [HEADER, *ROWS]}), "x.xlsx").date_order is None
