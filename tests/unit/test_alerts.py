from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk import DAG

from include.retail.platform import alerts, config
from include.retail.platform.alerts import SUBJECT_MAX_CHARS, failure_alert, publish_with_retries, subject_line
from include.retail.transform.tasks import transform_failure_alert


def test_subject_line_is_one_line_within_the_sns_limit() -> None:
    subject = subject_line("[retail] a\nvery " + "long " * 40 + "subject")
    assert "\n" not in subject
    assert len(subject) <= SUBJECT_MAX_CHARS < 100
    assert subject.endswith("…")
    assert subject_line("short") == "short"
    assert subject_line("a\x00b\x1fc") == "a b c"  # SNS refuses control characters


class FakeTaskInstance(SimpleNamespace):
    """What the callback reads of the task instance; XComs as Cosmos's producer leaves them."""

    def xcom_pull(self, task_ids: str, key: str):
        return self.xcoms.get(key)


def render_failure(
    dag_id: str, task_id: str, map_index: int, rendered_map_index: str | None = None, xcoms: dict | None = None
) -> tuple[str, str]:
    context = {
        "dag": DAG(dag_id, schedule=None),
        "task": SimpleNamespace(retries=2),
        "ti": FakeTaskInstance(
            task_id=task_id,
            map_index=map_index,
            rendered_map_index=rendered_map_index,
            try_number=3,
            log_url="http://airflow/log",
            xcoms=xcoms or {},
        ),
        "run_id": "manual__2026-11-22",
        "exception": ValueError("incoming/bad.xlsx: missing required column(s): CustomerID"),
    }
    return transform_failure_alert(context) if dag_id == "retail_transform" else failure_alert(context)


def test_failure_alert_names_dag_task_file_try_error_and_log() -> None:
    subject, message = render_failure("retail_ingest", "ingest_file", 0, rendered_map_index="incoming/bad.xlsx")
    assert subject == "[retail] FAILED retail_ingest.ingest_file: incoming/bad.xlsx"
    for expected in (
        "DAG:    retail_ingest",
        "Task:   ingest_file (map index 0)",
        "File:   incoming/bad.xlsx",
        "Try:    3 of 3",
        "Error:  incoming/bad.xlsx: missing required column(s): CustomerID",
        "Log:    http://airflow/log",
    ):
        assert expected in message


def test_failure_alert_of_an_unnamed_mapped_task_falls_back_to_its_index() -> None:
    subject, _ = render_failure("retail_ingest", "ingest_file", 4)
    assert subject == "[retail] FAILED retail_ingest.ingest_file [4]"


@pytest.mark.parametrize("length", [50, 200, 250])
def test_failure_subject_stays_within_the_limit_for_long_names(length: int) -> None:
    subject, _ = render_failure("d" * length, "t" * length, -1)
    assert len(subject) <= SUBJECT_MAX_CHARS
    assert "[" not in subject.removeprefix("[retail]")


def test_failure_of_the_dbt_build_names_the_failed_models_and_tests() -> None:
    """Cosmos's producer fails with "dbt command failed": the alert reads which nodes dbt failed."""
    xcoms = {  # as Cosmos's producer leaves them in subprocess mode
        "model__retail__transactions_status": {"status": "success", "outlet_uris": []},
        "model__retail__transactions_dbt_event": {"status": "success", "msg": None},
        "model__retail__fact_sales_daily_status": {"status": "error", "outlet_uris": []},
        "model__retail__fact_sales_daily_dbt_event": {"status": None, "msg": "Database Error: division by zero"},
        "model__retail__dim_date_status": {"status": "failed", "outlet_uris": []},  # skipped for an upstream error
        "test__retail__reconcile_revenue_gold_silver_bronze_dbt_event": {"status": "fail", "msg": "Got 3 results"},
    }
    subject, message = render_failure("retail_transform", "dbt.dbt_producer_watcher", -1, xcoms=xcoms)
    assert subject.startswith("[retail] FAILED retail_transform dbt: model fact_sales_daily")
    assert "- model fact_sales_daily: error: Database Error: division by zero" in message
    assert "- test reconcile_revenue_gold_silver_bronze: fail: Got 3 results" in message
    assert "model transactions" not in message
    assert "dim_date" not in message


def test_an_alert_sns_refuses_is_retried_then_logged_whole(monkeypatch, caplog) -> None:
    calls = []

    def down(topic_arn, subject, message):
        calls.append(subject)
        raise ConnectionError("sns endpoint down")

    monkeypatch.setattr(alerts, "publish", down)
    monkeypatch.setattr(config, "ALERT_RETRY_DELAYS", (0, 0.01))
    assert publish_with_retries("arn:topic", "[retail] FAILED x", "the body") is None
    assert len(calls) == 3
    assert "could not be sent" in caplog.text
    assert "the body" in caplog.text

    answers = iter([ConnectionError("down"), "message-id"])

    def flaky(topic_arn, subject, message):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(alerts, "publish", flaky)
    assert publish_with_retries("arn:topic", "s", "m") == "message-id"
