"""Does the SQS watcher still fire after the queue has been idle for long? (apache/airflow#51213 reports an
SQS AssetWatcher going quiet after about 30 minutes.)

Starts the full local Airflow with uploads detected by events (`make up TRIGGER=events`) on a stack of its own
(``.devstack/soak-events``), checks that an upload loads, leaves the queue idle for ``--idle-minutes``, then
uploads again and measures how long the file takes to be picked up (the watcher's asset event) and loaded
(the ledger). Exits non-zero if it is not loaded within ``--timeout`` seconds. Stops everything at the end.

    .venv/bin/python -m bench.soak_upload_events --idle-minutes 35
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from devstack import REPO_ROOT
from devstack.aws import BUCKET
from devstack.sample import HEADER, write_csv
from devstack.stack import Stack


def small_csv(path: Path, invoice_start: int) -> Path:
    moment = datetime(2011, 6, 1, 9, 0)
    rows = [
        [invoice_start + n, "85123A", "SOAK", 1, moment + timedelta(minutes=n), 2.55, 17850.0, "France"]
        for n in range(3)
    ]
    return write_csv(path, [HEADER, *rows])


def upload_and_wait(stack: Stack, path: Path, key: str, timeout: float) -> dict[str, float]:
    stack.boto3_client("s3").upload_file(str(path), BUCKET, key)
    uploaded = datetime.now(UTC)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(stack.warehouse_url()) as conn:
            row = conn.execute(
                "select status, started_at, finished_at from bronze.load_ledger where source_key = %s", (key,)
            ).fetchone()
        if row:
            status, started, finished = row
            if status != "loaded":
                raise SystemExit(f"{key} was recorded {status}")
            return {
                "upload_to_load_started": (started - uploaded).total_seconds(),
                "upload_to_bronze_loaded": (finished - uploaded).total_seconds(),
            }
        time.sleep(0.5)
    raise SystemExit(f"{key} was not loaded within {timeout:.0f} s of its upload: the watcher went quiet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle-minutes", type=float, default=35)
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()

    stack = Stack(REPO_ROOT / ".devstack" / "soak-events")
    stack.use_trigger("events")
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        stack.start_airflow()
        stack.reset_warehouse()
        first = upload_and_wait(stack, small_csv(work / "before.csv", 900000), "incoming/soak-before.csv", 300)
        print(f"{datetime.now(UTC):%H:%M:%S} before the idle time: {first}", flush=True)
        time.sleep(args.idle_minutes * 60)
        second = upload_and_wait(stack, small_csv(work / "after.csv", 910000), "incoming/soak-after.csv", args.timeout)
        print(f"{datetime.now(UTC):%H:%M:%S} after {args.idle_minutes:g} idle minutes: {second}", flush=True)
        triggerer_log = stack.home / "logs" / "airflow-triggerer.log"
        errors = [line for line in triggerer_log.read_text(errors="replace").splitlines() if "[error" in line]
        print(f"triggerer log: {len(errors)} error line(s)" + "".join(f"\n  {line[:300]}" for line in errors[-5:]))
    finally:
        stack.down()


if __name__ == "__main__":
    main()
