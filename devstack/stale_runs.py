"""Runs an `airflow dags test` left `running` when it was killed (an interrupted `make demo`), failed.

Such a run has nobody behind it: `dags test` runs its task instances in its own process (their ``pid`` is that
process's), no scheduler heartbeats them, so Airflow never fails them. While one stays `running`,
`retail_ingest` (``max_active_runs=1``) starts no run and `ingest_file` counts it against its concurrency
limit: uploads wait in incoming/ forever. A run is orphaned when the process that ran its tasks is gone.

The embedded stack's metadata DB is one SQLite file on this machine, read and written here directly: every
task instance in it ran on this machine, so a pid is enough to tell whether its process is still there.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

# A run whose process has not started a task yet cannot be told apart from one killed before its first task;
# give a live `dags test` this long (parsing the DAGs takes seconds) before calling its run orphaned.
GRACE = timedelta(minutes=2)
# Airflow's unfinished task states; a run failed here fails these too.
UNFINISHED_TASK_STATES = (
    "running",
    "queued",
    "scheduled",
    "deferred",
    "up_for_retry",
    "up_for_reschedule",
    "restarting",
)


@dataclass(frozen=True)
class OrphanedRun:
    dag_id: str
    run_id: str
    started_at: datetime | None
    pids: tuple[int, ...]  # the processes that ran its tasks, all gone
    unfinished_tasks: tuple[str, ...]  # "task_id" or "task_id[map_index]"

    def describe(self) -> str:
        tasks = ", ".join(self.unfinished_tasks) or "no task started"
        owner = f"pid {', '.join(map(str, self.pids))} gone" if self.pids else "no live owner"
        return f"{self.dag_id} {self.run_id} ({owner}; unfinished: {tasks})"


def _timestamp(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _owner_alive(pid: int, since: datetime | None) -> bool:
    """The process ``pid`` runs and is the one that started at or before ``since`` (pids are reused)."""
    try:
        created = datetime.fromtimestamp(psutil.Process(pid).create_time(), UTC)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True
    return since is None or created <= since + timedelta(seconds=1)


def _connect(db: Path) -> sqlite3.Connection:
    # Airflow's processes write the same file: wait for their locks rather than fail.
    return sqlite3.connect(db, timeout=30)


def orphaned_runs(
    db: Path, *, grace: timedelta = GRACE, since: datetime | None = None, now: datetime | None = None
) -> list[OrphanedRun]:
    """The `running` runs started by `airflow dags test` (or ``dag.test()``) whose process is gone.

    ``since`` limits the search to runs started then or later (an interrupted demo fails its own runs).
    """
    if not db.exists():
        return []
    now = now or datetime.now(UTC)
    with _connect(db) as conn:
        runs = conn.execute(
            "select dag_id, run_id, start_date from dag_run where state = 'running' and upper(triggered_by) = 'TEST'"
        ).fetchall()
        found = []
        for dag_id, run_id, start_date in runs:
            started_at = _timestamp(start_date)
            if since is not None and started_at is not None and started_at < since:
                continue
            tasks = conn.execute(
                "select task_id, map_index, state, pid, start_date from task_instance where dag_id = ? and run_id = ?",
                (dag_id, run_id),
            ).fetchall()
            owners = {pid: _timestamp(start) for _task, _index, _state, pid, start in tasks if pid}
            if any(_owner_alive(pid, start) for pid, start in owners.items()):
                continue
            if not owners and started_at is not None and now - started_at < grace:
                continue
            unfinished = tuple(
                task_id if index < 0 else f"{task_id}[{index}]"
                for task_id, index, state, _pid, _start in tasks
                if state in UNFINISHED_TASK_STATES
            )
            found.append(OrphanedRun(dag_id, run_id, started_at, tuple(sorted(owners)), unfinished))
    return found


def fail_orphaned_runs(
    db: Path, *, grace: timedelta = GRACE, since: datetime | None = None, now: datetime | None = None
) -> list[OrphanedRun]:
    """Mark every orphaned run failed, its started task instances failed and those never started upstream_failed.

    What the UI's "mark failed" does, minus the callbacks: the process that would have sent them is gone.
    """
    orphaned = orphaned_runs(db, grace=grace, since=since, now=now)
    if not orphaned:
        return []
    ended = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with _connect(db) as conn:
        for run in orphaned:
            key = (run.dag_id, run.run_id)
            placeholders = ", ".join("?" * len(UNFINISHED_TASK_STATES))
            conn.execute(
                f"""
                update task_instance set state = 'failed', end_date = ?, updated_at = ?
                where dag_id = ? and run_id = ? and state in ({placeholders})
                """,
                (ended, ended, *key, *UNFINISHED_TASK_STATES),
            )
            conn.execute(
                """
                update task_instance set state = 'upstream_failed', updated_at = ?
                where dag_id = ? and run_id = ? and state is null
                """,
                (ended, *key),
            )
            conn.execute(
                """
                update dag_run set state = 'failed', end_date = ?, updated_at = ?
                where dag_id = ? and run_id = ? and state = 'running'
                """,
                (ended, ended, *key),
            )
    return orphaned
