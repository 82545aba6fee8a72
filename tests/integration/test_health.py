"""The health checks' verdicts, against the session's real PostgreSQL and moto server (the all-OK path is
exercised by tests/e2e through `python -m devstack health`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from include.retail import health

pytestmark = pytest.mark.integration

BUCKET = "health-check-test"


@pytest.fixture
def s3(stack):
    client = stack.boto3_client("s3")
    if BUCKET not in {entry["Name"] for entry in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])


def test_a_file_waiting_too_long_is_critical_and_a_quarantined_one_a_warning(s3) -> None:
    now = datetime.now(UTC)
    assert [check.severity for check in health.check_bucket(s3, BUCKET, now)] == [health.OK, health.OK]

    s3.put_object(Bucket=BUCKET, Key="incoming/stuck.xlsx", Body=b"x")
    s3.put_object(Bucket=BUCKET, Key="quarantine/bad.csv", Body=b"x")
    s3.put_object(Bucket=BUCKET, Key="quarantine/bad.csv.report.json", Body=b"{}")

    fresh = health.check_bucket(s3, BUCKET, datetime.now(UTC))
    stuck = health.check_bucket(s3, BUCKET, datetime.now(UTC) + timedelta(hours=1))

    assert [(check.severity, check.detail.split(",")[0]) for check in fresh] == [
        (health.OK, "1"),
        (health.WARNING, "1: quarantine/bad.csv (reports beside them)"),
    ]
    assert stuck[0].severity == health.CRITICAL


def test_a_message_left_in_the_upload_queue_warns_and_a_dead_letter_is_critical(stack, s3) -> None:
    from devstack.aws import provision_upload_events

    sqs = stack.boto3_client("sqs")
    queue_url = provision_upload_events(s3, sqs, bucket=BUCKET, queue="health-uploads", dead_letters="health-dlq")
    sqs.purge_queue(QueueUrl=queue_url)  # S3's test event
    assert [check.severity for check in health.check_upload_queue(sqs, queue_url)] == [health.OK, health.OK]

    s3.put_object(Bucket=BUCKET, Key="incoming/unwatched.csv", Body=b"x")  # nobody watches this queue
    dead_url = sqs.get_queue_url(QueueName="health-dlq")["QueueUrl"]
    sqs.send_message(QueueUrl=dead_url, MessageBody="{}")

    queued, dead = health.check_upload_queue(sqs, queue_url)
    assert (queued.severity, queued.detail) == (health.WARNING, "1 message(s) waiting: is the triggerer running?")
    assert dead.severity == health.CRITICAL
    assert dead.detail.startswith("1 in health-dlq")
    unreachable = health.check_upload_queue(sqs, queue_url.replace("health-uploads", "no-such-queue"))
    assert [check.severity for check in unreachable] == [health.CRITICAL]
    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={})


def test_the_warehouse_check_reads_the_ledger_and_reports_an_unreachable_database(stack) -> None:
    now = datetime.now(UTC)
    reachable = health.check_warehouse(lambda: psycopg.connect(stack.warehouse_url()), now)
    assert reachable[0] == health.Check("warehouse", health.OK, "reachable")
    assert reachable[1].name == "last successful load"

    refused = health.check_warehouse(
        lambda: psycopg.connect(stack.warehouse_url().replace(str(stack.state.postgres_port), "1")), now
    )
    assert [(check.name, check.severity) for check in refused] == [("warehouse", health.CRITICAL)]


NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _run(run_id: str, state: str, ended_hours_ago: float) -> dict:
    end = NOW - timedelta(hours=ended_hours_ago)
    return {"dag_run_id": run_id, "state": state, "end_date": end.isoformat()}


def test_dag_runs_report_what_fails_now_and_a_failure_dealt_with_masks_nothing() -> None:
    """Issue 22: one rejected file kept `make health` CRITICAL for a day, hiding every later failure. Severity
    comes from each DAG's state now: the transform failing since its last success is critical; an ingest run
    that failed (its file shows as quarantined or failed) warns; a failure followed by a success is history."""
    now = NOW
    runs = {
        "retail_transform": [_run("t3", "failed", 0.1), _run("t2", "failed", 0.5), _run("t1", "success", 3)],
        "retail_ingest": [_run("i2", "success", 1), _run("i1", "failed", 20)],  # rejected yesterday, dealt with
        "retail_ingest_file": [_run("f1", "failed", 0.2)],
        "retail_ingest_events": [],
    }

    checks = {check.name: check for check in health.check_dag_runs(lambda dag_id: runs[dag_id], now)}

    transform = checks["retail_transform runs"]
    assert transform.severity == health.CRITICAL
    assert transform.detail.startswith("failing: 2 run(s) failed since its last success (3.0 h ago); latest t3")
    assert (checks["retail_ingest runs"].severity, checks["retail_ingest runs"].detail) == (
        health.OK,
        "last run succeeded (60 min ago)",
    )
    assert checks["retail_ingest_file runs"].severity == health.WARNING
    assert "none has succeeded yet" in checks["retail_ingest_file runs"].detail
    assert (checks["retail_ingest_events runs"].severity, checks["retail_ingest_events runs"].detail) == (
        health.OK,
        "no finished run",
    )

    # Once the transform succeeds again, only the quarantined file's warning is left.
    runs["retail_transform"].insert(0, _run("t4", "success", 0.05))
    runs["retail_ingest_file"].insert(0, _run("f2", "success", 0.1))
    checks = health.check_dag_runs(lambda dag_id: runs[dag_id], now)
    assert {check.severity for check in checks} == {health.OK}
    text, code = health.report([*checks, health.Check("files in quarantine/", health.WARNING, "1")])
    assert code == health.WARNING
    assert text.splitlines()[-1] == "pipeline WARNING"


def test_an_unreachable_api_is_critical_and_the_exit_code_is_the_worst() -> None:
    def unreachable(dag_id):
        raise ConnectionError("connection refused")

    (down,) = health.check_dag_runs(unreachable, datetime.now(UTC))
    assert down.severity == health.CRITICAL
    assert "connection refused" in down.detail
    text, code = health.report([health.Check("files in quarantine/", health.WARNING, "1"), down])
    assert code == health.CRITICAL
    assert text.splitlines()[-1] == "pipeline CRITICAL"


def _ledger_row(conn: psycopg.Connection, key: str, status: str, *, rows: int = 0, error: str | None = None) -> None:
    conn.execute(
        """
        insert into bronze.load_ledger (batch_id, source_key, source_version, source_etag, status, rows_loaded,
                                        error, started_at)
        values (gen_random_uuid(), %s, md5(random()::text), '"etag"', %s, %s, %s, now())
        """,
        (key, status, rows, error),
    )


def test_batches_silver_lacks_warn_then_turn_critical_and_failed_files_are_critical(
    stack, warehouse, reset_warehouse
) -> None:
    reset_warehouse()  # bronze empty, silver not built
    try:
        now = datetime.now(UTC)
        calm = health.check_warehouse(lambda: psycopg.connect(stack.warehouse_url()), now)
        assert [(check.name, check.severity) for check in calm[2:]] == [
            ("loaded, not in silver", health.OK),
            ("failed files", health.OK),
        ]

        _ledger_row(warehouse, "incoming/waiting.xlsx", "loaded", rows=1200)
        _ledger_row(warehouse, "incoming/broken.csv", "failed", error="S3 GetObject: connection reset\nretried 3 times")

        fresh = health.check_warehouse(lambda: psycopg.connect(stack.warehouse_url()), datetime.now(UTC))
        stranded = health.check_warehouse(
            lambda: psycopg.connect(stack.warehouse_url()), datetime.now(UTC) + timedelta(hours=1)
        )
        assert fresh[2].severity == health.WARNING
        assert fresh[2].detail.startswith("1 batch(es), 1,200 rows, oldest loaded ")
        assert fresh[2].detail.endswith(": incoming/waiting.xlsx")
        assert stranded[2].severity == health.CRITICAL
        assert (fresh[3].severity, fresh[3].detail) == (
            health.CRITICAL,
            "1: incoming/broken.csv (latest error: S3 GetObject: connection reset)",
        )
        assert health.report(fresh)[1] == health.CRITICAL
    finally:
        reset_warehouse()


def test_a_files_key_in_a_finding_is_printed_with_its_control_characters_escaped() -> None:
    check = health.Check("failed files", health.CRITICAL, "1: incoming/\x1b[2Jclear.csv (latest error: x\ry)")
    assert check.line().endswith("1: incoming/\\x1b[2Jclear.csv (latest error: x\\ry)")
