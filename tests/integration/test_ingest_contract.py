"""Files that break the contract, rows that cannot be typed, later editions, corrections, several files."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from devstack.aws import BUCKET
from devstack.sample import HEADER, write_csv, write_workbook
from include.retail.platform.warehouse import LOADER_ROLE

pytestmark = pytest.mark.integration


def rows(count: int, invoice_start: int = 600000, price: float = 2.55) -> list[list]:
    start = datetime(2011, 1, 3, 9, 0)
    return [
        [
            invoice_start + n,
            85123 if n % 2 else "85123A",
            f"ITEM {n}",
            1 + n % 5,
            start + timedelta(minutes=n),
            price,
            17850.0 if n % 4 else None,
            "United Kingdom",
        ]
        for n in range(count)
    ]


def bronze_rows_of(warehouse: psycopg.Connection, key: str) -> int:
    return warehouse.execute(
        "select count(*) from bronze.retail_transactions where source_key = %s", (key,)
    ).fetchone()[0]


def ledger_of(warehouse: psycopg.Connection, run_id: str) -> list[tuple]:
    return warehouse.execute(
        "select source_key, status, rows_loaded, rows_rejected, error from bronze.load_ledger "
        "where airflow_run_id = %s order by source_key",
        (run_id,),
    ).fetchall()


def _missing_column(folder: Path) -> Path:
    header = [name for name in HEADER if name != "CustomerID"]
    return write_workbook(
        folder / "missing_column.xlsx", {"Online Retail": [header, *(r[:6] + r[7:] for r in rows(5))]}
    )


def _untypeable_rows(folder: Path) -> Path:
    body = rows(20)
    for row in body[:3]:
        row[3] = "a dozen"
    return write_csv(folder / "untypeable.csv", [HEADER, *body])


def _not_a_workbook(folder: Path) -> Path:
    path = folder / "notes.txt"
    path.write_text("not a retail file")
    return path


@pytest.mark.parametrize(
    ("make_file", "reason"),
    [
        (_missing_column, "sheet 'Online Retail': missing required column(s): CustomerID (or Customer ID)"),
        (
            _untypeable_rows,
            "3 of 20 rows (15.0%) have values that cannot be typed, more than the 1.0% allowed; "
            "first: row 2: Quantity: expected a whole number, got 'a dozen'",
        ),
        (_not_a_workbook, "unsupported file type '.txt': expected one of .xlsx, .csv"),
    ],
    ids=["missing-column", "untypeable-rows", "not-a-workbook"],
)
def test_file_breaking_the_contract_is_quarantined_whole_with_a_report_and_an_alert(
    make_file, reason, tmp_path, upload, run_ingest, warehouse, keys_under, read_json
) -> None:
    path = make_file(tmp_path)
    key = upload(path, f"incoming/{path.name}")
    loaded_before = warehouse.execute("select count(*) from bronze.retail_transactions").fetchone()[0]

    run = run_ingest(key)

    assert run.state == "failed"
    assert bronze_rows_of(warehouse, key) == 0
    assert warehouse.execute("select count(*) from bronze.retail_transactions").fetchone()[0] == loaded_before
    ((ledger_key, status, rows_loaded, _, error),) = ledger_of(warehouse, run.run_id)
    assert (ledger_key, status, rows_loaded) == (key, "rejected", 0)
    assert error.startswith(reason)
    assert key not in keys_under("incoming/")
    assert f"quarantine/{path.name}" in keys_under("quarantine/")
    report = read_json(f"quarantine/{path.name}.report.json")
    assert report["file"] == key
    assert report["reason"] == error
    (alert,) = run.alerts
    assert alert["subject"] == f"[retail] FAILED retail_ingest_file.ingest_file: {key}"
    assert f"File:   {key}" in alert["message"]
    assert f"Error:  {key}: {error}" in alert["message"]
    assert "Try:    1 of 3" in alert["message"]  # bad input is final: no retry
    log_path = f"/dags/retail_ingest_file/runs/{quote(run.run_id)}/tasks/ingest_file/mapped/0?try_number=1"
    assert log_path in alert["message"]


def test_rows_that_cannot_be_typed_go_aside_under_the_threshold(tmp_path, upload, run_ingest, warehouse) -> None:
    body = rows(200, invoice_start=610000)
    body[7][5] = "two pounds"
    body[9][2] = "RETRO COFFEE MUGS £5"
    path = write_csv(tmp_path / "latin1_export.csv", [HEADER, *body], encoding="iso-8859-1")
    key = upload(path, "incoming/latin1_export.csv")

    run = run_ingest(key)

    assert run.state == "success"
    assert ledger_of(warehouse, run.run_id) == [(key, "loaded", 199, 1, None)]
    rejected = warehouse.execute(
        "select source_row, reason, raw_values ->> 'UnitPrice' from bronze.rejected_rows where source_key = %s",
        (key,),
    ).fetchall()
    assert rejected == [(9, "UnitPrice: expected a decimal number, got 'two pounds'", "two pounds")]
    description = warehouse.execute(
        "select description from bronze.retail_transactions where source_key = %s and source_row = 11", (key,)
    ).fetchone()[0]
    assert description == "RETRO COFFEE MUGS £5"


def test_what_became_of_an_upload_is_its_latest_ledger_row_since_the_upload(
    tmp_path, upload, run_ingest, warehouse
) -> None:
    """ledger.latest_row_of: what `make demo` prints; a second upload of the same content is a duplicate."""
    from datetime import UTC

    from include.retail.ingest.ledger import Status, latest_row_of

    path = write_csv(tmp_path / "demo_like.csv", [HEADER, *rows(4, invoice_start=615000)])
    before = datetime.now(UTC)
    key = upload(path, "incoming/demo_like.csv")
    assert run_ingest(key).state == "success"
    loaded = latest_row_of(warehouse, key, since=before)

    again = datetime.now(UTC)
    assert run_ingest(upload(path, key)).state == "success"
    duplicate = latest_row_of(warehouse, key, since=again)

    assert loaded == {
        "status": Status.LOADED,
        "rows_loaded": 4,
        "rows_rejected": 0,
        "error": None,
        "duplicate_of": None,
    }
    assert duplicate is not None
    assert duplicate["status"] is Status.DUPLICATE
    assert duplicate["rows_loaded"] == 0
    assert duplicate["duplicate_of"] is not None
    assert latest_row_of(warehouse, key, since=datetime.now(UTC)) is None


def test_later_edition_with_a_sheet_per_year_loads_every_sheet(tmp_path, upload, run_ingest, warehouse) -> None:
    header = ["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price", "Customer ID", "Country"]
    path = write_workbook(
        tmp_path / "online_retail_II.xlsx",
        {"Year 2009-2010": [header, *rows(3, 489434)], "Year 2010-2011": [header, *rows(4, 536365)]},
    )
    key = upload(path, "incoming/online_retail_II.xlsx")

    run = run_ingest(key)

    assert run.state == "success"
    per_sheet = warehouse.execute(
        "select source_sheet, count(*), min(source_row) from bronze.retail_transactions where source_key = %s "
        "group by source_sheet order by source_sheet",
        (key,),
    ).fetchall()
    assert per_sheet == [("Year 2009-2010", 3, 2), ("Year 2010-2011", 4, 2)]


def test_corrected_file_supersedes_the_earlier_load_without_deleting_it(
    tmp_path, upload, run_ingest, warehouse
) -> None:
    key = "incoming/corrections.xlsx"
    upload(write_workbook(tmp_path / "v1.xlsx", {"Online Retail": [HEADER, *rows(3, 620000, price=9.99)]}), key)
    first = run_ingest(key)
    upload(write_workbook(tmp_path / "v2.xlsx", {"Online Retail": [HEADER, *rows(4, 620000, price=2.55)]}), key)
    second = run_ingest(key)

    assert (first.state, second.state) == ("success", "success")
    assert bronze_rows_of(warehouse, key) == 7  # both loads stay
    current = warehouse.execute(
        "select count(*), min(unit_price), max(unit_price) from bronze.retail_transactions_current "
        "where source_key = %s",
        (key,),
    ).fetchone()
    assert current == (4, Decimal("2.55"), Decimal("2.55"))
    ledger = warehouse.execute(
        "select airflow_run_id, superseded_by is not null from bronze.load_ledger where source_key = %s "
        "order by finished_at",
        (key,),
    ).fetchall()
    assert ledger == [(first.run_id, True), (second.run_id, False)]
    assert "supersedes an earlier load" in second.alerts[0]["message"]


def test_sensor_waits_for_uploads_and_one_run_loads_them_all(tmp_path, upload, run_ingest, warehouse) -> None:
    """No key: the deferred sensor fires on what lands under incoming/, and each file gets its task."""
    first = write_workbook(tmp_path / "day1.xlsx", {"Online Retail": [HEADER, *rows(5, 630000)]})
    second = write_csv(tmp_path / "day2.csv", [HEADER, *rows(6, 640000)])
    # Upload while the run is already waiting, so the sensor really defers before it fires.
    uploads = threading.Timer(3.0, lambda: (upload(first, "incoming/day1.xlsx"), upload(second, "incoming/day2.csv")))
    uploads.start()
    try:
        run = run_ingest(None)
    finally:
        uploads.join()

    assert run.state == "success"
    assert [(key, status, loaded) for key, status, loaded, _, _ in ledger_of(warehouse, run.run_id)] == [
        ("incoming/day1.xlsx", "loaded", 5),
        ("incoming/day2.csv", "loaded", 6),
    ]
    assert [alert["subject"] for alert in run.alerts] == ["[retail] Loaded 2 files, 11 rows into bronze"]


def test_manual_run_for_a_file_already_filed_is_skipped_and_a_missing_key_fails_clearly(
    tmp_path, upload, run_ingest, warehouse
) -> None:
    """A manual run queued behind the waiting run may find its file already taken: that is not an error."""
    key = upload(
        write_workbook(tmp_path / "queued.xlsx", {"Online Retail": [HEADER, *rows(2, 650000)]}), "incoming/queued.xlsx"
    )
    assert run_ingest(key).state == "success"

    again = run_ingest(key)  # the object now lives under processed/

    assert again.state == "success"
    assert ledger_of(warehouse, again.run_id) == []
    assert again.alerts == []

    missing = run_ingest("incoming/never-uploaded.xlsx")

    assert missing.state == "failed"
    (alert,) = missing.alerts
    assert "s3://retail-landing/incoming/never-uploaded.xlsx does not exist" in alert["message"]
    assert "Try:    1 of 3" in alert["message"]  # final: no retry


def test_loader_role_may_write_bronze_and_the_ledger_and_nothing_else(stack) -> None:
    with psycopg.connect(stack.warehouse_url(LOADER_ROLE)) as conn:
        for statement in (
            "create table bronze.anything (id int)",
            "delete from bronze.retail_transactions",
            "truncate bronze.load_ledger",
            "update bronze.load_ledger set status = 'loaded'",
            "create schema elsewhere",
            "create table public.anything (id int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()
        conn.execute("select count(*) from bronze.load_ledger")
        conn.execute(
            "insert into bronze.rejected_rows (batch_id, source_key, source_row, reason, raw_values) "
            "values (gen_random_uuid(), 'k', 2, 'r', '{}')"
        )
        conn.rollback()


def test_a_row_written_outside_a_load_has_no_lineage_and_is_refused(stack) -> None:
    """A load COPYs its rows with the file's lineage set for its transaction only (the columns' defaults):
    a row written before a load, or after one in the same session, must not inherit a lineage."""
    row = "insert into bronze.retail_transactions (invoice_no, source_row) values ('536365', 2)"
    with psycopg.connect(stack.warehouse_url(LOADER_ROLE)) as conn:
        with pytest.raises(psycopg.errors.NotNullViolation, match="source_key"):
            conn.execute(row)
        conn.rollback()
        conn.execute(
            "select set_config('retail.load_source_key', 'incoming/a.xlsx', true),"
            " set_config('retail.load_source_version', 'abc', true),"
            " set_config('retail.load_batch_id', gen_random_uuid()::text, true)"
        )
        conn.execute(row)  # inside the load's transaction the lineage is taken
        (lineage,) = conn.execute(
            "select (source_key, source_version) from bronze.retail_transactions where batch_id = "
            "current_setting('retail.load_batch_id')::uuid"
        ).fetchone()
        assert lineage == ("incoming/a.xlsx", "abc")
        conn.rollback()
        with pytest.raises(psycopg.errors.NotNullViolation, match="source_key"):
            conn.execute(row)  # the settings ended with that transaction
        conn.rollback()


def test_two_runs_taking_the_same_file_at_once_load_it_once_and_the_second_skips(
    tmp_path, upload, stack, warehouse, keys_under
) -> None:
    """The waiting DAG and a `retail_ingest_file` run can both take one file: the key lock orders them."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from include.retail.ingest.filing import AlreadyHandled
    from include.retail.ingest.load import ingest_object
    from include.retail.platform import config

    key = upload(
        write_workbook(tmp_path / "raced.xlsx", {"Online Retail": [HEADER, *rows(40, 660000)]}), "incoming/raced.xlsx"
    )
    start = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def take(run_id: str) -> None:
        with psycopg.connect(stack.warehouse_url(), autocommit=True) as conn:
            s3 = S3Hook(aws_conn_id=config.AWS_CONN_ID)
            start.wait()
            try:
                outcomes[run_id] = ingest_object(s3, BUCKET, key, conn, run_id=run_id).status
            except AlreadyHandled as skipped:
                outcomes[run_id] = skipped
            except Exception as error:  # reported below, with the other run's outcome
                outcomes[run_id] = error

    runs = [threading.Thread(target=take, args=(f"race-{n}",)) for n in (1, 2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()

    assert sorted(type(outcome).__name__ for outcome in outcomes.values()) == ["AlreadyHandled", "Status"], outcomes
    assert "loaded" in outcomes.values()
    ledger = warehouse.execute("select status from bronze.load_ledger where source_key = %s", (key,)).fetchall()
    assert ledger == [("loaded",)]
    assert bronze_rows_of(warehouse, key) == 40
    assert keys_under("incoming/raced") == set()
    assert keys_under("processed/raced") == {"processed/raced.xlsx"}
