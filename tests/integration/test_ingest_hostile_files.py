"""Each hostile file of issue 9 through the real ingest DAG: quarantined with a report naming the cause, one
``rejected`` ledger row, the run failed, nothing in bronze; or, for bad rows in a good file, those rows set aside."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests import hostile_files

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("make", "name", "reason"), hostile_files.REJECTED_FILES, ids=hostile_files.REJECTED_FILE_IDS)
def test_hostile_file_is_quarantined_once_with_a_report_naming_the_cause(
    make: Callable[[Path], Path], name: str, reason: str, tmp_path, upload, run_ingest, warehouse, keys_under, read_json
) -> None:
    key = upload(make(tmp_path / name), f"incoming/hostile/{name}")

    run = run_ingest(key)

    assert run.state == "failed"
    rows = warehouse.execute(
        "select status, rows_loaded, error from bronze.load_ledger where airflow_run_id = %s", (run.run_id,)
    ).fetchall()
    assert len(rows) == 1
    status, rows_loaded, error = rows[0]
    assert (status, rows_loaded) == ("rejected", 0)
    assert reason in error
    assert "/tmp" not in error
    assert warehouse.execute(
        "select count(*) from bronze.retail_transactions where source_key = %s", (key,)
    ).fetchone() == (0,)
    assert key not in keys_under("incoming/")
    report = read_json(f"quarantine/hostile/{name}.report.json")
    assert reason in report["reason"]


@pytest.mark.parametrize(
    ("make", "name", "reason"),
    [
        (hostile_files.nul_byte_csv, "nul.csv", "Description: contains a NUL character"),
        (
            hostile_files.formula_workbook,
            "by_openpyxl.xlsx",
            "Quantity: a formula with no saved result: open and save the file in Excel, or export it as CSV",
        ),
    ],
    ids=["nul-byte", "formula-without-result"],
)
def test_bad_cells_reject_their_rows_and_the_rest_loads(
    make: Callable[[Path], Path], name: str, reason: str, tmp_path, upload, run_ingest, warehouse
) -> None:
    """One bad row in 203, under the 1% threshold: the file loads and the row is set aside, saying why."""
    key = upload(make(tmp_path / name, extra_rows=200), f"incoming/hostile/{name}")

    run = run_ingest(key)

    assert run.state == "success"
    assert warehouse.execute(
        "select status, rows_loaded, rows_rejected from bronze.load_ledger where airflow_run_id = %s", (run.run_id,)
    ).fetchall() == [("loaded", 202, 1)]
    rejected = warehouse.execute(
        "select source_row, reason from bronze.rejected_rows where source_key = %s", (key,)
    ).fetchall()
    assert rejected == [(3, reason)]
