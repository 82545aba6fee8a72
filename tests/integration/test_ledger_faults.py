"""Issue 9 item 1: the load process killed at each stage, then re-run: nothing lost, doubled or stranded.

Each trial kills a real ``retail_ingest_file`` run (a child process, SIGKILL; tests/integration/faults.py)
at one stage, re-runs ingest and the transform through Airflow, and compares bronze, silver and gold
with a clean load of the same small generated workbook.
"""

from __future__ import annotations

import pytest

from devstack.sample import HEADER, sample_rows, write_workbook
from include.retail.ingest.ledger import batches_missing_from_silver, unannounced_batches
from tests.integration.faults import Stage, kill_ingest_at
from tests.integration.test_transform import snapshot

pytestmark = [pytest.mark.integration]

ROWS = sample_rows(invoices=200)


@pytest.fixture(scope="module")
def workbook(tmp_path_factory):
    return write_workbook(tmp_path_factory.mktemp("faults") / "shop.xlsx", {"Online Retail": [HEADER, *ROWS]})


@pytest.fixture(scope="module")
def next_file(tmp_path_factory):
    """The user's next upload, whose run finds what an earlier one left behind."""
    rows = [[599001, "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 6, ROWS[-1][4], 2.55, 17850.0, "France"]]
    return write_workbook(tmp_path_factory.mktemp("faults") / "next.xlsx", {"Online Retail": [HEADER, *rows]})


def bronze_state(warehouse) -> tuple:
    """Bronze's rows (business columns, sorted) and the count of loaded batches: nothing lost or doubled."""
    rows = warehouse.execute(
        "select invoice_no, stock_code, description, quantity, invoice_date, unit_price, customer_id, country "
        "from bronze.retail_transactions order by 1, 2, 3, 4, 5, 6, 7, 8"
    ).fetchall()
    (loaded,) = warehouse.execute("select count(*) from bronze.load_ledger where status = 'loaded'").fetchone()
    return rows, loaded


@pytest.fixture(scope="module")
def clean_load(workbook, reset_warehouse, upload, run_ingest, run_transform, stack) -> dict:
    """What one uninterrupted load and transform of the workbook leave."""
    import psycopg

    reset_warehouse()
    assert run_ingest(upload(workbook, "incoming/faults/shop.xlsx")).state == "success"
    assert run_transform().state == "success"
    with psycopg.connect(stack.warehouse_url(), autocommit=True) as conn:
        return {"bronze": bronze_state(conn), "tables": snapshot(conn)}


def test_killed_during_copy_leaves_nothing_and_the_rerun_loads_the_file(
    clean_load, workbook, reset_warehouse, upload, run_ingest, run_transform, warehouse, keys_under
) -> None:
    reset_warehouse()
    key = upload(workbook, "incoming/faults/shop.xlsx")

    outcome = kill_ingest_at(Stage.DURING_COPY, key)

    assert outcome.killed, outcome.output
    assert warehouse.execute("select count(*) from bronze.retail_transactions").fetchone()[0] == 0
    assert key in keys_under("incoming/")
    rerun = run_ingest(key)
    assert rerun.state == "success"
    assert [alert["subject"] for alert in rerun.alerts] == [f"[retail] Loaded 1 file, {len(ROWS):,} rows into bronze"]
    assert run_transform().state == "success"
    assert bronze_state(warehouse) == clean_load["bronze"]
    assert snapshot(warehouse) == clean_load["tables"]
    assert batches_missing_from_silver(warehouse) == []


def test_killed_after_commit_before_the_move_the_rerun_announces_the_stranded_batch(
    clean_load, workbook, reset_warehouse, upload, run_ingest, run_transform, warehouse, keys_under
) -> None:
    reset_warehouse()
    key = upload(workbook, "incoming/faults/shop.xlsx")

    outcome = kill_ingest_at(Stage.AFTER_COMMIT, key)

    assert outcome.killed, outcome.output
    assert key in keys_under("incoming/")  # never moved
    (stranded,) = unannounced_batches(warehouse)
    assert (stranded["key"], stranded["rows_loaded"]) == (key, len(ROWS))
    assert [batch["batch_id"] for batch in batches_missing_from_silver(warehouse)] == [stranded["batch_id"]]

    rerun = run_ingest(key)  # finds the content loaded: a duplicate, moved; and announces the stranded batch

    assert rerun.state == "success"
    assert "processed/faults/shop.xlsx" in keys_under("processed/")
    (alert,) = rerun.alerts
    assert alert["subject"] == f"[retail] Loaded 1 file, {len(ROWS):,} rows into bronze"
    assert f"- {key}: loaded, {len(ROWS):,} rows (batch {stranded['batch_id']})" in alert["message"]
    assert unannounced_batches(warehouse) == []
    assert run_transform().state == "success"
    assert bronze_state(warehouse) == clean_load["bronze"]
    assert snapshot(warehouse) == clean_load["tables"]
    assert batches_missing_from_silver(warehouse) == []


def test_killed_after_the_move_before_the_announcement_the_next_run_announces_it(
    clean_load, workbook, next_file, reset_warehouse, upload, run_ingest, run_transform, warehouse, keys_under
) -> None:
    reset_warehouse()
    key = upload(workbook, "incoming/faults/shop.xlsx")

    outcome = kill_ingest_at(Stage.AFTER_MOVE, key)

    assert outcome.killed, outcome.output
    assert "processed/faults/shop.xlsx" in keys_under("processed/")
    (stranded,) = unannounced_batches(warehouse)

    # The next run (here: the user's next file) announces the stranded batch with its own load.
    following = run_ingest(upload(next_file, "incoming/faults/next.xlsx"))

    assert following.state == "success"
    (alert,) = following.alerts
    assert alert["subject"] == f"[retail] Loaded 2 files, {len(ROWS) + 1:,} rows into bronze"
    assert f"- {key}: loaded, {len(ROWS):,} rows (batch {stranded['batch_id']})" in alert["message"]
    assert unannounced_batches(warehouse) == []
    assert run_transform().state == "success"
    assert batches_missing_from_silver(warehouse) == []
    # Everything of the workbook is there exactly once, next to the one row of the next file.
    rows, loaded = bronze_state(warehouse)
    clean_rows, _ = clean_load["bronze"]
    assert (len(rows), loaded) == (len(clean_rows) + 1, 2)
    (silver_rows,) = warehouse.execute(
        "select sum(source_rows) from silver.transactions where source_key = %s", (key,)
    ).fetchone()
    (set_aside,) = warehouse.execute(
        "select count(*) from silver.transactions_set_aside where source_key = %s", (key,)
    ).fetchone()
    assert silver_rows + set_aside == len(ROWS)


def test_a_retry_of_the_announcing_run_announces_again_what_it_marked(warehouse, stack) -> None:
    """The window between marking a batch announced and Airflow recording the Asset event: a retry of the
    same run finds the batches it marked, so a task that died there still emits the event."""
    import psycopg

    from include.retail.ingest.ledger import batches_announced_by, mark_announced

    stack.reset_warehouse()
    with psycopg.connect(stack.warehouse_url("retail_loader"), autocommit=True) as conn:
        conn.execute(
            "insert into bronze.load_ledger (batch_id, source_key, source_version, status, rows_loaded, started_at) "
            "values ('00000000-0000-0000-0000-000000000001', 'incoming/w.xlsx', 'v', 'loaded', 5, now())"
        )
        (batch,) = unannounced_batches(conn)
        mark_announced(conn, [batch["batch_id"]], run_id="run-1")
        assert unannounced_batches(conn) == []
        assert [b["batch_id"] for b in batches_announced_by(conn, "run-1")] == [batch["batch_id"]]
        assert batches_announced_by(conn, "run-2") == []
        mark_announced(conn, [batch["batch_id"]], run_id="run-2")  # another run does not take it over
        assert [b["batch_id"] for b in batches_announced_by(conn, "run-1")] == [batch["batch_id"]]
