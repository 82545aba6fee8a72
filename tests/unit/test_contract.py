from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from include.retail.ingest.contract import COLUMNS, FileRejected, check_rejected_share, match_header, type_rows

WRITTEN_AS = {
    "invoice_no": "InvoiceNo",
    "stock_code": "StockCode",
    "description": "Description",
    "quantity": "Quantity",
    "invoice_date": "InvoiceDate",
    "unit_price": "UnitPrice",
    "customer_id": "CustomerID",
    "country": "Country",
}


def raw_rows(*rows: dict) -> pl.DataFrame:
    """Text rows as the reader hands them over; unspecified columns get valid values."""
    valid = {
        "invoice_no": "536365",
        "stock_code": "85123A",
        "description": "WHITE HANGING HEART T-LIGHT HOLDER",
        "quantity": "6",
        "invoice_date": "2010-12-01 08:26:00",
        "unit_price": "2.55",
        "customer_id": "17850",
        "country": "United Kingdom",
    }
    frame = pl.DataFrame([{**valid, **row} for row in rows], schema=dict.fromkeys(COLUMNS, pl.String))
    return frame.with_columns(source_row=pl.int_range(2, frame.height + 2, dtype=pl.Int32))


@pytest.mark.parametrize(
    ("header", "unit_price_heading"),
    [
        (
            ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"],
            "UnitPrice",
        ),
        (
            ["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price", "Customer ID", "Country"],
            "Price",
        ),
        (
            [
                " invoice_no ",
                "STOCK CODE",
                "description",
                "Quantity",
                "Invoice Date",
                "Unit Price",
                "customer_id",
                "Country",
                "Notes",
            ],
            "Unit Price",
        ),
    ],
)
def test_headers_of_every_edition_map_by_name(header: list[str], unit_price_heading: str) -> None:
    match = match_header(header)
    assert match.meets_contract
    assert set(match.columns) == set(COLUMNS)
    assert match.written_as["unit_price"] == unit_price_heading


def test_header_order_does_not_matter() -> None:
    header = ["Country", "CustomerID", "UnitPrice", "InvoiceDate", "Quantity", "Description", "StockCode", "InvoiceNo"]
    match = match_header(header)
    assert match.columns["invoice_no"] == 7
    assert match.columns["country"] == 0


