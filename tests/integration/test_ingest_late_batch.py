"""Issue 15: files read in batches while the first batches are COPYed. A breach found only in a late batch (a
long cell, a malformed line, too many rejected rows) still rejects the whole file with nothing of it in bronze,
and a large CSV loads every row."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from devstack.aws import BUCKET
from include.retail.ingest import ledger
from include.retail.ingest.contract import MAX_CELL_CHARACTERS, FileRejected
from tests.unit.test_batched_read import late_breach_csv

pytestmark = pytest.mark.integration

ROWS = 60_000  # past the reader's first batch (reader.BATCH_ROWS)
BAD_DATE = b"536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,not a date,2.55,17850,United Kingdom"


def ingest(stack, key: str):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from include.retail.ingest.load import ingest_object
    from include.retail.platform import config

    with psycopg.connect(stack.warehouse_url(), autocommit=True) as conn:
        return ingest_object(S3Hook(aws_conn_id=config.AWS_CONN_ID), BUCKET, key, conn, run_id=f"late-{key}")


def write_bad_share(path: Path) -> Path:
    """The first batch clean, then more than 1% of the file's rows that cannot be typed, all in late batches."""
    late_breach_csv(path, BAD_DATE)
    path.write_bytes(path.read_bytes() + (BAD_DATE + b"\n") * 1_000)
    return path


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        (
            "long_cell.csv",
            lambda path: late_breach_csv(path, b"536365,85123A," + b"x" * (MAX_CELL_CHARACTERS + 1)),
            f"row {ROWS + 1}: Description holds 32,768 characters",
        ),
        (
            "ragged.csv",
            lambda path: late_breach_csv(path, BAD_DATE + b",extra"),
            "not a well-formed CSV file",
        ),
        (
            "late_encoding.csv",
            lambda path: late_breach_csv(path, b"536365,85123A,\xff,6", bom=b"\xef\xbb\xbf"),
            "the CSV starts as UTF-8 but does not decode as it",
        ),
        ("rejected_share.csv", write_bad_share, "have values that cannot be typed"),
    ],
)
def test_a_breach_in_a_late_batch_rejects_the_whole_file_with_nothing_loaded(
    name: str, make, reason: str, tmp_path, upload, stack, warehouse, keys_under
) -> None:
    key = upload(make(tmp_path / name), f"incoming/late_batch/{name}")

    with pytest.raises(FileRejected) as rejection:
        ingest(stack, key)

    assert reason in rejection.value.reason
    assert warehouse.execute(
        "select status, rows_loaded from bronze.load_ledger where source_key = %s", (key,)
    ).fetchall() == [("rejected", 0)]
    for table in ("retail_transactions", "rejected_rows"):
        assert warehouse.execute(f"select count(*) from bronze.{table} where source_key = %s", (key,)).fetchone() == (
            0,
        )
    assert key not in keys_under("incoming/")


def test_a_csv_of_many_batches_loads_every_row_once(tmp_path, upload, stack, warehouse) -> None:
    path = late_breach_csv(tmp_path / "many.csv", BAD_DATE, rows=130_000)  # three batches, one bad row in the last
    key = upload(path, "incoming/late_batch/many.csv")

    result = ingest(stack, key)

    assert (result.status, result.rows_loaded, result.rows_rejected) == ("loaded", 129_999, 1)
    assert warehouse.execute(
        "select count(*), count(distinct source_row), min(source_row), max(source_row) "
        "from bronze.retail_transactions where source_key = %s",
        (key,),
    ).fetchone() == (129_999, 129_999, 2, 130_000)
    assert warehouse.execute(
        "select source_row from bronze.rejected_rows where source_key = %s", (key,)
    ).fetchall() == [(130_001,)]
    # Loaded outside a DAG run: counted as announced, or the next test's run would announce it as stranded.
    ledger.mark_announced(warehouse, [result.batch_id], run_id="test_a_csv_of_many_batches")
