"""docker-compose, run for real (issue 10): what docs/compose.md promises a user, done by the test.

One flow on one compose project, in order: LocalExecutor up; the real workbook uploaded to moto loads into bronze
and is built into silver and gold with no other action; the warehouse, the SNS alerts and the UI login checked;
then the celery profile with two workers on the same volumes and uploads detected by S3 events
(RETAIL_TRIGGER=events: airflow-init wires the bucket to an SQS queue), a second file, proof that the events DAG
took it and that both workers ran tasks; ``down -v`` (in the fixture's teardown) leaves nothing behind.
Everything is reached through the ports the compose file publishes on 127.0.0.1, with the settings of the
project's ``.env``.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import boto3
import httpx
import psycopg
import pytest
from psycopg import sql

from devstack import sample
from devstack.airflow_api import AirflowApi
from devstack.aws import read_alerts
from tests.compose.compose_stack import ComposeStack

pytestmark = pytest.mark.compose

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL_WORKBOOK = REPO_ROOT.parent / "shared" / "data" / "online_retail.xlsx"
REAL_WORKBOOK_ROWS = 541_909
MODELS = REPO_ROOT / "include" / "dbt" / "models"
# The warehouse's owner (the admin connection's login); the server's superuser only creates it.
WAREHOUSE_OWNER = "retail_admin"
# On this 2-core machine: ingest of the real workbook takes minutes, dbt on it about as long again.
INGEST_TIMEOUT = 600
TRANSFORM_TIMEOUT = 900
UP_TIMEOUT = 900
LOG_TAIL = 40


def test_compose_stack_runs_the_pipeline_on_local_and_celery_executors(compose_stack: ComposeStack, tmp_path) -> None:
    if not REAL_WORKBOOK.is_file():
        pytest.skip(f"the real Online Retail workbook is not at {REAL_WORKBOOK} (../shared/data is absent)")
    stack = compose_stack

    stack.up("local", wait_timeout=UP_TIMEOUT)
    api = airflow_api(stack)
    with warehouse(stack) as conn:
        with stack.step("local: ingest + transform of the real workbook"):
            key = f"incoming/{REAL_WORKBOOK.name}"
            uploaded_at = upload(stack, REAL_WORKBOOK, key)
            wait_for_ingest(api, conn, key, since=uploaded_at)
            wait_for_transform(api, since=uploaded_at)

        with stack.step("local: warehouse and alerts checked"):
            check_bronze_silver_and_gold(conn, key)
            check_alerts(stack, key, REAL_WORKBOOK_ROWS)

        with stack.step("local: UI and login checked"):
            check_ui_and_login(stack)

        stack.set_env(AIRFLOW_EXECUTOR="CeleryExecutor", COMPOSE_PROFILES="celery", RETAIL_TRIGGER="events")
        stack.up("celery", scale={"airflow-worker": 2}, wait_timeout=UP_TIMEOUT)
        api = airflow_api(stack)
        with stack.step("celery, events: ingest + transform of a second file"):
            second = sample.sample_workbook(tmp_path)
            second_rows = len(sample.sample_rows())
            second_key = f"incoming/{second.name}"
            bronze_before = bronze_rows(conn)
            uploaded_at = upload(stack, second, second_key)
            ingest = wait_for_ingest(api, conn, second_key, since=uploaded_at, dag_id="retail_ingest_events")
            transform = wait_for_transform(api, since=uploaded_at)

        with stack.step("celery: warehouse, alerts and workers checked"):
            assert ledger(conn, second_key) == ("loaded", second_rows)
            assert bronze_rows(conn) - bronze_before == second_rows
            check_alerts(stack, second_key, second_rows, transform=False)
            check_both_workers_ran_tasks(
                stack, api, [("retail_ingest_events", ingest), ("retail_transform", transform)]
            )
            # One path takes the uploads: the sensor DAG's waiting run, if it was still waiting, stood down.
            assert not [
                run
                for run in api.dag_runs("retail_ingest", state="success")
                if run["end_date"]
                and datetime.fromisoformat(run["end_date"]) >= uploaded_at
                and run_loaded_files(api, run)
            ]


# -- reaching the stack through its published ports ------------------------------------------------------------


def airflow_api(stack: ComposeStack) -> AirflowApi:
    return AirflowApi(
        f"http://127.0.0.1:{stack.env['AIRFLOW_API_PORT']}",
        stack.env["AIRFLOW_ADMIN_USERNAME"],
        stack.env["AIRFLOW_ADMIN_PASSWORD"],
        timeout=30,
    )


def aws(stack: ComposeStack, service: str):
    return boto3.client(
        service,
        endpoint_url=f"http://127.0.0.1:{stack.env['MOTO_PORT']}",
        aws_access_key_id=stack.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stack.env["AWS_SECRET_ACCESS_KEY"],
        region_name=stack.env["AWS_REGION"],
    )


def warehouse(stack: ComposeStack) -> psycopg.Connection:
    return psycopg.connect(
        host="127.0.0.1",
        port=int(stack.env["WAREHOUSE_PORT"]),
        user=WAREHOUSE_OWNER,
        password=stack.env["WAREHOUSE_ADMIN_PASSWORD"],
        dbname="retail",
        autocommit=True,
    )


def upload(stack: ComposeStack, path: Path, key: str) -> datetime:
    """Put ``path`` under ``key`` in the bucket .env names, as a user would; returns when it landed."""
    uploaded_at = datetime.now(UTC)
    aws(stack, "s3").upload_file(str(path), stack.env["RETAIL_BUCKET"], key)
    return uploaded_at


# -- waiting for the DAGs, failing fast with what explains a failure --------------------------------------------


def wait_for_ingest(
    api: AirflowApi, conn: psycopg.Connection, key: str, *, since: datetime, dag_id: str = "retail_ingest"
) -> dict:
    """The successful run of ``dag_id`` that loaded ``key``: the always-waiting run (or the run an S3 event
    woke) takes the upload, and the ledger names it. Fails at once on a failed run or a load that did not
    succeed."""
    deadline = time.monotonic() + INGEST_TIMEOUT
    while time.monotonic() < deadline:
        row = conn.execute(
            "select status, airflow_run_id, error from bronze.load_ledger where source_key = %s"
            " order by finished_at desc limit 1",
            (key,),
        ).fetchone()
        if row and row[0] != "loaded":
            run = api.get(f"/dags/{dag_id}/dagRuns/{row[1]}")
            raise AssertionError(f"{key} was recorded {row[0]} by run {row[1]}: {row[2]}\n{run_report(api, run)}")
        if row:
            run = api.get(f"/dags/{dag_id}/dagRuns/{row[1]}")
            if run["state"] == "success":
                return run
        for run in api.dag_runs(dag_id, state="failed"):
            if run["end_date"] and datetime.fromisoformat(run["end_date"]) >= since:
                raise AssertionError(f"a {dag_id} run failed after the upload of {key}\n{run_report(api, run)}")
        time.sleep(5)
    raise AssertionError(f"no {dag_id} run loaded {key} within {INGEST_TIMEOUT} s\n{recent_runs(api)}")


def wait_for_transform(api: AirflowApi, *, since: datetime) -> dict:
    """The first `retail_transform` run the bronze Asset triggered after ``since``, which must succeed."""
    try:
        run = api.wait_for_run(
            "retail_transform",
            lambda run: run["run_type"] == "asset_triggered" and datetime.fromisoformat(run["run_after"]) >= since,
            timeout=TRANSFORM_TIMEOUT,
            poll=5,
        )
    except TimeoutError as error:
        raise AssertionError(f"{error}\n{recent_runs(api)}") from None
    assert run["state"] == "success", run_report(api, run)
    return run


def run_loaded_files(api: AirflowApi, run: dict) -> bool:
    """Whether any ``ingest_file`` of the run succeeded."""
    path = f"/dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}/taskInstances"
    instances = api.get(path, limit=1000)["task_instances"]
    return any(ti["task_id"] == "ingest_file" and ti["state"] == "success" for ti in instances)


def run_report(api: AirflowApi, run: dict) -> str:
    """A run's task states, and the log tail of each failed task instance."""
    path = f"/dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}"
    instances = api.get(f"{path}/taskInstances", limit=1000)["task_instances"]
    lines = [
        f"{run['dag_id']} run {run['dag_run_id']}: {run['state']}",
        "task states: " + json.dumps(Counter(instance["state"] for instance in instances)),
    ]
    for instance in instances:
        if instance["state"] not in ("failed", "up_for_retry"):
            continue
        name = instance["task_id"] + (f"[{instance['map_index']}]" if instance["map_index"] >= 0 else "")
        lines.append(f"--- {name} ({instance['state']}, try {instance['try_number']}, on {instance['hostname']}):")
        try:
            log = api.get(
                f"{path}/taskInstances/{instance['task_id']}/logs/{max(instance['try_number'], 1)}",
                map_index=instance["map_index"],
                full_content=True,
            )
            content = log.get("content", [])
            events = content.splitlines() if isinstance(content, str) else [str(e.get("event", e)) for e in content]
            lines += events[-LOG_TAIL:]
        except httpx.HTTPError as error:
            lines.append(f"(log not readable: {error})")
    return "\n".join(lines)


