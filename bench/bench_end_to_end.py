"""Upload of the real workbook to gold built, tested and announced, through the running Airflow services.

Starts the full local Airflow (`make up`'s api-server, scheduler, dag-processor and triggerer) on a stack of
its own (``.devstack/bench-e2e``), then for each round: empties the warehouse, uploads the workbook under
``incoming/`` (a new key each round), and times from the upload to the end of the asset-triggered
``retail_transform`` run, read through the REST API. Stops everything at the end.

    .venv/bin/python -m bench.bench_end_to_end --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from devstack import REPO_ROOT
from devstack.aws import BUCKET
from devstack.stack import Stack

WORKBOOK = REPO_ROOT.parent / "shared" / "data" / "online_retail.xlsx"


def one_round(stack: Stack, workbook: Path, key: str) -> dict[str, float]:
    stack.reset_warehouse()
    api = stack.api()
    time.sleep(5)  # let the waiting run's sensor settle into its poke rhythm, as it would be in use
    uploaded_at = datetime.now(UTC)
    stack.boto3_client("s3").upload_file(str(workbook), BUCKET, key)
    transform = api.wait_for_run(
        "retail_transform", lambda run: datetime.fromisoformat(run["run_after"]) > uploaded_at, timeout=600
    )
    if transform["state"] != "success":
        raise SystemExit(f"retail_transform run {transform['dag_run_id']} ended {transform['state']}")
    ingest_end = datetime.fromisoformat(transform["queued_at"])  # the Asset event queues it
    transform_end = datetime.fromisoformat(transform["end_date"])
    return {
        "upload_to_bronze_announced": (ingest_end - uploaded_at).total_seconds(),
        "upload_to_gold_announced": (transform_end - uploaded_at).total_seconds(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workbook", type=Path, default=WORKBOOK)
    args = parser.parse_args()
    if not args.workbook.is_file():
        raise SystemExit(f"{args.workbook} is not there (../shared/data holds the real workbook)")

    stack = Stack(REPO_ROOT / ".devstack" / "bench-e2e")
    try:
        stack.start_airflow()
        keys = [f"incoming/bench-{n}-{args.workbook.name}" for n in range(args.rounds)]
        rounds = [one_round(stack, args.workbook, key) for key in keys]
    finally:
        stack.down()
    for n, figures in enumerate(rounds):
        print(f"round {n}: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in figures.items()))
    for name in rounds[0]:
        print(f"median {name}: {statistics.median(r[name] for r in rounds):.1f} s")


if __name__ == "__main__":
    main()
