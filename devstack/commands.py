"""What the command line's commands do, apart from the demo (devstack/demo.py) and ``make report``
(devstack/fetch_gold_report.py): start, stop and describe the stack, upload a file, run dbt, trigger a run,
empty the warehouse, check the pipeline's health.

Each takes the ``Stack`` and prints what a user needs; devstack/__main__.py parses the arguments and calls them.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from devstack.airflow_services import ADMIN_USER
from devstack.aws import BUCKET
from devstack.stack import Stack
from devstack.stale_runs import orphaned_runs
from devstack.warehouse import OWNER_ROLE


def upload_to_incoming(stack: Stack, path: Path) -> str:
    """Put ``path`` under incoming/ of the bucket, where the ingest DAGs look; return its key."""
    key = "incoming/" + path.name
    stack.boto3_client("s3").upload_file(str(path), BUCKET, key)
    return key


def upload(stack: Stack, path: Path) -> None:
    """Start what the upload needs (PostgreSQL, moto), upload, print the object's S3 URI."""
    stack.up()
    print(f"s3://{BUCKET}/{upload_to_incoming(stack, path)}")


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

    api = stack.api()

    def finished_runs(dag_id: str) -> list[dict]:
        return api.dag_runs(dag_id, state=["success", "failed"])

    results = [
        *checks.check_warehouse(lambda: psycopg.connect(stack.warehouse_url(OWNER_ROLE), connect_timeout=5), now),
        *checks.check_bucket(stack.boto3_client("s3"), BUCKET, now),
        *(
            checks.check_upload_queue(stack.boto3_client("sqs"), stack.moto.uploads_queue_url)
            if stack.state.trigger == "events"
            else []
        ),
        checks.check_stale_runs(lambda: [run.describe() for run in orphaned_runs(stack.airflow_db)]),
    ]
    try:
        results[-1:-1] = checks.check_dag_runs(finished_runs, now)
    finally:
        api.close()
    text, code = checks.report(results)
    print(text)
    return code


def down(stack: Stack) -> None:
    stack.down()
    print("Stack stopped.")


def status(stack: Stack) -> None:
    for part, running in stack.status().items():
        print(f"{part:22} {'running' if running else 'stopped'}")


def env(stack: Stack) -> None:
    """The stack's Airflow settings as shell exports (``eval "$(make -s env)"``)."""
    for name, value in stack.environment().items():
        print(f"export {name}={shlex.quote(value)}")


def warehouse_url(stack: Stack, role: str) -> None:
    print(stack.warehouse_url(role))


def clean(stack: Stack) -> None:
    """Stop everything; delete the PostgreSQL cluster if it lives outside the state directory (``cluster_root``)."""
    stack.down()
    if not stack.postgres.root.is_relative_to(stack.home):
        stack.postgres.remove()
        print(f"Removed the PostgreSQL cluster in {stack.postgres.root}.")
