"""Bronze load of the real workbook: the project's way against the common way, side by side.

Each measurement runs in a fresh child process, so that its peak memory (ru_maxrss, read with wait4)
is its own. Both ways start from the same object in the same moto S3 bucket and end with the rows
committed in the same PostgreSQL cluster (the embedded stack's, in a database of their own):

- project: ``include.retail.ingest.load.ingest_object`` — S3 download, fastexcel, contract typing,
  COPY through a temporary table, ledger, move to processed/ — exactly what the DAG task runs;
- common:  boto3 download, ``pandas.read_excel(engine="openpyxl")``, ``DataFrame.to_sql``;
- floor:   decompressing the sheet's XML out of the .xlsx, the least any reader must do.

    make bench                      # or: .venv/bin/python -m bench.bench_bronze_load --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from bench.fresh_process import measure_in_child
from devstack import REPO_ROOT
from devstack.aws import BUCKET
from devstack.stack import Stack

WORKBOOK = REPO_ROOT.parent / "shared" / "data" / "online_retail.xlsx"
BENCH_DATABASE = "retail_bench"
KEY = "incoming/bench/online_retail.xlsx"


def bench_url(stack: Stack) -> str:
    return stack.postgres.url(database=BENCH_DATABASE)


def prepare(stack: Stack) -> None:
    import psycopg

    from include.retail.platform.warehouse import apply_ddl

    with psycopg.connect(stack.postgres.url(), autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", (BENCH_DATABASE,)).fetchone():
            conn.execute(f'create database "{BENCH_DATABASE}"')
    with psycopg.connect(bench_url(stack)) as conn:
        apply_ddl(conn)
        conn.execute("create schema if not exists bench_common")


def reset(stack: Stack) -> None:
    """Empty both ways' tables and put the workbook back under incoming/ (not timed)."""
    import psycopg

    with psycopg.connect(bench_url(stack), autocommit=True) as conn:
        conn.execute("truncate bronze.retail_transactions, bronze.rejected_rows, bronze.load_ledger")
        conn.execute("drop table if exists bench_common.retail_transactions")
        conn.execute("checkpoint")
    stack.boto3_client("s3").upload_file(str(WORKBOOK), BUCKET, KEY)


def run_project(stack: Stack) -> dict:
    import psycopg
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from include.retail.ingest.load import ingest_object

    s3 = S3Hook(aws_conn_id="aws_default")
    with psycopg.connect(bench_url(stack), autocommit=True) as conn:
        clock = time.perf_counter()
        result = ingest_object(s3, BUCKET, KEY, conn, run_id="bench")
        seconds = time.perf_counter() - clock
    assert result.rows_loaded == 541909, result
    return {"seconds": seconds, "read_seconds": result.read_seconds, "load_seconds": result.load_seconds}


def run_common(stack: Stack) -> dict:
    import tempfile

    import pandas as pd
    from sqlalchemy import create_engine

    engine = create_engine(bench_url(stack).replace("postgresql://", "postgresql+psycopg://"))
    clock = time.perf_counter()
    with tempfile.NamedTemporaryFile(suffix=".xlsx") as local:
        stack.boto3_client("s3").download_file(BUCKET, KEY, local.name)
        frame = pd.read_excel(local.name, engine="openpyxl", dtype={"InvoiceNo": str, "StockCode": str})
    read_seconds = time.perf_counter() - clock
    rows = frame.to_sql("retail_transactions", engine, schema="bench_common", if_exists="append", index=False)
    seconds = time.perf_counter() - clock
    assert len(frame) == 541909, len(frame)
    return {"seconds": seconds, "read_seconds": read_seconds, "rows": rows}


def run_floor(stack: Stack) -> dict:
    clock = time.perf_counter()
    with zipfile.ZipFile(WORKBOOK) as archive:
        size = len(archive.read("xl/worksheets/sheet1.xml"))
    return {"seconds": time.perf_counter() - clock, "xml_bytes": size}


WAYS = {"project": run_project, "common": run_common, "floor": run_floor}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--home", type=Path, default=REPO_ROOT / ".devstack")
    parser.add_argument("--child", choices=sorted(WAYS), help=argparse.SUPPRESS)
    args = parser.parse_args()

    stack = Stack(args.home)
    os.environ.update(stack.environment())
    if args.child:
        print(json.dumps(WAYS[args.child](stack)))
        return

    if not WORKBOOK.is_file():
        raise SystemExit(f"the real workbook is not at {WORKBOOK}")
    stack.up()
    prepare(stack)
    results: dict[str, list[dict]] = {way: [] for way in WAYS}
    for round_number in range(1, args.repeat + 1):
        for way in ("floor", "project", "common"):  # side by side, interleaved, on the same machine state
            reset(stack)
            results[way].append(measure_in_child(__spec__.name, way, args.home))
            print(f"round {round_number} {way:8} {results[way][-1]['seconds']:7.2f} s", flush=True)

    median = {way: statistics.median(run["seconds"] for run in runs) for way, runs in results.items()}
    peak = {way: max(run["peak_mb"] for run in runs) for way, runs in results.items()}
    print()
    print(f"{'way':10}{'median s':>10}{'peak MB':>10}")
    for way in ("project", "common", "floor"):
        print(f"{way:10}{median[way]:10.2f}{peak[way]:10.0f}")
    print(
        f"\nproject is {median['common'] / median['project']:.1f}x faster than the common way; "
        f"{median['project'] / median['floor']:.1f}x the floor"
    )
    split = results["project"]
    print(
        f"project split (median): read+type {statistics.median(r['read_seconds'] for r in split):.2f} s, "
        f"COPY+commit {statistics.median(r['load_seconds'] for r in split):.2f} s"
    )
    out = REPO_ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"bronze_load_{datetime.now(UTC):%Y%m%dT%H%M%S}.json").write_text(
        json.dumps({"median_seconds": median, "peak_mb": peak, "runs": results}, indent=2)
    )


if __name__ == "__main__":
    main()
