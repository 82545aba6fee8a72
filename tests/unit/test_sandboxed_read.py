"""Hostile and malformed files (issue 9, items 5, 6, 7, 9 and NUL bytes) through ``read_typed``.

Each file is generated here (``tests.hostile_files``); none may take the test process down with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from include.retail.ingest.contract import FileRejected
from include.retail.ingest.sandboxed_read import ReadLimits, read_typed
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
