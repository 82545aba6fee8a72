"""Command line of the embedded stack: ``python -m devstack {up,down,status,health,env,warehouse-url,upload,demo,
dbt,trigger,reset,clean,report}``.

The Makefile calls these; they can be called directly from the project's virtualenv too.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError

from devstack import report as report_command
from devstack import sample
from devstack.airflow_services import ADMIN_USER
from devstack.aws import BUCKET
from devstack.postgres import PostgresNotAvailable
from devstack.progress import Clock, LogFollower
from devstack.stack import Stack
from devstack.stale_runs import fail_orphaned_runs, orphaned_runs
from devstack.warehouse import OWNER_ROLE
from include.retail.ingest import ledger
from include.retail.ingest.ledger import Status

# What a part of the stack being down or dying looks like to the CLI: reported in one line, not a traceback.
STACK_ERRORS = (
    psycopg.Error,
    BotoCoreError,
    ClientError,
    S3UploadFailedError,
    subprocess.CalledProcessError,
    RuntimeError,  # the stack's own "did not start; see <log>"
)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def stack_fault(stack: Stack, error: BaseException) -> str:
    """Which part of the stack failed, and what to do, in one line."""
    if isinstance(error, subprocess.CalledProcessError) and "pg_ctl" in str(error.cmd):
        return (
            f"PostgreSQL did not start on 127.0.0.1:{stack.state.postgres_port}: {_one_line(error)} "
            f"(see {stack.postgres.log_file}). Try `make down` then the command again."
        )
    if isinstance(error, subprocess.CalledProcessError):  # initdb, and any other command the stack runs
        return f"the embedded stack: {_one_line(error)}"
    if isinstance(error, psycopg.Error):
        where = f"PostgreSQL (127.0.0.1:{stack.state.postgres_port})"
    elif isinstance(error, (BotoCoreError, ClientError, S3UploadFailedError)):
        where = f"S3/SNS (moto, {stack.moto_url})"
    else:
        where = "the embedded stack"
    return f"{where} is not answering: {_one_line(error)[:300]}. Try `make down` then the command again."


def upload(stack: Stack, path: Path) -> str:
    key = "incoming/" + path.name
    stack.boto3_client("s3").upload_file(str(path), BUCKET, key)
    return key


def _layer_rows(stack: Stack) -> dict[str, int]:
    """Rows per layer, counted as the transform's SNS summary counts them."""
    from include.retail.transform.dbt_project import DBT_MANIFEST
    from include.retail.transform.summary import DbtProject, layer_counts

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
        print(f"demo: {path} is not a file", file=sys.stderr)
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
    """What the demo found out so far: printed at the end, however it ends."""

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

    def print(self) -> None:
        if self.printed:
            return
        self.printed = True
        print()
        print(f"  file           {self.path.name}" + (f"  (s3://{BUCKET}/{self.key})" if self.key else ""))
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
                print(f"  reason         {row['error']}")
                print(f"  report         s3://{BUCKET}/quarantine/{self.path.name}.report.json")
        if self.ingest_seconds is not None:
            transform = f" + {self.transform_seconds:.1f} transform" if self.transform_code is not None else ""
            print(f"  seconds        {self.ingest_seconds:.1f} ingest{transform}")
        if self.transform_code is not None:
            print(f"  transform      {'success' if self.transform_code == 0 else 'FAILED'}")
            for table, rows in self.layers.items():
                print(f"    {table:36} {rows:>10,} rows")
        if self.alerts is not None:
            alerts = "".join(f"\n                 - {alert['subject']}" for alert in self.alerts)
            print(f"  alerts sent    {len(self.alerts)}{alerts}")
        if self.holds is not None:
            files = "".join(f"\n                 - {key}: {rows:,} rows" for key, rows in self.holds)
            print(f"  bronze holds   {len(self.holds)} file(s) (make reset empties the warehouse){files}")
        print('  warehouse      make psql  (or: psql "$(make -s warehouse-url)")')
        print()


