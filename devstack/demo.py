"""``python -m devstack demo`` (``make demo``): one workbook through ingest and transform, and what came of it.

The demo uploads a workbook (the generated sample by default), runs ``retail_ingest`` then ``retail_transform``
with ``airflow dags test`` while printing their stage lines (devstack/progress.py), and ends with a summary of
the upload's ledger row, the rows per layer, the alerts sent and what bronze holds, however it ends.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from devstack import sample
from devstack.aws import BUCKET
from devstack.commands import upload_to_incoming
from devstack.faults import STACK_ERRORS, stack_fault
from devstack.progress import Clock, LogFollower
from devstack.stack import Stack
from devstack.stale_runs import fail_orphaned_runs
from devstack.warehouse import OWNER_ROLE
from include.retail.ingest import ledger
from include.retail.ingest.ledger import Status
from include.retail.platform import config
from include.retail.platform.text import printable


def _layer_rows(stack: Stack) -> dict[str, int]:
    """Rows per layer, counted as the transform's SNS summary counts them."""
    from include.retail.transform.dbt_project import DBT_MANIFEST
    from include.retail.transform.dbt_results import DbtProject
    from include.retail.transform.layers import layer_counts

    with psycopg.connect(stack.warehouse_url(OWNER_ROLE), connect_timeout=5) as conn:
        return layer_counts(conn, DbtProject.from_manifest(DBT_MANIFEST))


def _forget_queued_transform(stack: Stack) -> None:
    """Drop the bronze Asset events the demo's ingest queued for retail_transform.

    ``airflow dags test`` records the Asset event of its ``announce_loads`` like any run, so retail_transform
    is queued in Airflow's metadata DB; the demo then runs the transform itself. Left queued, the event
    started a second transform at the next ``make up``, with nothing new to build.
    """
    import sqlite3

    if stack.airflow_db.exists():
        with sqlite3.connect(stack.airflow_db, timeout=30) as db:
            db.execute("delete from asset_dag_run_queue where target_dag_id = 'retail_transform'")


def demo(stack: Stack, workbook: Path | None) -> int:
    """Upload a workbook, run ingest then transform with ``airflow dags test``, print what happened.

    Ctrl-C or SIGTERM stops the running ``airflow dags test`` and marks its run failed: left `running`, it
    would stall the waiting ingest DAG of the next ``make up``. A part of the stack that is down or dies
    ends the demo with its summary so far and one line saying which.
    """
    if stack.airflow_running():
        # The running scheduler's waiting sensor would take the file from under `airflow dags test`.
        print(
            "demo: the Airflow services are running (make up): upload with `make upload WORKBOOK=...` and watch "
            f"{stack.api_url}, or `make down` first.",
            file=sys.stderr,
        )
        return 2
    # The demo runs the waiting DAG under `airflow dags test`: the sensor path.
    stack.use_trigger("sensor")
    path = workbook.resolve() if workbook else sample.sample_workbook(stack.home / "samples")
    if not path.is_file():
        print(printable(f"demo: {path} is not a file"), file=sys.stderr)
        return 2
    started_at = datetime.now(UTC)
    summary = DemoSummary(path=path)
    try:
        return _run_demo(stack, path, summary)
    except KeyboardInterrupt:
        summary.print()
        failed = fail_orphaned_runs(stack.airflow_db, since=started_at - timedelta(seconds=1), grace=timedelta(0))
        runs = ", ".join(f"{run.dag_id} {run.run_id}" for run in failed)
        print(
            f"demo: interrupted; {f'marked its run failed ({runs})' if failed else 'no run was left running'}.",
            file=sys.stderr,
        )
        return 130
    except STACK_ERRORS as error:
        summary.print()
        print(f"demo: the pipeline did not complete: {stack_fault(stack, error)}", file=sys.stderr)
        return 1


