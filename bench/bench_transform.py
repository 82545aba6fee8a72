"""The transform DAG (Cosmos, WATCHER mode) against one plain `dbt build` of the same project on the same data.

Runs on a stack of its own (``.devstack/bench``), loaded once with the real workbook through the ingest
DAG. Each round drops silver and gold, so both ways build everything from bronze:

- plain: ``dbt build`` of include/dbt, from the dbt virtualenv, as a data engineer would run it;
- dag:   ``retail_transform`` run by Airflow (``dag.test()``): its DagRun's start to end, after one
         warm-up run in the same process (Airflow builds its in-process execution API once per process).

    .venv/bin/python -m bench.bench_transform --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

from devstack import REPO_ROOT
from devstack.aws import BUCKET
from devstack.stack import Stack

WORKBOOK = REPO_ROOT.parent / "shared" / "data" / "online_retail.xlsx"
KEY = "incoming/bench/online_retail.xlsx"


def plain_build_seconds(stack: Stack) -> float:
    """One plain `dbt build` from an empty silver and gold (bronze kept), in the stack's environment."""
    from include.retail.transform.dbt_project import DBT_EXECUTABLE, DBT_PROJECT_DIR

    stack.reset_warehouse(bronze=False)
    clock = time.perf_counter()
    subprocess.run([str(DBT_EXECUTABLE), "build", "--quiet"], cwd=DBT_PROJECT_DIR, check=True)
    return time.perf_counter() - clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    home = REPO_ROOT / ".devstack" / "bench"
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o755)
    stack = Stack(home)
    os.environ.update(stack.environment())
    stack.up()

    from airflow.dag_processing.dagbag import DagBag

    dags = DagBag(dag_folder=str(REPO_ROOT / "dags")).dags
    import psycopg

    with psycopg.connect(stack.warehouse_url()) as conn:
        loaded = conn.execute("select count(*) from bronze.retail_transactions_current").fetchone()[0]
    if loaded != 541909:
        stack.boto3_client("s3").upload_file(str(WORKBOOK), BUCKET, KEY)
        assert str(dags["retail_ingest_file"].test(run_conf={"key": KEY}).state) == "success"

    stack.reset_warehouse(bronze=False)
    assert str(dags["retail_transform"].test().state) == "success"  # warm-up

    plain, dag = [], []
    for round_number in range(1, args.repeat + 1):
        plain.append(plain_build_seconds(stack))

        stack.reset_warehouse(bronze=False)
        run = dags["retail_transform"].test()
        assert str(run.state) == "success"
        dag.append((run.end_date - run.start_date).total_seconds())
        print(f"round {round_number}: plain dbt build {plain[-1]:.1f} s, transform DAG {dag[-1]:.1f} s", flush=True)

    print(
        f"\nmedian: plain dbt build {statistics.median(plain):.1f} s, transform DAG {statistics.median(dag):.1f} s, "
        f"ratio {statistics.median(dag) / statistics.median(plain):.2f}"
    )


if __name__ == "__main__":
    main()
