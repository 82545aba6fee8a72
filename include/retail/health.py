"""Health of the pipeline, as a monitoring check reports it (Nagios convention: 0 OK, 1 WARNING, 2 CRITICAL).

The checks take clients, not environments: the embedded stack wires them in ``python -m devstack health``
(``make health``); anything that reaches the warehouse, the bucket and Airflow's REST API can do the same.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from include.retail.ingest import ledger
from include.retail.platform import config
from include.retail.platform.text import printable

OK, WARNING, CRITICAL = 0, 1, 2
_LABELS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL"}

# A file still under incoming/ after this long was not picked up: the sensor or the loads are stuck.
STUCK_AFTER = timedelta(minutes=30)
# A loaded batch silver does not hold after this long was never transformed: the rows are stranded in bronze.
# (Upload to gold takes about a minute; a transform waits for the loads of its window.)
NOT_IN_SILVER_AFTER = timedelta(minutes=30)


@dataclass(frozen=True)
class Check:
    name: str
    severity: int
    detail: str

    def line(self) -> str:
        """One line: the detail may quote a file's key or error, shown with its control characters escaped."""
        return f"{_LABELS[self.severity]:8} {self.name:26} {printable(self.detail)}"


def _age(since: datetime, now: datetime) -> str:
    seconds = int((now - since).total_seconds())
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def check_warehouse(
    connect: Callable[[], object], now: datetime, *, not_in_silver_after: timedelta = NOT_IN_SILVER_AFTER
) -> list[Check]:
    """Reachable, when the last file was loaded, loaded batches silver lacks, files the ledger marks failed."""
    try:
        with connect() as conn:
            finished_at = ledger.last_loaded_at(conn)
            checks = [Check("warehouse", OK, "reachable")]
            if finished_at is None:
                checks.append(Check("last successful load", WARNING, "none yet"))
            else:
                when = f"{finished_at:%Y-%m-%d %H:%M:%S %Z} ({_age(finished_at, now)})"
                checks.append(Check("last successful load", OK, when))
            checks.append(check_batches_not_in_silver(conn, now, stranded_after=not_in_silver_after))
            checks.append(check_failed_files(conn))
    except Exception as error:  # any failure to connect or query is the finding itself
        return [Check("warehouse", CRITICAL, f"unreachable: {_first_line(error)}")]
    return checks


def _keys(items: list[dict]) -> str:
    return ", ".join(item["key"] for item in items[:5]) + (", ..." if len(items) > 5 else "")


def check_batches_not_in_silver(conn, now: datetime, *, stranded_after: timedelta = NOT_IN_SILVER_AFTER) -> Check:
    """Loaded batches silver does not hold yet: a warning while a transform may still be on its way, critical
    once the oldest has waited longer than ``stranded_after`` (its rows are stranded in bronze)."""
    name = "loaded, not in silver"
    try:
        with conn.transaction():  # a failed query leaves the connection usable for the next check
            missing = ledger.batches_missing_from_silver(conn)
    except Exception as error:
        return Check(name, CRITICAL, f"cannot tell: {_first_line(error)}")
    if not missing:
        return Check(name, OK, "0")
    oldest = min(batch["finished_at"] for batch in missing)
    rows = sum(batch["rows_loaded"] for batch in missing)
    severity = CRITICAL if now - oldest > stranded_after else WARNING
    detail = f"{len(missing)} batch(es), {rows:,} rows, oldest loaded {_age(oldest, now)}: {_keys(missing)}"
    return Check(name, severity, detail)


def check_failed_files(conn) -> Check:
    """Files the ledger marks failed (the platform's fault, after the last try): they wait in incoming/ and
    are not taken again until they change, so somebody must look."""
    name = "failed files"
    try:
        with conn.transaction():
            failed = ledger.failed_files(conn)
    except Exception as error:
        return Check(name, CRITICAL, f"cannot tell: {_first_line(error)}")
    if not failed:
        return Check(name, OK, "0")
    error = _first_line(Exception(failed[-1]["error"] or "no error recorded"))
    return Check(name, CRITICAL, f"{len(failed)}: {_keys(failed)} (latest error: {error})")


def check_stale_runs(list_stale_runs: Callable[[], Iterable[str]]) -> Check:
    """Runs left `running` by a process that is gone (an interrupted `airflow dags test`): while one is there,
    the waiting ingest DAG starts no run and uploads wait in incoming/ for ever."""
    name = "stale running runs"
    try:
        stale = list(list_stale_runs())
    except Exception as error:
        return Check(name, CRITICAL, f"cannot read Airflow's runs: {_first_line(error)}")
    if not stale:
        return Check(name, OK, "0")
    return Check(name, CRITICAL, f"{len(stale)}: {'; '.join(stale[:3])} (make up or make demo marks them failed)")


def _objects(s3, bucket: str, prefix: str) -> list[dict]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item for page in pages for item in page.get("Contents", []) if not item["Key"].endswith("/")]


