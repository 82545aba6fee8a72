"""Upload of the real workbook to bronze loaded and to gold announced, through the running Airflow services,
for each way of detecting uploads (``--trigger sensor``, ``events`` or ``both``, side by side in one run).

For each way, starts the full local Airflow (`make up TRIGGER=...`: api-server, scheduler, dag-processor and
triggerer) on a stack of its own (``.devstack/bench-e2e-<trigger>``), waits until it is ready to detect (the
sensor deferred; the watcher having taken S3's test event), then for each round: empties the warehouse,
uploads the workbook under ``incoming/`` (a new key each round), and reads through the REST API and the
ledger when the upload was picked up (the sensor's task ended; the watcher's asset event), when its load
committed (the ledger), and when the asset-triggered ``retail_transform`` run ended. Stops everything at the
end; the ways run one after the other, each alone on the machine.

    .venv/bin/python -m bench.bench_end_to_end --rounds 3 --trigger both
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from devstack import REPO_ROOT
from devstack.airflow_api import AirflowApi
from devstack.airflow_services import ADMIN_USER
from devstack.aws import BUCKET
from devstack.stack import Stack
from include.retail.platform.assets import INCOMING_UPLOADS

WORKBOOK = REPO_ROOT.parent / "shared" / "data" / "online_retail.xlsx"
READY_TIMEOUT = 300


def wait_until_ready(stack: Stack, api: AirflowApi) -> None:
    """Sensor: a retail_ingest run whose sensor is deferred. Events: the run S3's test event woke has ended."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if stack.state.trigger == "sensor":
            for run in api.dag_runs("retail_ingest", state="running"):
                path = f"/dags/retail_ingest/dagRuns/{run['dag_run_id']}/taskInstances/wait_for_files"
                if api.get(path)["state"] == "deferred":
                    return
        elif any(run["state"] == "success" for run in api.dag_runs("retail_ingest_events")):
            return
        time.sleep(1)
    raise SystemExit(f"the {stack.state.trigger} stack was not ready to detect uploads within {READY_TIMEOUT} s")


def picked_up_at(stack: Stack, api: AirflowApi, run_id: str, uploaded_at: datetime) -> datetime:
    """When detection saw the upload: the sensor's task ended, or the watcher's asset event was created."""
    if stack.state.trigger == "sensor":
        sensor = api.get(f"/dags/retail_ingest/dagRuns/{run_id}/taskInstances/wait_for_files")
        return datetime.fromisoformat(sensor["end_date"])
    (asset,) = api.get("/assets", name_pattern=INCOMING_UPLOADS.name)["assets"]
    events = api.get("/assets/events", asset_id=asset["id"], order_by="-timestamp", limit=20)
    moments = [datetime.fromisoformat(event["timestamp"]) for event in events["asset_events"]]
    return min(moment for moment in moments if moment >= uploaded_at)


def one_round(stack: Stack, api: AirflowApi, workbook: Path, key: str) -> dict[str, float]:
    stack.reset_warehouse()
    time.sleep(5)  # let the sensor settle into its poke rhythm, or the watcher into its long poll
    uploaded_at = datetime.now(UTC)
    stack.boto3_client("s3").upload_file(str(workbook), BUCKET, key)
    uploaded_at = datetime.now(UTC)  # the upload has landed: S3 notifies, and a LIST sees it, from now on
    deadline = time.monotonic() + 600
    while not (row := _ledger_row(stack, key)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if not row or row[0] != "loaded":
        raise SystemExit(f"{key} was not loaded: {row}")
    _, run_id, loaded_at = row
    transform = api.wait_for_run(
        "retail_transform", lambda run: datetime.fromisoformat(run["run_after"]) > uploaded_at, timeout=600
    )
    if transform["state"] != "success":
        raise SystemExit(f"retail_transform run {transform['dag_run_id']} ended {transform['state']}")
    picked = picked_up_at(stack, api, run_id, uploaded_at)
    return {
        "upload_to_picked_up": (picked - uploaded_at).total_seconds(),
        "upload_to_bronze_loaded": (loaded_at - uploaded_at).total_seconds(),
        "upload_to_gold_announced": (datetime.fromisoformat(transform["end_date"]) - uploaded_at).total_seconds(),
    }


def _ledger_row(stack: Stack, key: str) -> tuple | None:
    with psycopg.connect(stack.warehouse_url()) as conn:
        return conn.execute(
            "select status, airflow_run_id, finished_at from bronze.load_ledger where source_key = %s", (key,)
        ).fetchone()


def measure(trigger: str, rounds: int, workbook: Path) -> list[dict[str, float]]:
    stack = Stack(REPO_ROOT / ".devstack" / f"bench-e2e-{trigger}")
    stack.use_trigger(trigger)
    try:
        stack.start_airflow()
        # A patient client: on a busy machine the one-worker api-server can take more than the default 10 s.
        api = AirflowApi(stack.api_url, ADMIN_USER, stack.state.admin_password, timeout=60)
        wait_until_ready(stack, api)
        keys = [f"incoming/bench-{trigger}-{n}-{workbook.name}" for n in range(rounds)]
        return [one_round(stack, api, workbook, key) for key in keys]
    finally:
        stack.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trigger", choices=["sensor", "events", "both"], default="both")
    parser.add_argument("--workbook", type=Path, default=WORKBOOK)
    args = parser.parse_args()
    if not args.workbook.is_file():
        raise SystemExit(f"{args.workbook} is not there (../shared/data holds the real workbook)")

    triggers = ["sensor", "events"] if args.trigger == "both" else [args.trigger]
    results = {trigger: measure(trigger, args.rounds, args.workbook) for trigger in triggers}
    for trigger, rounds in results.items():
        for n, figures in enumerate(rounds):
            print(f"{trigger} round {n}: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in figures.items()))
    print()
    print(f"{'median of ' + str(args.rounds) + ' rounds':28}" + "".join(f"{trigger:>10}" for trigger in results))
    for name in next(iter(results.values()))[0]:
        medians = [statistics.median(r[name] for r in rounds) for rounds in results.values()]
        print(f"{name:28}" + "".join(f"{median:>9.1f}s" for median in medians))


if __name__ == "__main__":
    main()
