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
