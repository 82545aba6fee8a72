from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk import DAG

from include.retail.alerts import SUBJECT_MAX_CHARS, failure_notifier, load_summary, subject_line


def test_subject_line_is_one_line_within_the_sns_limit() -> None:
    subject = subject_line("[retail] a\nvery " + "long " * 40 + "subject")
    assert "\n" not in subject
    assert len(subject) <= SUBJECT_MAX_CHARS < 100
    assert subject.endswith("…")
    assert subject_line("short") == "short"


def render_failure(dag_id: str, task_id: str, map_index: int) -> tuple[str, str]:
    notifier = failure_notifier()
    context = {
        "dag": DAG(dag_id, schedule=None),
        "task": SimpleNamespace(retries=2),
        "ti": SimpleNamespace(task_id=task_id, map_index=map_index, try_number=3, log_url="http://airflow/log"),
        "run_id": "manual__2026-11-22",
        "exception": ValueError("incoming/bad.xlsx: missing required column(s): CustomerID"),
        "var": {"value": SimpleNamespace(retail_alerts_topic_arn="arn:aws:sns:eu-west-1:123456789012:retail-alerts")},
    }
    notifier.render_template_fields(context)
    assert notifier.target_arn == "arn:aws:sns:eu-west-1:123456789012:retail-alerts"
    return notifier.subject, notifier.message


def test_failure_alert_names_dag_task_try_error_and_log() -> None:
    subject, message = render_failure("retail_ingest", "ingest_file", 0)
    assert subject == "[retail] FAILED retail_ingest.ingest_file [0]"
    for expected in (
        "DAG:    retail_ingest",
        "Task:   ingest_file (map index 0)",
        "Try:    3 of 3",
        "Error:  incoming/bad.xlsx: missing required column(s): CustomerID",
        "Log:    http://airflow/log",
    ):
        assert expected in message


@pytest.mark.parametrize("length", [50, 200, 250])
def test_failure_subject_stays_within_the_limit_for_long_names(length: int) -> None:
    subject, _ = render_failure("d" * length, "t" * length, -1)
    assert len(subject) <= SUBJECT_MAX_CHARS
    assert "[" not in subject.removeprefix("[retail]")


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