def recent_runs(api: AirflowApi) -> str:
    dag_ids = ("retail_ingest", "retail_ingest_events", "retail_transform")
    runs = [run for dag_id in dag_ids for run in api.dag_runs(dag_id)[:5]]
    return "recent runs:\n" + "\n".join(
        f"  {run['dag_id']} {run['dag_run_id']} {run['run_type']} {run['state']}" for run in runs
    )


# -- checks ----------------------------------------------------------------------------------------------------


def ledger(conn: psycopg.Connection, key: str) -> tuple[str, int] | None:
    return conn.execute(
        "select status, rows_loaded from bronze.load_ledger where source_key = %s order by finished_at desc limit 1",
        (key,),
    ).fetchone()


def bronze_rows(conn: psycopg.Connection) -> int:
    return conn.execute("select count(*) from bronze.retail_transactions").fetchone()[0]


def check_bronze_silver_and_gold(conn: psycopg.Connection, key: str) -> None:
    """Bronze holds the workbook's rows; every dbt model is built (with rows, bar the set-aside rows); 13 months."""
    assert ledger(conn, key) == ("loaded", REAL_WORKBOOK_ROWS)
    loaded = conn.execute("select count(*) from bronze.retail_transactions where source_key = %s", (key,)).fetchone()
    assert loaded == (REAL_WORKBOOK_ROWS,)
    models = sorted(f"{path.parent.name}.{path.stem}" for path in MODELS.glob("*/*.sql"))
    assert models, f"no dbt model under {MODELS}"
    missing = [name for name in models if conn.execute("select to_regclass(%s)", (name,)).fetchone() == (None,)]
    assert missing == [], f"dbt models not built: {missing}"
    count = sql.SQL("select count(*) from {}")
    empty = [
        name
        for name in models
        if name != "silver.transactions_set_aside"
        and conn.execute(count.format(sql.Identifier(*name.split(".")))).fetchone() == (0,)
    ]
    assert empty == [], f"dbt models built empty: {empty}"
    assert conn.execute("select count(*) from gold.monthly_sales_summary").fetchone() == (13,)


