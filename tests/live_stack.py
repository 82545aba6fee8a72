"""Helpers for tests against an embedded stack whose Airflow services run (tests/e2e, tests/events)."""

from __future__ import annotations

import subprocess
import sys
import time

import psycopg

from devstack import REPO_ROOT
from devstack.stack import Stack


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
