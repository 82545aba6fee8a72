"""Fault injection: run an ingest DAG in a child process that is KILLED (SIGKILL) at a named stage.

The child inherits the test session's environment (tests/conftest.py put the stack's Airflow
configuration, connections and Variables in os.environ), replaces the module function at the stage
with one that kills its own process group, and runs the DAG with ``dag.test()`` against the same
PostgreSQL, moto server and Airflow metadata as the tests. Nothing is mocked but the moment of death:
whatever the real code had committed, moved or published by then stays, as after a crashed worker.

    from tests.integration.faults import Stage, kill_ingest_at
    outcome = kill_ingest_at(Stage.AFTER_COMMIT, "incoming/x.xlsx")
    assert outcome.killed

Run directly (what the parent does): ``python -m tests.integration.faults <stage> <key>``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO_ROOT / "dags"

# What a killed child's exit status is (a negative signal number from subprocess).
KILLED = -signal.SIGKILL


class Stage(StrEnum):
    """Where in ingest the process dies."""

    DURING_COPY = "during_copy"  # half the rows sent through COPY, the bronze transaction still open
    AFTER_COMMIT = "after_commit"  # bronze committed, the object not yet moved to processed/
    AFTER_MOVE = "after_move"  # the object moved to processed/, the load not yet announced


def _die(*_args, **_kwargs):
    """Kill the whole process group at once: dag.test() and any task process it started."""
    sys.stdout.flush()
    os.killpg(os.getpgid(0), signal.SIGKILL)


def install(stage: Stage) -> None:
    """Replace the function at ``stage`` (looked up through its module at call time) with a death."""
    if stage is Stage.DURING_COPY:
        bronze = importlib.import_module("include.retail.ingest.bronze")
        copy_frame = bronze._copy_frame

        def copy_half_then_die(cur, table, columns, frame):
            copy_frame(cur, table, columns, frame.head(max(frame.height // 2, 1)))
            _die()

        bronze._copy_frame = copy_half_then_die
    elif stage is Stage.AFTER_COMMIT:
        importlib.import_module("include.retail.ingest.filing").move = _die
    elif stage is Stage.AFTER_MOVE:
        importlib.import_module("include.retail.ingest.announce").announce_batches = _die


@dataclass(frozen=True)
class Outcome:
    returncode: int
    output: str

    @property
    def killed(self) -> bool:
        return self.returncode == KILLED


def kill_ingest_at(stage: Stage, key: str, *, timeout: float = 300) -> Outcome:
    """Run ``retail_ingest_file`` for ``key`` in a child process killed at ``stage``."""
    child = subprocess.run(
        [sys.executable, "-m", "tests.integration.faults", str(stage), key],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        start_new_session=True,  # its own process group: the kill takes nothing of the test session with it
    )
    return Outcome(child.returncode, child.stdout[-4000:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", type=Stage, choices=list(Stage))
    parser.add_argument("key")
    args = parser.parse_args()
    install(args.stage)

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    run = bag.dags["retail_ingest_file"].test(run_conf={"key": args.key})
    print(f"the run ended {run.state} without reaching stage {args.stage}")
    raise SystemExit(3)


if __name__ == "__main__":
    main()
