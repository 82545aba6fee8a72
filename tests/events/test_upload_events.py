"""Detection by S3 events, for real: the bucket notifies SQS, the triggerer's AssetWatcher wakes
``retail_ingest_events``, and the files load with no other action (``make up TRIGGER=events``).

In order: the watcher takes S3's test event (a run that loads nothing); three uploads within a second, the
real workbook among them, each load once, the transform follows and both summaries are published, while
the sensor DAG does nothing; an upload made while the triggerer is down loads once it is back; the same
file uploaded again is recorded a duplicate and adds nothing.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from devstack.aws import BUCKET
from devstack.processes import read_pid, stop_group
from devstack.sample import HEADER, write_csv
from devstack.stack import Stack
from tests.live_stack import ledger_rows, wait_for_ledger

pytestmark = pytest.mark.e2e


def small_csv(path: Path, invoice_start: int, count: int = 3) -> Path:
    start = datetime(2011, 3, 1, 10, 0)
    rows = [
        [invoice_start + n, "85123A", f"ITEM {n}", 2, start + timedelta(minutes=n), 2.55, 17850.0, "France"]
        for n in range(count)
    ]
    return write_csv(path, [HEADER, *rows])


def put(stack: Stack, path: Path, key: str) -> datetime:
    """Upload ``path`` as ``key``; return when the upload completed."""
    stack.boto3_client("s3").upload_file(str(path), BUCKET, key)
    return datetime.now(UTC)


def test_the_watcher_takes_the_test_event_s3_sent_and_the_run_loads_nothing(events_stack: Stack) -> None:
    api = events_stack.api()
    run = api.wait_for_run("retail_ingest_events", lambda run: True, timeout=240)

    assert run["state"] == "success", run
    assert run["run_type"] == "asset_triggered"
    tasks = api.get(f"/dags/retail_ingest_events/dagRuns/{run['dag_run_id']}/taskInstances")["task_instances"]
    assert {ti["task_id"]: ti["state"] for ti in tasks}["keys_from_events"] == "skipped"


def test_three_uploads_within_a_second_load_once_each_then_transform_and_announce(
    events_stack: Stack, real_workbook: Path, tmp_path: Path
) -> None:
    api = events_stack.api()
    events_stack.read_alerts()
    # A space, a plus sign and accents: S3 URL-encodes the key in its event, the DAG decodes it.
    files = {
        f"incoming/{real_workbook.name}": real_workbook,
        "incoming/events été 1.csv": small_csv(tmp_path / "one.csv", 810000),
        "incoming/events+2.csv": small_csv(tmp_path / "two.csv", 820000, count=4),
    }
    expected_rows = dict(zip(files, (541_909, 3, 4), strict=True))
    started = datetime.now(UTC)
    with ThreadPoolExecutor(len(files)) as pool:
        landed = pool.map(lambda item: put(events_stack, item[1], item[0]), files.items())
        uploaded = dict(zip(files, landed, strict=True))
    print(f"three uploads in {(max(uploaded.values()) - started).total_seconds():.2f} s")

    loads = {key: wait_for_ledger(events_stack, key, timeout=300) for key in files}
    for key, rows in loads.items():
        assert [(status, loaded) for status, loaded, _, _ in rows] == [("loaded", expected_rows[key])], key
        print(f"{key}: picked up {(rows[0][3] - uploaded[key]).total_seconds():.1f} s after its upload")
    runs = {run_id for rows in loads.values() for _, _, run_id, _ in rows}
    for run_id in runs:
        run = api.wait_for_run(
            "retail_ingest_events", lambda run, run_id=run_id: run["dag_run_id"] == run_id, timeout=180
        )
        assert run["state"] == "success", run
    transform = api.wait_for_run(
        "retail_transform",
        lambda run: datetime.fromisoformat(run["run_after"]) >= started and run["run_type"] == "asset_triggered",
        timeout=480,
    )
    assert transform["state"] == "success", transform
    print(
        f"upload to gold announced: {(datetime.fromisoformat(transform['end_date']) - started).total_seconds():.0f} s"
    )

    with psycopg.connect(events_stack.warehouse_url()) as conn:
        in_silver = dict(
            conn.execute(
                "select source_key, count(*) from silver.transactions where source_key = any(%s) group by source_key",
                (list(files),),
            ).fetchall()
        )
    assert set(in_silver) == set(files)
    alerts = events_stack.read_alerts()
    summaries = "\n".join(alert["message"] for alert in alerts if alert["subject"].startswith("[retail] Loaded "))
    for key in files:
        assert f"- {key}: loaded, " in summaries, alerts
    assert any(alert["subject"].startswith("[retail] Transform done: ") for alert in alerts), alerts
    assert not [alert for alert in alerts if "FAIL" in alert["subject"]]
    # Exactly one path takes the files: the sensor DAG has no schedule and never ran.
    assert api.dag_runs("retail_ingest") == []
    assert api.get("/dags/retail_ingest")["timetable_summary"] in (None, "None")


def test_an_upload_while_the_triggerer_is_down_loads_once_it_is_back(events_stack: Stack, tmp_path: Path) -> None:
    triggerer = events_stack.airflow.pid_file("triggerer")
    stop_group(read_pid(triggerer), timeout=15)
    triggerer.unlink()
    key = "incoming/while_the_triggerer_was_down.csv"
    put(events_stack, small_csv(tmp_path / "down.csv", 830000), key)
    time.sleep(5)
    assert ledger_rows(events_stack, key) == []  # the message waits in the queue

    events_stack.airflow.start()  # starts what is not running: the triggerer

    ((status, loaded, _, _),) = wait_for_ledger(events_stack, key, timeout=240)
    assert (status, loaded) == ("loaded", 3)


def test_the_same_file_uploaded_twice_is_loaded_once(events_stack: Stack, tmp_path: Path) -> None:
    path = small_csv(tmp_path / "twice.csv", 840000)
    key = "incoming/twice.csv"
    put(events_stack, path, key)
    wait_for_ledger(events_stack, key, timeout=240)

    put(events_stack, path, key)

    rows = wait_for_ledger(events_stack, key, timeout=240, rows=2)
    assert [(status, loaded) for status, loaded, _, _ in rows] == [("loaded", 3), ("duplicate", 0)]
