"""The upload sensor of ``retail_ingest`` without its traps, on the moto server and run by ``dag.test()``.

- A folder marker under incoming/ is no file: the trigger does not fire for it, so no worker wakes per poke
  and no load is attempted; the wait ends at its timeout, quietly skipped, and only then.
- A sensor that cannot reach S3 fails and alerts (once when its first try fails, once at its last), rather
  than being skipped as ``soft_fail`` would make it, silently and for ever under ``@continuous``.

Each test points the sensor at a bucket of its own (the Variable is read from the environment), so that
files other tests leave under incoming/ do not wake it.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from include.retail.detect.sensor import INCOMING_FILES_PATTERN
from include.retail.platform import config

pytestmark = pytest.mark.integration

SENSOR_BUCKET = "retail-sensor-tests"


@pytest.fixture
def sensor_bucket(stack, s3, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty bucket of its own, named by the ``retail_bucket`` Variable for this test."""
    if SENSOR_BUCKET not in {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=SENSOR_BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for item in s3.list_objects_v2(Bucket=SENSOR_BUCKET).get("Contents", []):
        s3.delete_object(Bucket=SENSOR_BUCKET, Key=item["Key"])
    monkeypatch.setenv("AIRFLOW_VAR_" + config.BUCKET_VARIABLE.upper(), SENSOR_BUCKET)
    return SENSOR_BUCKET


def _task_states(dag_run) -> dict[str, str | None]:
    return {f"{ti.task_id}[{ti.map_index}]": ti.state for ti in dag_run.get_task_instances()}


def _trigger_of(sensor, bucket: str):
    """The trigger the deferred sensor hands the triggerer, built as the sensor builds it."""
    from airflow.providers.amazon.aws.triggers.s3 import S3KeyTrigger

    return S3KeyTrigger(
        bucket_name=bucket,
        bucket_key=sensor.bucket_key,
        wildcard_match=sensor.wildcard_match,
        aws_conn_id=sensor.aws_conn_id,
        poke_interval=0.2,
        should_check_fn=bool(sensor.check_fn),
        metadata_keys=sensor.metadata_keys,
    )


async def _first_event(trigger, seconds: float):
    async def first():
        async for event in trigger.run():
            return event.payload

    try:
        return await asyncio.wait_for(first(), seconds)
    except TimeoutError:
        return None


def test_the_trigger_ignores_folder_markers_and_fires_for_a_file_without_waking_a_worker(
    dags: dict, sensor_bucket: str, s3
) -> None:
    sensor = dags["retail_ingest"].get_task("wait_for_files")
    assert sensor.check_fn is None
    assert sensor.bucket_key == INCOMING_FILES_PATTERN
    assert not sensor.soft_fail
    s3.put_object(Bucket=sensor_bucket, Key="incoming/", Body=b"")
    s3.put_object(Bucket=sensor_bucket, Key="incoming/2011/", Body=b"")

    assert asyncio.run(_first_event(_trigger_of(sensor, sensor_bucket), 3)) is None  # about 15 LISTs, no event

    s3.put_object(Bucket=sensor_bucket, Key="incoming/2011/online_retail.csv", Body=b"InvoiceNo\n")
    # "success" ends the wait in the triggerer; with a check_fn it would be "running", and a worker would wake.
    assert asyncio.run(_first_event(_trigger_of(sensor, sensor_bucket), 10)) == {"status": "success"}


@pytest.mark.parametrize(
    ("failure", "outcome"),
    [
        ("TRIGGER_TIMEOUT", "skipped"),  # the quiet hour: @continuous starts the next wait
        ("TRIGGER_FAILURE", "failed"),  # the trigger itself died: retried, and alerted
    ],
)
def test_only_the_waits_timeout_is_a_skip(dags: dict, failure: str, outcome: str) -> None:
    """How the task runner resumes a deferred task the scheduler timed out, or whose trigger failed
    (``__fail__``). ``dag.test()`` runs triggers in line without their timeout, so this is checked here."""
    from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason
    from airflow.sdk.exceptions import AirflowSkipException, TaskDeferralError

    sensor = dags["retail_ingest"].get_task("wait_for_files")
    reason = TriggerFailureReason[failure]

    with pytest.raises((AirflowSkipException, TaskDeferralError)) as raised:
        sensor.resume_execution(TRIGGER_FAIL_REPR, {"error": reason}, context={})

    assert isinstance(raised.value, AirflowSkipException) is (outcome == "skipped"), raised.value


def test_a_sensor_that_cannot_reach_s3_fails_and_alerts_instead_of_skipping(
    dags: dict, stack, sensor_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devstack.state import free_port

    dag = dags["retail_ingest"]
    sensor = dag.get_task("wait_for_files")
    # The sensor's own connection points at a closed port; the alerts still reach the moto server.
    broken = {"conn_type": "aws", "login": "testing", "password": "testing"}
    broken["extra"] = {"endpoint_url": f"http://127.0.0.1:{free_port()}", "region_name": "eu-west-1"}
    monkeypatch.setenv("AIRFLOW_CONN_RETAIL_BROKEN_AWS", json.dumps(broken))
    monkeypatch.setattr(sensor, "aws_conn_id", "retail_broken_aws")
    monkeypatch.setattr(sensor, "retries", 1)
    monkeypatch.setattr(sensor, "retry_delay", timedelta(seconds=0))
    monkeypatch.setattr(config, "ALERT_RETRY_DELAYS", (0.5, 1))
    stack.read_alerts()

    dag_run = dag.test()

    states = _task_states(dag_run)
    assert states["wait_for_files[-1]"] == "failed", states
    assert dag_run.state == "failed"
    subjects = [alert["subject"] for alert in stack.read_alerts()]
    assert subjects == [
        "[retail] FAILING retail_ingest.wait_for_files (retrying)",
        "[retail] FAILED retail_ingest.wait_for_files",
    ]
