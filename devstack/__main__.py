"""Command line of the embedded stack: ``python -m devstack {up,down,status,env,warehouse-url,upload,demo}``.

The Makefile calls these; they can be called directly from the project's virtualenv too.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from devstack import sample
from devstack.postgres import PostgresNotAvailable
from devstack.stack import ADMIN_USER, BUCKET, Stack


def upload(stack: Stack, path: Path) -> str:
    key = "incoming/" + path.name
    stack.boto3_client("s3").upload_file(str(path), BUCKET, key)
    return key


def _layer_rows(stack: Stack) -> dict[str, int]:
    """Rows per layer, counted as the transform's SNS summary counts them."""
    from include.retail.dbt_project import DBT_MANIFEST
    from include.retail.transform import DbtProject, layer_counts

    with psycopg.connect(stack.warehouse_url()) as conn:
        return layer_counts(conn, DbtProject.from_manifest(DBT_MANIFEST))


def demo(stack: Stack, workbook: Path | None) -> int:
    """Upload a workbook, run ingest then transform with ``airflow dags test``, print what happened."""
    if stack.airflow_running():
        # The running scheduler's waiting sensor would take the file from under `airflow dags test`.
        print(
            "demo: the Airflow services are running (make up): upload with `make upload WORKBOOK=...` and watch "
            f"{stack.api_url}, or `make down` first.",
            file=sys.stderr,
        )
        return 2
    stack.up()
    path = workbook.resolve() if workbook else sample.sample_workbook(stack.home / "samples")
    if not path.is_file():
        print(f"demo: {path} is not a file", file=sys.stderr)
        return 2
    stack.read_alerts()  # count only this run's alerts
    key = upload(stack, path)
    logs = stack.home / "logs"
    logs.mkdir(exist_ok=True)
    log = logs / f"demo-{datetime.now(UTC):%Y%m%dT%H%M%S}.log"
    started_at = datetime.now(UTC)
    clock = time.perf_counter()
    # The waiting DAG, as the running services would run it: its sensor finds the upload at the first look.
    print(f"Uploaded {path} to s3://{BUCKET}/{key}; running retail_ingest (log: {log}) ...", flush=True)
    exit_code = stack.run_airflow(["dags", "test", "retail_ingest"], log=log)
    ingest_seconds = time.perf_counter() - clock
    with psycopg.connect(stack.warehouse_url()) as conn:
        ledger = conn.execute(
            """
            select status, rows_loaded, rows_rejected, error, duplicate_of
            from bronze.load_ledger where source_key = %s and started_at >= %s
            order by finished_at desc limit 1
            """,
            (key, started_at),
        ).fetchone()
    loaded = ledger is not None and ledger[0] == "loaded" and not exit_code
    transform_code, transform_seconds = None, 0.0
    if loaded:
        print("Loaded; running retail_transform (dbt through Cosmos) ...", flush=True)
        clock = time.perf_counter()
        transform_code = stack.run_airflow(["dags", "test", "retail_transform"], log=log)
        transform_seconds = time.perf_counter() - clock
    alerts = stack.read_alerts()

    print()
    print(f"  file           {path.name}  (s3://{BUCKET}/{key})")
    if ledger is None:
        print(f"  status         the run failed before loading anything (exit code {exit_code})")
    else:
        status, rows_loaded, rows_rejected, error, duplicate_of = ledger
        print(f"  status         {status}" + (f" (same content as batch {duplicate_of})" if duplicate_of else ""))
        print(f"  rows loaded    {rows_loaded:,}")
        print(f"  rows rejected  {rows_rejected:,}")
        if error:
            print(f"  reason         {error}")
            print(f"  report         s3://{BUCKET}/quarantine/{path.name}.report.json")
    print(f"  seconds        {ingest_seconds:.1f} ingest" + (f" + {transform_seconds:.1f} transform" if loaded else ""))
    if transform_code is not None:
        print(f"  transform      {'success' if transform_code == 0 else 'FAILED'}")
        for table, rows in _layer_rows(stack).items():
            print(f"    {table:36} {rows:>10,} rows")
    print(f"  alerts sent    {len(alerts)}" + "".join(f"\n                 - {alert['subject']}" for alert in alerts))
    print('  warehouse      make psql  (or: psql "$(make -s warehouse-url)")')
    print()
    if ledger is None or ledger[0] == "rejected" or exit_code or transform_code:
        print(f"demo: the pipeline did not complete; see {log}", file=sys.stderr)
        return 1
    return 0


def up(stack: Stack) -> None:
    print("Starting PostgreSQL, moto (S3, SNS) and Airflow (api-server, scheduler, dag-processor, triggerer) ...")
    stack.start_airflow()
    print(
        f"""
  Airflow UI   {stack.api_url}   user {ADMIN_USER}   password {stack.state.admin_password}
  warehouse    make psql   (PostgreSQL on 127.0.0.1:{stack.state.postgres_port})
  S3 and SNS   {stack.moto_url}   (bucket {BUCKET})
  logs         {stack.home / "logs"}

  Next: make upload WORKBOOK=../shared/data/online_retail.xlsx, then watch retail_ingest and
  retail_transform in the UI; make health; make down to stop everything."""
    )


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
        *checks.check_warehouse(lambda: psycopg.connect(stack.warehouse_url(), connect_timeout=5), now),
        *checks.check_bucket(stack.boto3_client("s3"), BUCKET, now),
        checks.check_failed_runs(failed_runs, now),
    ]
    text, code = checks.report(results)
    print(text)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("--home", type=Path, default=None, help="state directory (default: .devstack/)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start PostgreSQL, moto and the Airflow services; print the UI login")
    commands.add_parser("health", help="check the pipeline like a monitor would; exit 0 OK, 1 WARNING, 2 CRITICAL")
    commands.add_parser("down", help="stop everything the stack started")
    commands.add_parser("status", help="say what is running")
    commands.add_parser("env", help="print the stack's Airflow settings as shell exports")
    url = commands.add_parser("warehouse-url", help="print a libpq URL of the warehouse")
    url.add_argument("--role", default="postgres", choices=["postgres", "retail_loader", "retail_transformer"])
    up_load = commands.add_parser("upload", help="put a file under incoming/ of the bucket")
    up_load.add_argument("path", type=Path)
    run = commands.add_parser("demo", help="load a workbook (default: the generated sample) end to end")
    run.add_argument("--workbook", type=Path, default=None)
    args = parser.parse_args(argv)

    stack = Stack(args.home) if args.home else Stack()
    try:
        if args.command == "up":
            up(stack)
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
    except PostgresNotAvailable as error:
        print(f"devstack: {error}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
