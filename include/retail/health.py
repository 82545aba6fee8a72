"""Health of the pipeline, as a monitoring check reports it (Nagios convention: 0 OK, 1 WARNING, 2 CRITICAL).

The checks take clients, not environments: the embedded stack wires them in ``python -m devstack health``
(``make health``); anything that reaches the warehouse, the bucket and Airflow's REST API can do the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from include.retail import config

OK, WARNING, CRITICAL = 0, 1, 2
_LABELS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL"}

# A file still under incoming/ after this long was not picked up: the sensor or the loads are stuck.
STUCK_AFTER = timedelta(minutes=30)


@dataclass(frozen=True)
class Check:
    name: str
    severity: int
    detail: str

    def line(self) -> str:
        return f"{_LABELS[self.severity]:8} {self.name:26} {self.detail}"


def _age(since: datetime, now: datetime) -> str:
    seconds = int((now - since).total_seconds())
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds / 3600:.1f} h ago"


def check_warehouse(connect: Callable[[], object], now: datetime) -> list[Check]:
    """Reachable, and when the last file was loaded (from the ledger)."""
    try:
        with connect() as conn:
            (finished_at,) = conn.execute(
                "select max(finished_at) from bronze.load_ledger where status = 'loaded'"
            ).fetchone()
    except Exception as error:  # any failure to connect or query is the finding itself
        return [Check("warehouse", CRITICAL, f"unreachable: {str(error).strip().splitlines()[0]}")]
    checks = [Check("warehouse", OK, "reachable")]
    if finished_at is None:
        checks.append(Check("last successful load", WARNING, "none yet"))
    else:
        when = f"{finished_at:%Y-%m-%d %H:%M:%S %Z} ({_age(finished_at, now)})"
        checks.append(Check("last successful load", OK, when))
    return checks


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


def check_failed_runs(list_failed_runs: Callable[[datetime], Iterable[dict]], now: datetime) -> Check:
    """DAG runs that failed in the last day, from Airflow's REST API."""
    since = now - timedelta(days=1)
    try:
        failed = list(list_failed_runs(since))
    except Exception as error:
        return Check("failed runs (24 h)", CRITICAL, f"Airflow API unreachable: {error}")
    if not failed:
        return Check("failed runs (24 h)", OK, "0")
    named = ", ".join(f"{run['dag_id']} {run['dag_run_id']}" for run in failed[:5])
    return Check("failed runs (24 h)", CRITICAL, f"{len(failed)}: {named}")


def report(checks: list[Check]) -> tuple[str, int]:
    """The lines to print and the exit code: the worst severity."""
    worst = max((check.severity for check in checks), default=OK)
    lines = [check.line() for check in checks]
    lines.append(f"pipeline {_LABELS[worst]}")
    return "\n".join(lines), worst
