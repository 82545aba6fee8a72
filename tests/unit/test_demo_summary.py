"""The summary ``make demo`` ends with (devstack/demo.py): what came from the file is printed escaped (issue 22)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.demo import DemoSummary


def test_a_rejected_files_name_reason_and_alerts_reach_the_terminal_escaped(capsys: pytest.CaptureFixture) -> None:
    summary = DemoSummary(path=Path("/tmp/evil\x1b[2J\u202exslx.csv"))
    summary.key = "incoming/evil\x1b[2J\u202exslx.csv"
    summary.exit_code = 1
    summary.ingest_seconds = 1.5
    summary.ledger = {
        "status": "rejected",
        "duplicate_of": None,
        "rows_loaded": 0,
        "rows_rejected": 3,
        "error": "row 2: Quantity '\x1b[2J\x1b[H7\rPAID' is not a whole number",
    }
    summary.alerts = [{"subject": "[retail] FAILED retail_ingest.ingest_file: incoming/evil\x1b[2J"}]
    summary.holds = [("incoming/\x9bkept.xlsx", 10)]
    summary.print()
    out = capsys.readouterr().out
    assert "  file           evil\\x1b[2J\\u202exslx.csv  (s3://" in out
    assert "/incoming/evil\\x1b[2J\\u202exslx.csv)" in out
    assert "  reason         row 2: Quantity '\\x1b[2J\\x1b[H7\\rPAID' is not a whole number" in out
    assert "quarantine/evil\\x1b[2J\\u202exslx.csv.report.json" in out
    assert "- [retail] FAILED retail_ingest.ingest_file: incoming/evil\\x1b[2J" in out
    assert "- incoming/\\x9bkept.xlsx: 10 rows" in out
    assert all(line.isprintable() for line in out.splitlines())


def test_the_demos_last_line_names_what_failed_not_postgresql(tmp_path) -> None:
    """Issue 22: after a failed transform the demo's last line blamed PostgreSQL ("is not answering: relation
    gold.country_sales does not exist"): it names the failure the alert names, or the file's rejection."""
    import psycopg

    from devstack.demo import DemoSummary
    from devstack.faults import stack_fault

    summary = DemoSummary(path=tmp_path / "shop.xlsx")
    summary.key, summary.ledger, summary.transform_code = "incoming/shop.xlsx", {"error": None, "status": "loaded"}, 1
    summary.alerts = [
        {"subject": "[retail] Loaded 1 file, 10 rows into bronze"},
        {"subject": "[retail] FAILED retail_transform dbt: model fact_sales_daily"},
    ]
    assert summary.cause() == "FAILED retail_transform dbt: model fact_sales_daily"
    summary.ledger = {"error": "missing required column(s): Country", "status": "rejected"}
    assert summary.cause() == "shop.xlsx was rejected: missing required column(s): Country"

    class Stack:  # what stack_fault reads of a stack
        class state:
            postgres_port = 5432

    missing = psycopg.errors.UndefinedTable('relation "gold.country_sales" does not exist')
    assert stack_fault(Stack, missing) == 'the warehouse refused a query: relation "gold.country_sales" does not exist'
    down = psycopg.OperationalError("connection refused")
    assert "PostgreSQL (127.0.0.1:5432) is not answering: connection refused" in stack_fault(Stack, down)