def _run_demo(stack: Stack, path: Path, summary: DemoSummary) -> int:
    progress = Clock()
    progress.stage("starting PostgreSQL, moto (S3, SNS) and Airflow's metadata DB ...")
    stack.up()
    stack.read_alerts()  # count only this run's alerts
    progress.stage(f"stack up; uploading {path.name} ({path.stat().st_size / 1e6:.1f} MB) ...")
    summary.key = upload(stack, path)
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
        summary.layers = _layer_rows(stack)
    summary.alerts = stack.read_alerts()
    with psycopg.connect(stack.warehouse_url(OWNER_ROLE), connect_timeout=5) as conn:
        summary.holds = ledger.current_files(conn)
    summary.print()
    rejected = summary.ledger is not None and summary.ledger["status"] == Status.REJECTED
    if summary.ledger is None or rejected or summary.exit_code or summary.transform_code:
        print(f"demo: the pipeline did not complete; see {log}", file=sys.stderr)
        return 1
    return 0


def up(stack: Stack, trigger: str) -> int:
    if stack.airflow_running() and stack.state.trigger != trigger:
        print(
            f"up: the Airflow services are running with TRIGGER={stack.state.trigger}; `make down` first to switch "
            f"to TRIGGER={trigger}.",
            file=sys.stderr,
        )
        return 2
    stack.use_trigger(trigger)
    detection = {
        "sensor": "uploads detected by retail_ingest's sensor (a LIST of incoming/ every 5 s)",
        "events": "uploads detected by S3 events through SQS (retail_ingest_events)",
    }[trigger]
    print("Starting PostgreSQL, moto (S3, SNS, SQS) and Airflow (api-server, scheduler, dag-processor, triggerer) ...")
    stack.start_airflow()
    print(
        f"""
  Airflow UI   {stack.api_url}   user {ADMIN_USER}   password {stack.state.admin_password}
  warehouse    make psql   (PostgreSQL on 127.0.0.1:{stack.state.postgres_port})
  S3 and SNS   {stack.moto_url}   (bucket {BUCKET})
  detection    {detection}
  logs         {stack.home / "logs"}

  Next: make upload WORKBOOK=../shared/data/online_retail.xlsx, then watch the ingest and
  retail_transform in the UI; make health; make down to stop everything."""
    )
    return 0


