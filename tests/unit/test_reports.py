"""The SNS summaries: what an ingest run loaded, and what a transform built and the tests dbt ran."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

from include.retail.ingest.announce import load_summary
from include.retail.ingest.ledger import Status
from include.retail.transform.dbt_results import DbtRun
from include.retail.transform.layers import Revenue, nothing_to_announce
from include.retail.transform.summary import transform_summary

# A dbt build's target/run_results.json (schema v6, what dbt 1.11 writes; tests/dbt checks it against dbt's own
# schema): models that succeeded, data tests that passed, warned and were skipped, and a unit test.
RUN_RESULTS = Path(__file__).parent / "data" / "dbt_run_results.json"


def test_load_summary_counts_loaded_rows_and_lists_every_file() -> None:
    results = [
        {
            "key": "incoming/a.xlsx",
            "status": "loaded",
            "rows_loaded": 541909,
            "rows_rejected": 2,
            "read_seconds": 4.0,
            "load_seconds": 2.5,
            "superseded": [],
        },
        {"key": "incoming/b.csv", "status": "duplicate", "rows_loaded": 0, "rows_rejected": 0},
        {
            "key": "incoming/c.xlsx",
            "status": "rejected",
            "rows_loaded": 0,
            "rows_rejected": 0,
            "error": "missing required column(s): Quantity",
        },
    ]
    subject, message = load_summary(results, run_id="run-1")
    assert subject == "[retail] Loaded 1 file, 541,909 rows into bronze"
    assert "incoming/a.xlsx: loaded, 541,909 rows in 6.5 s, 2 rows rejected" in message
    assert "incoming/b.csv: duplicate" in message
    assert "incoming/c.xlsx: rejected and quarantined: missing required column(s): Quantity" in message


def test_load_summary_announces_loads_that_earlier_runs_left_unannounced() -> None:
    """Issue 9 item 1: a run that only found a duplicate still announces the batch a killed run loaded."""
    results = [{"key": "incoming/a.xlsx", "status": "duplicate", "rows_loaded": 0, "rows_rejected": 0}]
    earlier = [{"key": "incoming/a.xlsx", "batch_id": "b-1", "rows_loaded": 1200}]
    subject, message = load_summary(results, run_id="run-2", earlier=earlier)
    assert subject == "[retail] Loaded 1 file, 1,200 rows into bronze"
    assert "Run run-2 loaded 0 rows from 0 file(s) into bronze." in message
    assert "now sent to silver:\n- incoming/a.xlsx: loaded, 1,200 rows (batch b-1)" in message


def test_load_summary_names_the_file_a_reexport_duplicates_and_counts_overlapping_rows() -> None:
    """Issue 9 item 8: the same rows in another format are a duplicate of that file; a partial overlap is counted."""
    results = [
        {
            "key": "incoming/shop.csv",
            "status": "duplicate",
            "rows_loaded": 0,
            "rows_rejected": 0,
            "duplicate_of_key": "incoming/shop.xlsx",
        },
        {
            "key": "incoming/shop_plus.csv",
            "status": "loaded",
            "rows_loaded": 11,
            "rows_rejected": 0,
            "rows_overlapping": 10,
            "read_seconds": 0.1,
            "load_seconds": 0.1,
        },
    ]
    subject, message = load_summary(results, run_id="run-3")
    assert subject == "[retail] Loaded 1 file, 11 rows into bronze"
    assert "incoming/shop.csv: duplicate (the same rows as incoming/shop.xlsx, already loaded" in message
    assert "incoming/shop_plus.csv: loaded, 11 rows in 0.2 s, 10 of them identical to rows of another file" in message


def test_a_dbt_run_counts_the_data_tests_dbt_ran_by_status() -> None:
    run = DbtRun.from_file(RUN_RESULTS)
    assert run.statuses["model.retail.transactions"] == "success"
    # Unit tests (unit_test.*) are not data tests; a skipped test did not pass.
    assert run.data_tests() == {"pass": 3, "warn": 1, "skipped": 1}


REVENUE = Revenue(total=Decimal("10247219.32"), months=13, first_month=date(2010, 12, 1), last_month=date(2011, 12, 1))
COUNTS = {"bronze.retail_transactions_current": 541909, "gold.monthly_sales_summary": 13}


def test_the_transform_summary_counts_the_tests_dbt_ran_not_the_projects_tests() -> None:
    """Issue 11: "N tests passed" is what dbt's run results say, whatever the manifest lists."""
    every_test_passed = {
        "model.retail.transactions": "success",
        **{f"test.retail.t{number}": "pass" for number in range(7)},
    }
    subject, message = transform_summary(REVENUE, COUNTS, DbtRun(every_test_passed), run_id="run-1", seconds=44.5)
    assert subject == "[retail] Transform done: 13 months, revenue 10,247,219.32, 7 tests passed"
    assert message.startswith("Run run-1 rebuilt silver and gold in 44 s; all 7 dbt data tests passed.\n")
    assert "Revenue 10,247,219.32 over 13 months (2010-12 to 2011-12)." in message
    assert "  gold.monthly_sales_summary" in message


def test_the_transform_summary_says_which_tests_did_not_pass() -> None:
    subject, message = transform_summary(REVENUE, COUNTS, DbtRun.from_file(RUN_RESULTS), run_id="run-2", seconds=20)
    assert subject.endswith(", 3 tests passed")
    assert "3 of the 5 dbt data tests it ran passed (1 skipped, 1 warn)." in message


def test_a_transform_with_empty_gold_has_nothing_to_announce() -> None:
    assert nothing_to_announce(COUNTS) is None
    assert nothing_to_announce({**COUNTS, "gold.monthly_sales_summary": 0})
    assert nothing_to_announce({"bronze.retail_transactions_current": 0})


def test_the_load_summary_shows_a_files_control_characters_escaped() -> None:
    """Issue 22: a key or a rejection reason is the file's text; its own line break must not forge a line of the
    summary, nor an escape sequence act on whoever reads it."""
    results = [
        {
            "key": "incoming/a\nFAKE LINE\x1b[2J.csv",
            "status": Status.REJECTED,
            "rows_loaded": 0,
            "rows_rejected": 0,
            "error": "row 2: Country: expected text, got '\x1b]0;pwned\x07'",
        }
    ]
    _, message = load_summary(results, run_id="run-4")
    assert "\x1b" not in message
    assert "\x07" not in message
    assert "- incoming/a\\nFAKE LINE\\x1b[2J.csv: rejected and quarantined: row 2: Country: expected text" in message
    assert not any(line.startswith("FAKE LINE") for line in message.splitlines())
