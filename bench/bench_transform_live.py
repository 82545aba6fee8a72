"""The transform DAG run by the real scheduler against one plain `dbt build` of the same project on the same data.

Starts the full local Airflow (`make up`: api-server, scheduler, dag-processor, triggerer; LocalExecutor, 4
slots) on a stack of its own (``.devstack/bench-transform-live``), loads the real workbook once by uploading
it under ``incoming/`` (the sensor picks it up, and the asset-triggered transform that follows is the
warm-up), then for each round, the two ways interleaved, each from an empty silver and gold:

- plain: ``dbt build`` of include/dbt, from the dbt virtualenv, as a data engineer would run it;
- dag:   ``retail_transform`` triggered through the REST API: its DagRun's start to end, as the scheduler
         recorded them.

For each DAG run it also reads, from the task instances, when the producer's ``dbt build`` ended and how many
model and test tasks had already ended by then (streaming: they report as dbt finishes each node).

    .venv/bin/python -m bench.bench_transform_live --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
from datetime import UTC, datetime

import psycopg

from bench.bench_transform import plain_build_seconds
from devstack import REPO_ROOT
from devstack.airflow_api import AirflowApi
from devstack.aws import BUCKET
from devstack.stack import Stack

WORKBOOK = REPO_ROOT.parent / "shared" / "data" / "online_retail.xlsx"
KEY = "incoming/bench-transform-live/online_retail.xlsx"
BRONZE_ROWS = 541_909


def load_once(stack: Stack, api: AirflowApi) -> None:
    """Bronze holds the real workbook: uploaded for the sensor, and its asset-triggered transform run ended."""
    with psycopg.connect(stack.warehouse_url()) as conn:
        loaded = conn.execute("select count(*) from bronze.retail_transactions_current").fetchone()[0]
    if loaded == BRONZE_ROWS:
        return
    uploaded_at = datetime.now(UTC)
    stack.boto3_client("s3").upload_file(str(WORKBOOK), BUCKET, KEY)
    warm_up = api.wait_for_run(
        "retail_transform", lambda run: datetime.fromisoformat(run["run_after"]) > uploaded_at, timeout=900
    )
    if warm_up["state"] != "success":
        raise SystemExit(f"the warm-up transform run {warm_up['dag_run_id']} ended {warm_up['state']}")


def timed_dag_run(api: AirflowApi) -> dict[str, float]:
    """Trigger retail_transform, wait for it; its start to end, the producer's end, and how many dbt tasks
    had ended before the producer did."""
    # Imported here: importing Cosmos before Airflow is a circular import (Airflow loads Cosmos's plugin).
    import airflow  # noqa: F401
    from cosmos.constants import PRODUCER_WATCHER_DONE_TASK_ID, PRODUCER_WATCHER_TASK_ID

    producer, done = f"dbt.{PRODUCER_WATCHER_TASK_ID}", f"dbt.{PRODUCER_WATCHER_DONE_TASK_ID}"
    run = api.post("/dags/retail_transform/dagRuns", {"logical_date": None})
    run_id = run["dag_run_id"]
    ended = api.wait_for_run("retail_transform", lambda r: r["dag_run_id"] == run_id, timeout=900, poll=1)
    if ended["state"] != "success":
        raise SystemExit(f"retail_transform run {run_id} ended {ended['state']}")
    start = datetime.fromisoformat(ended["start_date"])
    tasks = api.get(f"/dags/retail_transform/dagRuns/{run_id}/taskInstances", limit=100)["task_instances"]
    ends = {task["task_id"]: datetime.fromisoformat(task["end_date"]) for task in tasks if task["end_date"]}
    producer_end = ends[producer]
    # The model and test tasks (Cosmos's gate after the producer is neither).
    dbt_tasks = [task_id for task_id in ends if task_id.startswith("dbt.") and task_id not in (producer, done)]
    return {
        "dag": (datetime.fromisoformat(ended["end_date"]) - start).total_seconds(),
        "producer_end": (producer_end - start).total_seconds(),
        "last_dbt_task_end": (max(ends[task_id] for task_id in dbt_tasks) - start).total_seconds(),
        "dbt_tasks": len(dbt_tasks),
        "ended_before_producer": sum(ends[task_id] < producer_end for task_id in dbt_tasks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not WORKBOOK.is_file():
        raise SystemExit(f"{WORKBOOK} is not there (../shared/data holds the real workbook)")

    home = REPO_ROOT / ".devstack" / "bench-transform-live"
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o755)  # the postgres server user must reach the cluster directory inside
    stack = Stack(home)
    stack.use_trigger("sensor")
    try:
        stack.start_airflow()
        api = stack.api()
        load_once(stack, api)
        os.environ.update(stack.environment())  # the plain build reaches the same warehouse as the DAG
        plain, dag = [], []
        for round_number in range(1, args.repeat + 1):
            plain.append(plain_build_seconds(stack))

            stack.reset_warehouse(bronze=False)
            dag.append(timed_dag_run(api))
            figures = dag[-1]
            print(
                f"round {round_number}: plain dbt build {plain[-1]:.1f} s, transform DAG {figures['dag']:.1f} s "
                f"(producer ended at {figures['producer_end']:.1f} s, last dbt task at "
                f"{figures['last_dbt_task_end']:.1f} s; {figures['ended_before_producer']} of "
                f"{figures['dbt_tasks']} dbt tasks ended before the producer)",
                flush=True,
            )
    finally:
        stack.down()

    median_plain = statistics.median(plain)
    median_dag = statistics.median(figures["dag"] for figures in dag)
    print(
        f"\nmedian: plain dbt build {median_plain:.1f} s, transform DAG {median_dag:.1f} s, "
        f"ratio {median_dag / median_plain:.2f}; medians of the producer's end "
        f"{statistics.median(figures['producer_end'] for figures in dag):.1f} s and of the last dbt task's end "
        f"{statistics.median(figures['last_dbt_task_end'] for figures in dag):.1f} s after the run's start"
    )


if __name__ == "__main__":
    main()