def run_dbt(stack: Stack, args: list[str]) -> int:
    """dbt against the stack's warehouse, as the transform role, with the project's profile (``make dbt``).

    Its artifacts go to ``<stack>/dbt-target``: ``include/dbt/target`` holds the manifest Cosmos renders from.
    """
    from include.retail.transform.dbt_project import DBT_EXECUTABLE, DBT_PROJECT_DIR

    stack.postgres.start()
    stack.warehouse.prepare()
    env = {
        **os.environ,
        **stack.warehouse.dbt_profile_environment(),
        "DBT_TARGET_PATH": str(stack.home / "dbt-target"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    }
    print(f"dbt {' '.join(args)}   (in {DBT_PROJECT_DIR}, target path {env['DBT_TARGET_PATH']})", flush=True)
    return subprocess.run([str(DBT_EXECUTABLE), *args], cwd=DBT_PROJECT_DIR, env=env, check=False).returncode


def trigger(stack: Stack, key: str) -> int:
    """Trigger ``retail_ingest_file`` for ``key`` through the running Airflow (``make trigger KEY=...``)."""
    if not stack.airflow_running():
        print("trigger: the Airflow services are not running: `make up` first.", file=sys.stderr)
        return 2
    api = stack.api()
    try:
        run = api.post("/dags/retail_ingest_file/dagRuns", {"logical_date": None, "conf": {"key": key}})
    finally:
        api.close()
    print(f"retail_ingest_file run {run['dag_run_id']} for {key}: {stack.api_url}/dags/retail_ingest_file")
    return 0


def reset(stack: Stack) -> None:
    """Empty the warehouse (bronze, the ledger, silver, gold) and the bucket; keep everything else."""
    stack.up()
    stack.reset_warehouse(bronze=True)
    s3 = stack.boto3_client("s3")
    removed = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET):
        versions = [
            {"Key": item["Key"], "VersionId": item["VersionId"]}
            for item in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        if versions:
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": versions, "Quiet": True})
            removed += len(versions)
    stack.read_alerts()
    print(f"Warehouse emptied (bronze, ledger, silver, gold); s3://{BUCKET} emptied ({removed} object versions).")


def health(stack: Stack) -> int:
    """Print the pipeline's health checks; exit 0 (OK), 1 (WARNING) or 2 (CRITICAL)."""
    from include.retail import health as checks

    now = datetime.now(UTC)

    def failed_runs(since: datetime) -> list[dict]:
        api = stack.api()
        try:
            return api.dag_runs(state="failed", end_date_gte=since.isoformat())
        finally:
            api.close()

    results = [
        *checks.check_warehouse(lambda: psycopg.connect(stack.warehouse_url(OWNER_ROLE), connect_timeout=5), now),
        *checks.check_bucket(stack.boto3_client("s3"), BUCKET, now),
        *(
            checks.check_upload_queue(stack.boto3_client("sqs"), stack.moto.uploads_queue_url)
            if stack.state.trigger == "events"
            else []
        ),
        checks.check_failed_runs(failed_runs, now),
        checks.check_stale_runs(lambda: [run.describe() for run in orphaned_runs(stack.airflow_db)]),
    ]
    text, code = checks.report(results)
    print(text)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("--home", type=Path, default=None, help="state directory (default: .devstack/)")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="start PostgreSQL, moto and the Airflow services; print the UI login")
    start.add_argument(
        "--trigger",
        choices=["sensor", "events"],
        default="sensor",
        help="how uploads are detected: the S3 sensor (default) or S3 event notifications through SQS",
    )
    commands.add_parser("health", help="check the pipeline like a monitor would; exit 0 OK, 1 WARNING, 2 CRITICAL")
    commands.add_parser("down", help="stop everything the stack started")
    commands.add_parser("status", help="say what is running")
    commands.add_parser("env", help="print the stack's Airflow settings as shell exports")
    url = commands.add_parser("warehouse-url", help="print a libpq URL of the warehouse")
    url.add_argument(
        "--role", default=OWNER_ROLE, choices=[OWNER_ROLE, "retail_loader", "retail_transformer", "postgres"]
    )
    up_load = commands.add_parser("upload", help="put a file under incoming/ of the bucket")
    up_load.add_argument("path", type=Path)
    run = commands.add_parser("demo", help="load a workbook (default: the generated sample) end to end")
    run.add_argument("--workbook", type=Path, default=None)
    dbt = commands.add_parser("dbt", help="run dbt against the warehouse: python -m devstack dbt -- ls")
    dbt.add_argument("dbt_args", nargs=argparse.REMAINDER)
    by_hand = commands.add_parser("trigger", help="trigger retail_ingest_file for one key (services running)")
    by_hand.add_argument("key")
    commands.add_parser("reset", help="empty the warehouse and the bucket (keeps the virtualenvs and settings)")
    commands.add_parser("clean", help="stop everything and delete the PostgreSQL cluster if it lives outside")
    report_command.add_parser(commands)
    args = parser.parse_args(argv)

    stack = Stack(args.home) if args.home else Stack()
    # A SIGTERM (a CI timeout, `kill`) ends the command as Ctrl-C does: the demo then fails its own run.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.command == "up":
            return up(stack, args.trigger)
        elif args.command == "health":
            return health(stack)
        elif args.command == "down":
            stack.down()
            print("Stack stopped.")
        elif args.command == "status":
            for part, running in stack.status().items():
                print(f"{part:22} {'running' if running else 'stopped'}")
        elif args.command == "env":
            for name, value in stack.environment().items():
                print(f"export {name}={shlex.quote(value)}")
        elif args.command == "warehouse-url":
            print(stack.warehouse_url(args.role))
        elif args.command == "upload":
            stack.up()
            print(f"s3://{BUCKET}/{upload(stack, args.path)}")
        elif args.command == "demo":
            return demo(stack, args.workbook)
        elif args.command == "dbt":
            return run_dbt(stack, [arg for arg in args.dbt_args if arg != "--"] or ["--help"])
        elif args.command == "report":
            return report_command.run(stack, args)
        elif args.command == "trigger":
            return trigger(stack, args.key)
        elif args.command == "reset":
            reset(stack)
        elif args.command == "clean":
            stack.down()
            if not stack.postgres.root.is_relative_to(stack.home):
                stack.postgres.remove()
                print(f"Removed the PostgreSQL cluster in {stack.postgres.root}.")
    except PostgresNotAvailable as error:
        print(f"devstack: {error}", file=sys.stderr)
        return 3
    except STACK_ERRORS as error:
        print(f"devstack {args.command}: {stack_fault(stack, error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"devstack {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