def check_bucket(s3, bucket: str, now: datetime, *, stuck_after: timedelta = STUCK_AFTER) -> list[Check]:
    """Files waiting under incoming/ (critical when one waits too long), and files set aside in quarantine/."""
    try:
        waiting = _objects(s3, bucket, config.INCOMING_PREFIX)
        quarantined = [
            item
            for item in _objects(s3, bucket, config.QUARANTINE_PREFIX)
            if not item["Key"].endswith(config.REPORT_SUFFIX)
        ]
    except Exception as error:
        return [Check("bucket", CRITICAL, f"s3://{bucket} unreachable: {error}")]
    if waiting:
        oldest = min(item["LastModified"] for item in waiting)
        severity = CRITICAL if now - oldest > stuck_after else OK
        incoming = Check("files in incoming/", severity, f"{len(waiting)}, oldest uploaded {_age(oldest, now)}")
    else:
        incoming = Check("files in incoming/", OK, "0")
    if quarantined:
        names = ", ".join(sorted(item["Key"] for item in quarantined)[:5])
        quarantine = Check("files in quarantine/", WARNING, f"{len(quarantined)}: {names} (reports beside them)")
    else:
        quarantine = Check("files in quarantine/", OK, "0")
    return [incoming, quarantine]


def check_upload_queue(sqs, queue_url: str) -> list[Check]:
    """Detection by events: messages waiting in the upload queue (the watcher takes each within seconds, so a
    backlog means it is not running), and messages in its dead-letter queue (received but never deleted)."""

    def depth(url: str) -> int:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"])

    try:
        waiting = depth(queue_url)
        redrive = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]
        dead_arn = json.loads(redrive["RedrivePolicy"])["deadLetterTargetArn"]
        dead_name, dead_account = dead_arn.split(":")[-1], dead_arn.split(":")[-2]
        dead_url = sqs.get_queue_url(QueueName=dead_name, QueueOwnerAWSAccountId=dead_account)["QueueUrl"]
        dead = depth(dead_url)
    except Exception as error:
        return [Check("upload queue", CRITICAL, f"{queue_url} unreachable: {_first_line(error)}")]
    queued = Check(
        "upload queue",
        WARNING if waiting else OK,
        f"{waiting} message(s) waiting" + (": is the triggerer running?" if waiting else ""),
    )
    dead_letters = Check(
        "upload dead letters",
        CRITICAL if dead else OK,
        f"{dead} in {dead_name}" + (": uploads whose message was never handled; see incoming/" if dead else ""),
    )
    return [queued, dead_letters]


# What a DAG failing since its last success means. The transform failing leaves gold behind every upload since;
# an ingest run fails when one of its files failed, and that file shows as failed (critical) or quarantined
# (a warning) in the checks above, so the run's failure itself only warns.
SEVERITY_WHEN_FAILING = {
    "retail_transform": CRITICAL,
    "retail_ingest": WARNING,
    "retail_ingest_events": WARNING,
    "retail_ingest_file": WARNING,
}


def check_dag_runs(latest_runs: Callable[[str], Iterable[dict]], now: datetime) -> list[Check]:
    """Each DAG's state now, from its finished runs (``latest_runs(dag_id)``: Airflow's REST API's dag runs,
    newest first, with ``state``, ``dag_run_id``, ``end_date``): failing when its newest finished run failed,
    with the runs failed since its last success. A failure followed by a success is history, not a finding: a
    file rejected yesterday and dealt with must not mask a transform failing now."""
    checks = []
    for dag_id, severity in SEVERITY_WHEN_FAILING.items():
        name = f"{dag_id} runs"
        try:
            runs = [run for run in latest_runs(dag_id) if run.get("state") in ("success", "failed")]
        except Exception as error:
            return [Check("dag runs", CRITICAL, f"Airflow API unreachable: {_first_line(error)}")]
        if not runs:
            checks.append(Check(name, OK, "no finished run"))
            continue
        failing = list(itertools.takewhile(lambda run: run["state"] == "failed", runs))
        ended = _ended(runs[0], now)
        if not failing:
            checks.append(Check(name, OK, f"last run succeeded{ended}"))
            continue
        since = next((run for run in runs if run["state"] == "success"), None)
        since_text = f"since its last success{_ended(since, now)}" if since else "and none has succeeded yet"
        checks.append(
            Check(
                name,
                severity,
                f"failing: {len(failing)} run(s) failed {since_text}; latest {failing[0]['dag_run_id']}",
            )
        )
    return checks


def _ended(run: dict, now: datetime) -> str:
    end = run.get("end_date")
    if not end:
        return ""
    ended_at = datetime.fromisoformat(end) if isinstance(end, str) else end
    return f" ({_age(ended_at, now)})"


def report(checks: list[Check]) -> tuple[str, int]:
    """The lines to print and the exit code: the worst severity."""
    worst = max((check.severity for check in checks), default=OK)
    lines = [check.line() for check in checks]
    lines.append(f"pipeline {_LABELS[worst]}")
    return "\n".join(lines), worst