def test_missing_column_is_named_as_a_reader_would_look_for_it() -> None:
    match = match_header(["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "Country"])
    assert not match.meets_contract
    assert match.missing == ("customer_id",)
    assert "CustomerID (or Customer ID)" in match.problem()


def test_two_headers_claiming_one_column_are_ambiguous() -> None:
    match = match_header(["Invoice", "InvoiceNo", "StockCode"])
    assert "several headers mean InvoiceNo (or Invoice): 'Invoice', 'InvoiceNo'" in match.problem()


def test_a_sheet_without_contract_columns_is_not_a_data_sheet() -> None:
    assert not match_header(["Notes", "Author"]).is_data_sheet
    assert match_header(["Quantity", "Notes"]).is_data_sheet


def test_values_are_typed_and_text_kept_exactly() -> None:
    typed = type_rows(
        raw_rows(
            {"invoice_no": "C536379", "quantity": "-1", "description": "Discount  ", "customer_id": "14527.0"},
            {"quantity": "6.0", "unit_price": "0.30000000000000004", "invoice_date": "12/1/2010 8:26"},
        ),
        WRITTEN_AS,
        date_order="month_first",
    )
    assert typed.rejected.height == 0
    first, second = typed.rows.to_dicts()
    assert first["invoice_no"] == "C536379"
    assert first["quantity"] == -1
    assert first["description"] == "Discount  "  # bronze trims nothing
    assert first["customer_id"] == 14527
    assert second["quantity"] == 6
    assert second["unit_price"] == "0.30000000000000004"  # exact, as written
    assert second["invoice_date"] == datetime(2010, 12, 1, 8, 26)
    assert typed.rows.schema["quantity"] == pl.Int64
    assert typed.rows.schema["customer_id"] == pl.Int64


@pytest.mark.parametrize(
    ("text", "date_order"),
    [
        ("2010-12-01 08:26:00", None),
        ("2010-12-01T08:26:00", None),
        ("2010-12-01 08:26", None),
        ("2010-12-01 08:26:00.000", None),
        ("2010-12-01 08:26:00", "day_first"),  # ISO is never ambiguous, whatever the file's slash dates
        ("12/1/2010 8:26", "month_first"),
        ("12/01/2010 08:26:00", "month_first"),
        ("1/12/2010 8:26", "day_first"),
        (" 01/12/2010 08:26 ", "day_first"),
    ],
)
def test_known_date_time_spellings_parse(text: str, date_order: str | None) -> None:
    typed = type_rows(raw_rows({"invoice_date": text}), WRITTEN_AS, date_order=date_order)
    assert typed.rows["invoice_date"].to_list() == [datetime(2010, 12, 1, 8, 26)]


def test_slash_dates_are_read_in_the_order_given_and_never_without_one() -> None:
    raw = raw_rows({"invoice_date": "01/12/2010 08:26"}, {"invoice_date": "2/12/2010"})
    day_first = type_rows(raw, WRITTEN_AS, date_order="day_first")
    month_first = type_rows(raw, WRITTEN_AS, date_order="month_first")
    unsettled = type_rows(raw, WRITTEN_AS)

    assert day_first.rows["invoice_date"].to_list() == [datetime(2010, 12, 1, 8, 26), datetime(2010, 12, 2)]
    assert month_first.rows["invoice_date"].to_list() == [datetime(2010, 1, 12, 8, 26), datetime(2010, 2, 12)]
    assert unsettled.rejected["reason"].to_list() == [
        "InvoiceDate: expected a date-time such as 2011-12-09 12:50:00, got '01/12/2010 08:26'",
        "InvoiceDate: expected a date-time such as 2011-12-09 12:50:00, got '2/12/2010'",
    ]


def test_a_date_that_does_not_fit_the_files_order_rejects_its_row_saying_the_order() -> None:
    typed = type_rows(raw_rows({"invoice_date": "12/25/2010 08:26"}), WRITTEN_AS, date_order="day_first")
    assert typed.rejected["reason"].to_list() == [
        "InvoiceDate: expected a date-time such as 2011-12-09 12:50:00 or, as this file writes dates, "
        "9/12/2011 12:50 (day first), got '12/25/2010 08:26'"
    ]


def test_row_faults_of_the_reader_reject_their_rows() -> None:
    faults = pl.DataFrame(
        {"source_row": [3], "reason": ["6 fields where the header has 8 (a line cut short?)"]},
        schema={"source_row": pl.Int32, "reason": pl.String},
    )
    typed = type_rows(raw_rows({}, {"country": None, "customer_id": None}, {}), WRITTEN_AS, row_faults=faults)
    assert typed.rows["source_row"].to_list() == [2, 4]
    assert typed.rejected.select("source_row", "reason").rows() == [
        (3, "6 fields where the header has 8 (a line cut short?)")
    ]


def test_blank_values_are_nulls_not_rejections() -> None:
    typed = type_rows(raw_rows({"customer_id": None, "description": None, "quantity": "  "}), WRITTEN_AS)
    assert typed.rejected.height == 0
    row = typed.rows.row(0, named=True)
    assert row["customer_id"] is None
    assert row["description"] is None
    assert row["quantity"] is None


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("quantity", "1.5", "Quantity: expected a whole number, got '1.5'"),
        ("quantity", "twelve", "Quantity: expected a whole number, got 'twelve'"),
        ("customer_id", "ABC", "CustomerID: expected a whole-number customer code, got 'ABC'"),
        ("unit_price", "NaN", "UnitPrice: expected a decimal number, got 'NaN'"),
        ("unit_price", "£2.55", "UnitPrice: expected a decimal number, got '£2.55'"),
        ("invoice_date", "yesterday", "InvoiceDate: expected a date-time such as 2011-12-09 12:50:00, got 'yesterday'"),
    ],
)
def test_untypeable_value_rejects_its_row_with_a_reason(column: str, value: str, expected: str) -> None:
    typed = type_rows(raw_rows({}, {column: value}, {}), WRITTEN_AS)
    assert typed.rows["source_row"].to_list() == [2, 4]
    assert typed.rejected["source_row"].to_list() == [3]
    assert typed.rejected["reason"].to_list() == [expected]


