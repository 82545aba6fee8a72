"""Runs a killed `airflow dags test` leaves `running` (an interrupted `make demo`) are failed, not left to stall
the services: on `make up` and `make demo` (Stack.up), by an interrupted demo itself, and `make health` reports
them. Each test really kills an `airflow dags test` process while one of its tasks runs."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from devstack import REPO_ROOT
from devstack.aws import BUCKET
from devstack.processes import alive
from devstack.stack import Stack
from devstack.stale_runs import fail_orphaned_runs, orphaned_runs
from include.retail import health

pytestmark = pytest.mark.integration

_DDL_LOCK_KEY = (
    0x7265_7461_696C  # include/retail/platform/warehouse.py's: apply_warehouse_ddl waits while a test holds it
)


@pytest.fixture(autouse=True)
def no_orphans_of_earlier_tests(stack: Stack) -> None:
    """Fault tests elsewhere kill `dags test` processes on purpose: their runs are not this module's to count."""
    fail_orphaned_runs(stack.airflow_db, grace=timedelta(0))


def task_states(stack: Stack, dag_id: str, run_id: str) -> dict[str, str | None]:
    with sqlite3.connect(stack.airflow_db, timeout=30) as db:
        rows = db.execute(
            "select task_id, map_index, state from task_instance where dag_id = ? and run_id = ?", (dag_id, run_id)
        ).fetchall()
    return {(task if index < 0 else f"{task}[{index}]"): state for task, index, state in rows}


def run_state(stack: Stack, dag_id: str, run_id: str) -> str:
    with sqlite3.connect(stack.airflow_db, timeout=30) as db:
        return db.execute("select state from dag_run where dag_id = ? and run_id = ?", (dag_id, run_id)).fetchone()[0]


def wait_for_running_task(stack: Stack, dag_id: str, task_id: str, pid: int, timeout: float = 180) -> str:
    """The run id of the run of ``dag_id`` whose ``task_id`` the process ``pid`` is running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.airflow_db.exists():
            with sqlite3.connect(stack.airflow_db, timeout=30) as db:
                found = db.execute(
                    "select run_id from task_instance where dag_id = ? and task_id = ? and state = 'running' "
                    "and pid = ?",
                    (dag_id, task_id, pid),
                ).fetchone()
            if found:
                return found[0]
        assert alive(pid), f"the process {pid} ended before running {dag_id}.{task_id}"
        time.sleep(0.5)
    raise TimeoutError(f"{dag_id}.{task_id} was not running within {timeout:.0f} s")


@contextmanager
def ddl_held(stack: Stack) -> Iterator[None]:
    """Hold the DDL lock: a run's apply_warehouse_ddl task stays `running` until the block ends (so does
    Stack.up, which applies the DDL too: call it after)."""
    with psycopg.connect(stack.warehouse_url(), autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", (_DDL_LOCK_KEY,))
        yield


def test_a_killed_dags_test_run_is_reported_then_failed_by_up(stack: Stack, tmp_path: Path) -> None:
    key = "incoming/stale-run-never-uploaded.csv"
    airflow = str(Path(sys.executable).parent / "airflow")
    with ddl_held(stack), (tmp_path / "dags-test.log").open("wb") as log:
        process = subprocess.Popen(
            [airflow, "dags", "test", "retail_ingest_file", "--conf", json.dumps({"key": key})],
            env={**os.environ, **stack.environment()},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            run_id = wait_for_running_task(stack, "retail_ingest_file", "apply_warehouse_ddl", process.pid)
            assert orphaned_runs(stack.airflow_db) == []  # its process is alive: not stale
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    [orphaned] = orphaned_runs(stack.airflow_db)
    assert (orphaned.dag_id, orphaned.run_id, orphaned.pids) == ("retail_ingest_file", run_id, (process.pid,))
    assert "apply_warehouse_ddl" in orphaned.unfinished_tasks
    check = health.check_stale_runs(lambda: [run.describe() for run in orphaned_runs(stack.airflow_db)])
    assert check.severity == health.CRITICAL
    assert f"retail_ingest_file {run_id}" in check.detail
    assert run_state(stack, "retail_ingest_file", run_id) == "running"  # health only reports

    stack.up()  # what `make up` and `make demo` start with

    assert run_state(stack, "retail_ingest_file", run_id) == "failed"
    states = task_states(stack, "retail_ingest_file", run_id)
    assert states["apply_warehouse_ddl"] == "failed"
    assert not {task: state for task, state in states.items() if state in (None, "running", "queued", "scheduled")}
    assert orphaned_runs(stack.airflow_db) == []
    assert health.check_stale_runs(lambda: []).severity == health.OK


def test_an_interrupted_demo_fails_its_own_run_and_says_so_in_one_line(stack: Stack, tmp_path: Path) -> None:
    s3 = stack.boto3_client("s3")
    demo = subprocess.Popen(
        [sys.executable, "-m", "devstack", "--home", str(stack.home), "demo"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The demo prepares the stack (applying the DDL) before it uploads: hold the DDL lock only after that.
        assert demo.stdout is not None
        seen = []
        while "uploaded to s3://" not in (line := demo.stdout.readline()) and line:
            seen.append(line)  # the demo's stage lines before the upload (make demo streams its progress)
        assert line, "".join(seen) + (demo.stderr.read() if demo.stderr else "")
        with ddl_held(stack):
            dags_test = wait_for_dags_test(demo.pid)
            run_id = wait_for_running_task(stack, "retail_ingest", "apply_warehouse_ddl", dags_test)
            demo.send_signal(signal.SIGTERM)
            out, err = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for item in s3.list_objects_v2(Bucket=BUCKET, Prefix="incoming/").get("Contents", []):
            s3.delete_object(Bucket=BUCKET, Key=item["Key"])

    assert demo.returncode == 130, out + err
    assert not alive(dags_test)
    assert run_state(stack, "retail_ingest", run_id) == "failed"
    assert task_states(stack, "retail_ingest", run_id)["apply_warehouse_ddl"] == "failed"
    assert "Traceback" not in out + err
    assert err.strip().splitlines() == [f"demo: interrupted; marked its run failed (retail_ingest {run_id})."]
    assert "file           online_retail_sample.xlsx" in out  # the summary so far


def wait_for_dags_test(parent: int, timeout: float = 60) -> int:
    """The pid of the `airflow dags test` the process ``parent`` started."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(parent).children(recursive=True):
            if "dags" in child.cmdline() and "test" in child.cmdline():
                return child.pid
        time.sleep(0.2)
    raise TimeoutError(f"process {parent} started no `airflow dags test` within {timeout:.0f} s")


def test_a_transform_with_no_sales_announces_nothing(stack: Stack, reset_warehouse, run_transform) -> None:
    """What `make up` published after demos: "Transform done: 0 months, revenue 0.00" from a run with nothing."""
    reset_warehouse()
    run = run_transform()
    assert run.state == "success"
    assert [alert["subject"] for alert in run.alerts] == []
    with sqlite3.connect(stack.airflow_db, timeout=30) as db:
        (state,) = db.execute(
            "select state from task_instance where dag_id = 'retail_transform' and run_id = ? "
            "and task_id = 'announce_transform'",
            (run.run_id,),
        ).fetchone()
    assert state == "skipped"
