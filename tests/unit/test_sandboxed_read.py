"""Hostile and malformed files (issue 9, items 5, 6, 7, 9 and NUL bytes) through ``read_typed``.

Each file is generated here (``tests.hostile_files``); none may take the test process down with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from include.retail.ingest.contract import FileRejected
from include.retail.ingest.sandboxed_read import ReadLimits, read_typed
from include.retail.ingest.value_rules import ValueRules
from tests import hostile_files


def read_in(folder: Path, make: Callable[[Path], Path], name: str, limits: ReadLimits | None = None):
    """Read a generated file as ingest does: from its own temp folder, named by its S3 key."""
    path = make(folder / name)
    return read_typed(path, f"incoming/{name}", limits)


@pytest.mark.parametrize(("make", "name", "reason"), hostile_files.REJECTED_FILES, ids=hostile_files.REJECTED_FILE_IDS)
def test_hostile_file_is_rejected_naming_the_cause_and_no_local_path(
    tmp_path: Path, make: Callable[[Path], Path], name: str, reason: str
) -> None:
    with pytest.raises(FileRejected) as rejection:
        read_in(tmp_path, make, name)
    assert rejection.value.source == f"incoming/{name}"
    assert reason in rejection.value.reason
    assert str(tmp_path) not in str(rejection.value)
    assert "/tmp" not in str(rejection.value)


def test_a_huge_string_past_the_checks_meets_the_memory_limit(tmp_path: Path) -> None:
    limits = ReadLimits(max_memory_mb=512, max_compression_ratio=10**6)  # the ratio check is off
    with pytest.raises(FileRejected) as rejection:
        read_in(tmp_path, hostile_files.zip_bomb_workbook, "bomb.xlsx", limits)
    assert rejection.value.reason == "needs more than the 512 MB allowed to read"


def test_a_formula_without_a_saved_result_rejects_its_row_naming_the_column(tmp_path: Path) -> None:
    source = read_in(tmp_path, hostile_files.formula_workbook, "by_openpyxl.xlsx")
    (sheet,) = source.sheets
    assert source.row_count == 3
    assert sheet.rows["source_row"].to_list() == [2, 4]
    assert sheet.rows["quantity"].to_list() == [6, 6]  # row 4's formula has its result saved
    (rejected,) = sheet.rejected.to_dicts()
    assert rejected["source_row"] == 3
    assert rejected["reason"] == (
        "Quantity: a formula with no saved result: open and save the file in Excel, or export it as CSV"
    )


def test_a_nul_character_rejects_its_row_naming_the_column(tmp_path: Path) -> None:
    source = read_in(tmp_path, hostile_files.nul_byte_csv, "nul.csv")
    (sheet,) = source.sheets
    assert sheet.rows["source_row"].to_list() == [2, 4]
    assert not any("\x00" in (value or "") for value in sheet.rows["description"].to_list())
    (rejected,) = sheet.rejected.to_dicts()
    assert (rejected["source_row"], rejected["reason"]) == (3, "Description: contains a NUL character")
    assert json.loads(rejected["raw_values"])["Description"] == "WHITE HANGING\u2400HEART"  # storable in jsonb


def test_utf16_csv_with_a_bom_is_read(tmp_path: Path) -> None:
    source = read_in(tmp_path, hostile_files.utf16_csv, "unicode_text.csv")
    (sheet,) = source.sheets
    assert source.encoding == "utf-16"
    assert sheet.rejected.height == 0
    assert sheet.rows["country"].to_list() == ["United Kingdom", "España"]
    assert sheet.rows["quantity"].to_list() == [6, 6]


def test_a_sheet_starting_below_row_1_numbers_rows_as_the_sheet_does(tmp_path: Path) -> None:
    rows = [hostile_files.row_xml(3, hostile_files.HEADER), hostile_files.row_xml(4, [*hostile_files.ROW, "France"])]
    path = hostile_files.write_raw_workbook(tmp_path / "low.xlsx", rows)
    (sheet,) = read_typed(path, "incoming/low.xlsx").sheets
    assert sheet.rows["source_row"].to_list() == [4]


def test_no_header_on_the_first_row_says_which_row_was_read_and_what_it_held(tmp_path: Path) -> None:
    rows = [hostile_files.row_xml(2, ["Monthly export", "2011"]), hostile_files.row_xml(3, hostile_files.HEADER)]
    path = hostile_files.write_raw_workbook(tmp_path / "titled.xlsx", rows)
    with pytest.raises(FileRejected) as rejection:
        read_typed(path, "incoming/titled.xlsx")
    assert rejection.value.reason.endswith(
        "on its first row; sheet 'Online Retail' row 2 holds ['Monthly export', '2011']"
    )


def test_a_plain_workbook_reads_in_the_child_as_in_process(tmp_path: Path) -> None:
    from devstack.sample import HEADER, sample_rows, write_workbook

    path = write_workbook(tmp_path / "sample.xlsx", {"Online Retail": [HEADER, *sample_rows(50)]})
    source = read_typed(path, "incoming/sample.xlsx")
    (sheet,) = source.sheets
    assert source.row_count == sheet.rows.height + sheet.rejected.height > 100
    assert sheet.rows.schema["quantity"].is_integer()
    assert list(tmp_path.iterdir()) == [path]  # the child's frames are cleaned up


@pytest.mark.parametrize(
    ("make", "name", "row", "reason"), hostile_files.BAD_ROW_FILES, ids=hostile_files.BAD_ROW_FILE_IDS
)
def test_one_bad_row_among_a_thousand_is_set_aside_saying_why(
    tmp_path: Path, make: Callable[[Path], Path], name: str, row: int, reason: str
) -> None:
    (sheet,) = read_in(tmp_path, make, name).sheets
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    assert sheet.rows.height == 1_000
    assert sheet.rejected.select("source_row", "reason").rows() == [(row, reason.format(tomorrow=tomorrow))]


def test_the_value_rules_of_the_limits_are_the_childs(tmp_path: Path) -> None:
    """The rules travel with the limits from the task (its Airflow Variables) to the child that types the rows."""
    rules = ValueRules(max_abs_quantity=5, date_orders={"incoming/uk/": "day_first"})
    path = hostile_files.ambiguous_dates_csv(tmp_path / "day_first.csv")

    (sheet,) = read_typed(path, "incoming/uk/day_first.csv", ReadLimits(value_rules=rules)).sheets

    assert sheet.rows.height == 0  # every row holds 6 of them
    assert set(sheet.rejected["reason"]) == {"Quantity: '6' is outside ±5, the plausible range"}
    relaxed = ReadLimits(value_rules=ValueRules(date_orders={"incoming/uk/": "day_first"}))
    (sheet,) = read_typed(path, "incoming/uk/day_first.csv", relaxed).sheets
    assert sheet.rows["invoice_date"].dt.date().to_list() == [date(2010, 12, day) for day in range(1, 11)]
    with pytest.raises(FileRejected, match="the day/month order of its dates cannot be told"):
        read_typed(path, "incoming/us/day_first.csv", relaxed)  # declared for another prefix only
