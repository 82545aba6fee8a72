"""The real Online Retail workbook, uploaded to S3 and loaded by the ingest DAG run through Airflow."""

from __future__ import annotations

import csv
import hashlib
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.real_data]

KEY = "incoming/online_retail.xlsx"


def csv_rows(path: Path) -> list[tuple]:
    """The rows of the CSV export, typed independently of the pipeline, in file order."""

    def integer(text: str) -> int | None:
        return int(text) if text else None

    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        return [
            (
                invoice,
                stock,
                description or None,
                int(quantity),
                datetime.fromisoformat(moment),
                Decimal(price),
                integer(customer),
                country,
            )
            for invoice, stock, description, quantity, moment, price, customer, country in reader
        ]


@pytest.fixture(scope="module")
def first_load(real_workbook: Path, upload, run_ingest):
    upload(real_workbook, KEY)
    return run_ingest(KEY)


def test_run_succeeds_and_announces_the_load(first_load) -> None:
    assert first_load.state == "success"
    subjects = [alert["subject"] for alert in first_load.alerts]
    assert subjects == ["[retail] Loaded 1 file, 541,909 rows into bronze"]


def test_bronze_holds_every_row_exactly_with_lineage(first_load, warehouse, real_workbook, real_csv) -> None:
    version = hashlib.sha256(real_workbook.read_bytes()).hexdigest()
    ledger = warehouse.execute(
        "select batch_id, status, rows_loaded, rows_rejected, sheets from bronze.load_ledger "
        "where source_version = %s and status = 'loaded'",
        (version,),
    ).fetchone()
    assert ledger is not None
    batch_id, status, rows_loaded, rows_rejected, sheets = ledger
    assert (status, rows_loaded, rows_rejected, sheets) == ("loaded", 541909, 0, ["Online Retail"])

    lineage = warehouse.execute(
        """
        select count(*), count(distinct source_row), min(source_row), max(source_row),
               bool_and(source_key = %s and source_version = %s and source_sheet = 'Online Retail'),
               count(distinct loaded_at), bool_and(loaded_at is not null)
        from bronze.retail_transactions where batch_id = %s
        """,
        (KEY, version, batch_id),
    ).fetchone()
    assert lineage == (541909, 541909, 2, 541910, True, 1, True)

    bronze = warehouse.execute(
        """
        select invoice_no, stock_code, description, quantity, invoice_date, unit_price, customer_id, country
        from bronze.retail_transactions where batch_id = %s order by source_row
        """,
        (batch_id,),
    ).fetchall()
    # The CSV export of the same data, read with the csv module: every value equal, row for row.
    expected = csv_rows(real_csv)
    assert len(bronze) == len(expected) == 541909
    mismatches = [
        (number + 2, got, want) for number, (got, want) in enumerate(zip(bronze, expected, strict=True)) if got != want
    ]
    assert mismatches[:5] == []


def test_the_real_datas_quirks_survive(first_load, warehouse) -> None:
    facts = warehouse.execute(
        """
        select
            count(*) filter (where invoice_no like 'C%%'),
            count(*) filter (where customer_id is null),
            count(*) filter (where description is null),
            count(*) filter (where description <> rtrim(description)),
            min(unit_price), max(unit_price), min(quantity), max(quantity),
            count(distinct country)
        from bronze.retail_transactions_current where source_key = %s
        """,
        (KEY,),
    ).fetchone()
    assert facts == (9288, 135080, 1454, 112626, Decimal("-11062.06"), Decimal("38970"), -80995, 80995, 38)


def test_object_moved_to_processed(first_load, keys_under) -> None:
    assert KEY not in keys_under("incoming/")
    assert "processed/online_retail.xlsx" in keys_under("processed/")


def test_same_file_again_adds_nothing(first_load, real_workbook, upload, run_ingest, warehouse, keys_under) -> None:
    before = warehouse.execute("select count(*) from bronze.retail_transactions").fetchone()[0]
    upload(real_workbook, KEY)
    again = run_ingest(KEY)
    assert again.state == "success"
    assert warehouse.execute("select count(*) from bronze.retail_transactions").fetchone()[0] == before
    status, duplicate_of = warehouse.execute(
        "select status, duplicate_of from bronze.load_ledger where airflow_run_id = %s", (again.run_id,)
    ).fetchone()
    assert status == "duplicate"
    assert duplicate_of is not None
    assert again.alerts == []  # nothing loaded, nothing to announce
    assert KEY not in keys_under("incoming/")