def check_alerts(stack: ComposeStack, key: str, rows: int, *, transform: bool = True) -> None:
    """The load summary naming ``key`` and (for the real workbook) the transform summary reached SNS."""
    alerts = read_alerts(aws(stack, "sqs"))
    subjects = [alert["subject"] or "" for alert in alerts]
    summaries = [alert["message"] for alert in alerts if (alert["subject"] or "").startswith("[retail] Loaded ")]
    assert any(f"- {key}: loaded, {rows:,} rows" in summary for summary in summaries), alerts
    if transform:
        assert any(subject.startswith("[retail] Transform done: 13 months") for subject in subjects), subjects


def check_ui_and_login(stack: ComposeStack) -> None:
    """The UI's page answers, the .env login gets a token, a wrong password gets 401."""
    base = f"http://127.0.0.1:{stack.env['AIRFLOW_API_PORT']}"
    user, password = stack.env["AIRFLOW_ADMIN_USERNAME"], stack.env["AIRFLOW_ADMIN_PASSWORD"]
    with httpx.Client(base_url=base, timeout=30) as client:
        page = client.get("/")
        assert page.status_code == 200, page.text[:500]
        assert page.headers["content-type"].startswith("text/html")
        good = client.post("/auth/token", json={"username": user, "password": password})
        assert good.status_code in (200, 201), good.text
        assert good.json()["access_token"]
        bad = client.post("/auth/token", json={"username": user, "password": password + "-wrong"})
        assert bad.status_code == 401, bad.text


def check_both_workers_ran_tasks(stack: ComposeStack, api: AirflowApi, runs: list[tuple[str, dict]]) -> None:
    """The task instances' hostnames cover both airflow-worker containers' hostnames."""
    containers = stack.container_ids("airflow-worker")
    assert len(containers) == 2, containers
    workers = set(
        subprocess.run(
            ["docker", "inspect", "--format", "{{.Config.Hostname}}", *containers],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    )
    ran_on: Counter[str] = Counter()
    for dag_id, run in runs:
        instances = api.get(f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances", limit=1000)
        ran_on.update(instance["hostname"] for instance in instances["task_instances"] if instance["hostname"])
    print(f"[compose] task instances per host: {dict(ran_on)}; the workers: {sorted(workers)}", flush=True)
    assert workers <= set(ran_on), f"worker hostnames {sorted(workers)}; task instances ran on {dict(ran_on)}"
