"""Helpers for tests against an embedded stack whose Airflow services run (tests/e2e, tests/events)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from devstack import REPO_ROOT
from devstack.stack import Stack
from devstack.state import free_port

ARTIFACTS = REPO_ROOT / "test-artifacts"


@contextmanager
def running_stack(name: str, *, trigger: str = "sensor") -> Iterator[Stack]:
    """A full local Airflow (`make up TRIGGER=trigger`) on a stack of its own, on free ports; stopped at the
    end, its services' logs kept in ``test-artifacts/<name>-logs/``."""
    home = Path(tempfile.mkdtemp(prefix=f"retail-{name}-"))
    home.chmod(0o755)  # the postgres server user must reach the cluster directory inside
    stack = Stack(home, api_port=free_port())
    stack.use_trigger(trigger)
    try:
        stack.start_airflow()
        yield stack
    finally:
        stack.down()
        shutil.copytree(home / "logs", ARTIFACTS / f"{name}-logs", dirs_exist_ok=True)
        shutil.rmtree(home, ignore_errors=True)


def devstack_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    """Run ``python -m devstack`` (what the make targets call) against ``stack``."""
    return subprocess.run(
        [sys.executable, "-m", "devstack", "--home", str(stack.home), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def ledger_rows(stack: Stack, key: str) -> list[tuple]:
    """``(status, rows_loaded, airflow_run_id, started_at)`` of each ledger row of ``key``, oldest first."""
    with psycopg.connect(stack.warehouse_url()) as conn:
        return conn.execute(
            "select status, rows_loaded, airflow_run_id, started_at from bronze.load_ledger"
            " where source_key = %s order by finished_at",
            (key,),
        ).fetchall()


def wait_for_ledger(stack: Stack, key: str, *, timeout: float, rows: int = 1) -> list[tuple]:
    """The ledger rows of ``key`` (``ledger_rows``) once there are at least ``rows`` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(found := ledger_rows(stack, key)) >= rows:
            return found
        time.sleep(1)
    raise TimeoutError(f"{key} did not have {rows} row(s) in bronze.load_ledger within {timeout:.0f} s")
