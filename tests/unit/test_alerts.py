from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk import DAG

from include.retail.platform import alerts, config
from include.retail.platform.alerts import (
    SUBJECT_MAX_CHARS,
    failure_alert,
    message_body,
    publish,
    publish_with_retries,
    subject_line,
)
from include.retail.transform.tasks import transform_failure_alert


def test_subject_line_is_one_line_within_the_sns_limit() -> None:
    subject = subject_line("[retail] a\nvery " + "long " * 40 + "subject")
    assert "\n" not in subject
    assert len(subject) <= SUBJECT_MAX_CHARS < 100
    assert subject.endswith("…")
    assert subject_line("short") == "short"
    # SNS refuses control characters; shown escaped, a file's name stays recognisable.
    assert subject_line("a\x00b\x1fc\u202e") == "a\\x00b\\x1fc\\u202e"
    assert subject_line("[retail] FAILED retail_ingest.ingest_file: incoming/\x1b[2J.xlsx") == (
        "[retail] FAILED retail_ingest.ingest_file: incoming/\\x1b[2J.xlsx"
    )


class FakeTaskInstance(SimpleNamespace):
    """What the callback reads of the task instance; XComs as Cosmos's producer leaves them."""

    def xcom_pull(self, task_ids: str, key: str):
        return self.xcoms.get(key)


def render_failure(
    dag_id: str,
    task_id: str,
    map_index: int,
    rendered_map_index: str | None = None,
    xcoms: dict | None = None,
    exception: Exception | None = None,
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
        "exception": exception or ValueError("incoming/bad.xlsx: missing required column(s): CustomerID"),
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


def test_a_files_control_characters_reach_no_alert_raw_and_forge_no_line() -> None:
    """The key and the error come from the file: ESC, CR and a bidi override are shown escaped, and a line
    break of the file's own is indented under its field, so it cannot pass for another field (a fake Log:)."""
    key = "incoming/\x1b[2Jevil\u202exslx.csv"
    error = ValueError(f"{key}: row 2: Quantity 'paid\rREFUND' is not a number\nLog:    https://phish.example")
    subject, message = render_failure("retail_ingest", "ingest_file", 0, rendered_map_index=key, exception=error)
    assert subject == "[retail] FAILED retail_ingest.ingest_file: incoming/\\x1b[2Jevil\\u202exslx.csv"
    assert "File:   incoming/\\x1b[2Jevil\\u202exslx.csv\n" in message
    assert (
        "Error:  incoming/\\x1b[2Jevil\\u202exslx.csv: row 2: Quantity 'paid\\rREFUND' is not a number\n"
        "        Log:    https://phish.example\n"
    ) in message
    assert [line for line in message.splitlines() if line.startswith("Log:")] == ["Log:    http://airflow/log"]
    assert message == message_body(message)
    assert all(line.isprintable() for line in message.splitlines())


def test_a_dbt_message_is_one_line_its_control_characters_escaped() -> None:
    xcoms = {
        "model__retail__fact_sales_daily_status": {"status": "error", "outlet_uris": []},
        "model__retail__fact_sales_daily_dbt_event": {"status": None, "msg": "Database Error\n  division by zero\x1b"},
    }
    _, message = render_failure("retail_transform", "dbt.dbt_producer_watcher", -1, xcoms=xcoms)
    assert "- model fact_sales_daily: error: Database Error division by zero\\x1b\n" in message


def test_every_message_sent_to_sns_is_printable_but_keeps_its_lines(monkeypatch) -> None:
    """``publish`` is the one way out, for the stages' summaries too: whatever body it is given."""
    from airflow.providers.amazon.aws.hooks import sns

    sent = []

    class FakeSnsHook:
        def __init__(self, aws_conn_id: str) -> None:
            pass

        def publish_to_target(self, target_arn: str, subject: str, message: str) -> dict:
            sent.append((subject, message))
            return {"MessageId": "m-1"}

    monkeypatch.setattr(sns, "SnsHook", FakeSnsHook)
    summary = "Run r loaded 1 file.\n\n- incoming/\x1b[2Ja.xlsx: rejected and quarantined: row 2: '\r\u202e'\n"
    assert publish("arn:topic", "[retail] Loaded \x1b[2J", summary) == "m-1"
    assert sent == [
        (
            "[retail] Loaded \\x1b[2J",
            "Run r loaded 1 file.\n\n- incoming/\\x1b[2Ja.xlsx: rejected and quarantined: row 2: '\\r\\u202e'\n",
        )
    ]


def test_an_alert_logged_when_sns_is_down_is_printable_too(monkeypatch, caplog) -> None:
    def down(topic_arn, subject, message):
        raise ConnectionError("sns endpoint down")

    monkeypatch.setattr(alerts, "publish", down)
    monkeypatch.setattr(config, "ALERT_RETRY_DELAYS", ())
    assert publish_with_retries("arn:topic", "[retail] FAILED x", "File:   incoming/\x1b[2J.xlsx\n") is None
    assert "File:   incoming/\\x1b[2J.xlsx" in caplog.text
    assert "\x1b" not in caplog.text