def test_rejected_row_keeps_every_value_as_written_under_the_files_headers() -> None:
    import json

    written_as = {**WRITTEN_AS, "unit_price": "Price", "customer_id": "Customer ID"}
    typed = type_rows(raw_rows({"quantity": "x", "customer_id": "y"}), written_as)
    (reason,) = typed.rejected["reason"].to_list()
    assert (
        reason
        == "Quantity: expected a whole number, got 'x'; Customer ID: expected a whole-number customer code, got 'y'"
    )
    values = json.loads(typed.rejected["raw_values"][0])
    assert values["Customer ID"] == "y"
    assert values["Price"] == "2.55"


def test_a_nul_character_rejects_its_row_once_naming_the_column() -> None:
    typed = type_rows(raw_rows({}, {"quantity": "6\x00", "country": "U\x00K"}), WRITTEN_AS)
    assert typed.rows["source_row"].to_list() == [2]
    (reason,) = typed.rejected["reason"].to_list()
    assert reason == "Quantity: contains a NUL character; Country: contains a NUL character"


def test_cells_of_formulas_without_results_reject_their_rows() -> None:
    typed = type_rows(raw_rows({}, {"quantity": None}), WRITTEN_AS, unsaved_formulas={"quantity": [3]})
    assert typed.rows["source_row"].to_list() == [2]
    assert typed.rejected["reason"].to_list() == [
        "Quantity: a formula with no saved result: open and save the file in Excel, or export it as CSV"
    ]


def test_too_many_rejected_rows_reject_the_file_naming_the_first() -> None:
    sheet = type_rows(raw_rows({"quantity": "x"}, {}), WRITTEN_AS, sheet_name="Online Retail")

    check_rejected_share("incoming/a.xlsx", [sheet], 2, max_fraction=0.5)  # 1 of 2: at the limit, kept
    with pytest.raises(FileRejected) as rejection:
        check_rejected_share("incoming/a.xlsx", [sheet], 2, max_fraction=0.4)

    assert rejection.value.reason.startswith(
        "1 of 2 rows (50.0%) have values that cannot be typed, more than the 40.0%"
    )
    assert "first: sheet 'Online Retail' row 2: Quantity: expected a whole number, got 'x'" in rejection.value.reason
    assert [row["sheet"] for row in rejection.value.details["rejected_rows"]] == ["Online Retail"]


def test_the_contract_and_the_reader_import_no_airflow() -> None:
    """The reader's child process and any caller outside Airflow use them: FileRejected is a plain exception."""
    import subprocess
    import sys

    probe = (
        "import sys, include.retail.ingest.contract, include.retail.ingest.reader\n"
        "import include.retail.ingest.sandboxed_read\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'airflow'))"
    )
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=repo)
    assert result.stdout.strip() == "[]"


def test_many_rejected_rows_of_columns_in_several_chunks_are_typed() -> None:
    """A CSV parsed by several threads gives text columns in several chunks; formatting the reasons of ~1,000
    rejected rows over them made polars 1.43 panic (the reader then failed instead of rejecting rows)."""
    good, bad = raw_rows(*[{}] * 5_000), raw_rows(*[{"invoice_date": "not a date"}] * 1_001)
    chunked = pl.concat([good.drop("source_row").slice(n, 1_000) for n in range(0, 5_000, 1_000)], rechunk=False)
    raw = pl.concat([chunked, bad.drop("source_row")], rechunk=False).with_columns(
        source_row=pl.int_range(2, 6_003, dtype=pl.Int32)
    )
    assert raw["invoice_date"].n_chunks() > 1

    typed = type_rows(raw, WRITTEN_AS)

    assert (typed.rows.height, typed.rejected.height) == (5_000, 1_001)
    assert typed.rejected["reason"][0] == (
        "InvoiceDate: expected a date-time such as 2011-12-09 12:50:00, got 'not a date'"
    )