class DemoSummary:
    """What the demo found out so far: printed at the end, however it ends. What came from the file or the
    bucket (its name, key, rejection reason, the alerts' subjects) is printed through ``printable``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.key: str | None = None
        self.exit_code: int | None = None
        self.ledger: dict | None = None  # the upload's ledger row (ledger.latest_row_of)
        self.ingest_seconds: float | None = None
        self.transform_code: int | None = None
        self.transform_seconds = 0.0
        self.layers: dict[str, int] = {}
        self.alerts: list[dict] | None = None
        self.holds: list[tuple[str, int]] | None = None  # (key, rows) of every file bronze serves now
        self.printed = False

    def cause(self) -> str:
        """Why the pipeline did not complete, in the words of what failed: the ledger's reason, or the alert."""
        if self.key is None:
            return "the file was not uploaded"
        if self.ledger is not None and self.ledger["error"]:
            return f"{self.path.name} was {self.ledger['status']}: {self.ledger['error']}"
        failures = [alert["subject"] for alert in self.alerts or [] if " FAILED " in alert["subject"]]
        if failures:
            return failures[-1].removeprefix(config.ALERT_SUBJECT_PREFIX).strip()
        if self.transform_code:
            return "retail_transform failed"
        return "retail_ingest failed" if self.ledger is None or self.exit_code else "the file was not loaded"

    def print(self) -> None:
        if self.printed:
            return
        self.printed = True
        print()
        print(printable(f"  file           {self.path.name}" + (f"  (s3://{BUCKET}/{self.key})" if self.key else "")))
        if self.key is None:
            print("  status         not uploaded")
        elif self.ledger is None:
            if self.ingest_seconds is None:
                print("  status         the ingest run did not finish")
            else:
                print(f"  status         the run failed before loading anything (exit code {self.exit_code})")
        else:
            row = self.ledger
            duplicate_of = f" (same content as batch {row['duplicate_of']})" if row["duplicate_of"] else ""
            print(f"  status         {row['status']}{duplicate_of}")
            print(f"  rows loaded    {row['rows_loaded']:,}")
            print(f"  rows rejected  {row['rows_rejected']:,}")
            if row["error"]:
                print(f"  reason         {printable(row['error'])}")
                print(printable(f"  report         s3://{BUCKET}/quarantine/{self.path.name}.report.json"))
        if self.ingest_seconds is not None:
            transform = f" + {self.transform_seconds:.1f} transform" if self.transform_code is not None else ""
            print(f"  seconds        {self.ingest_seconds:.1f} ingest{transform}")
        if self.transform_code is not None:
            print(f"  transform      {'success' if self.transform_code == 0 else 'FAILED'}")
            for table, rows in self.layers.items():
                print(f"    {table:36} {rows:>10,} rows")
        if self.alerts is not None:
            alerts = "".join(f"\n                 - {printable(alert['subject'])}" for alert in self.alerts)
            print(f"  alerts sent    {len(self.alerts)}{alerts}")
        if self.holds is not None:
            files = "".join(f"\n                 - {printable(key)}: {rows:,} rows" for key, rows in self.holds)
            print(f"  bronze holds   {len(self.holds)} file(s) (make reset empties the warehouse){files}")
        print('  warehouse      make psql  (or: psql "$(make -s warehouse-url)")')
        print()


def _run_demo(stack: Stack, path: Path, summary: DemoSummary) -> int:
    progress = Clock()
    progress.stage("starting PostgreSQL, moto (S3, SNS) and Airflow's metadata DB ...")
    stack.up()
    stack.read_alerts()  # count only this run's alerts
    progress.stage(f"stack up; uploading {path.name} ({path.stat().st_size / 1e6:.1f} MB) ...")
    summary.key = upload_to_incoming(stack, path)
    logs = stack.home / "logs"
    logs.mkdir(exist_ok=True)
    log = logs / f"demo-{datetime.now(UTC):%Y%m%dT%H%M%S}.log"
    started_at = datetime.now(UTC)
    clock = time.perf_counter()
    # The waiting DAG, as the running services would run it: its sensor finds the upload at the first look.
    progress.stage(f"uploaded to s3://{BUCKET}/{summary.key}; running retail_ingest (full log: {log})")
    with LogFollower(log, progress):
        summary.exit_code = stack.run_airflow(["dags", "test", "retail_ingest"], log=log)
    summary.ingest_seconds = time.perf_counter() - clock
    with psycopg.connect(stack.warehouse_url(OWNER_ROLE), connect_timeout=5) as conn:
        summary.ledger = ledger.latest_row_of(conn, summary.key, since=started_at)
    loaded = summary.ledger is not None and summary.ledger["status"] == Status.LOADED and not summary.exit_code
    if loaded:
        progress.stage("loaded; running retail_transform (dbt through Cosmos: each model and test below) ...")
        clock = time.perf_counter()
        with LogFollower(log, progress):
            summary.transform_code = stack.run_airflow(["dags", "test", "retail_transform"], log=log)
        summary.transform_seconds = time.perf_counter() - clock
        _forget_queued_transform(stack)
        if summary.transform_code == 0:  # after a failed build a table may not exist: the alert says why
            summary.layers = _layer_rows(stack)
    summary.alerts = stack.read_alerts()
    with psycopg.connect(stack.warehouse_url(OWNER_ROLE), connect_timeout=5) as conn:
        summary.holds = ledger.current_files(conn)
    summary.print()
    rejected = summary.ledger is not None and summary.ledger["status"] == Status.REJECTED
    if summary.ledger is None or rejected or summary.exit_code or summary.transform_code:
        print(printable(f"demo: the pipeline did not complete: {summary.cause()}; see {log}"), file=sys.stderr)
        return 1
    return 0
