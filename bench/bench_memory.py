"""Peak memory of the bronze load against the size of the file (issue 15, target 2): bounded, not proportional.

Inputs, the big ones generated in a temporary folder from the real rows repeated (never kept in the repo):

- ``xlsx 541,909``: the real workbook;
- ``xlsx 1,048,575``: Excel's row limit, written by xlsxwriter in ``constant_memory`` mode, cell types as in
  the real workbook (numbers as numbers, dates as dates);
- ``csv 541,909``: the real CSV export;
- ``csv 3,000,000``: the CSV export's data lines repeated.

Each is uploaded to the moto bucket and loaded by ``include.retail.ingest.load.ingest_object`` (what the
``ingest_file`` task runs, as ``bench_bronze_load`` does) in a fresh process, into an emptied database of its
own. Reported per input: the peak resident memory of the process (``RUSAGE_SELF``), of its reader child
(``RUSAGE_CHILDREN`` once the child has been waited for), and of both (wait4's ``ru_maxrss``, the larger).

    .venv/bin/python -m bench.bench_memory                 # every input once
    .venv/bin/python -m bench.bench_memory --repeat 3 --only "xlsx 1,048,575"
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.fresh_process import measure_in_child
from devstack import REPO_ROOT
from devstack.aws import BUCKET
from devstack.stack import Stack

DATA = REPO_ROOT.parent / "shared" / "data"
WORKBOOK = DATA / "online_retail.xlsx"
CSV_EXPORT = DATA / "online_retail.csv"
DATABASE = "retail_bench_memory"
EXCEL_ROWS = 1_048_575  # data rows under the header: Excel's 1,048,576-row limit
CSV_ROWS = 3_000_000
TARGET_MB = 600


def url(stack: Stack) -> str:
    return stack.postgres.url(database=DATABASE)


def big_workbook(path: Path, rows: int = EXCEL_ROWS) -> Path:
    """The real workbook's rows, repeated to ``rows``, written as Excel writes them (xlsxwriter, constant memory)."""
    import fastexcel
    import polars as pl
    import xlsxwriter

    texts = {"InvoiceNo": "string", "StockCode": "string", "Description": "string", "Country": "string"}
    real = fastexcel.read_excel(WORKBOOK).load_sheet(0, dtypes=texts).to_polars()
    header = real.columns
    excel_epoch = datetime(1899, 12, 30)
    real = real.with_columns(
        ((pl.col("InvoiceDate") - excel_epoch).dt.total_milliseconds() / 86_400_000).alias("InvoiceDate")
    )
    columns = [real[name].to_list() for name in header]
    numeric = {"InvoiceNo", "StockCode"}  # numbers where the real workbook has numbers, text ("C536379") else
    with xlsxwriter.Workbook(str(path), {"constant_memory": True}) as workbook:
        sheet = workbook.add_worksheet("Online Retail")
        date = workbook.add_format({"num_format": "m/d/yy h:mm"})
        sheet.write_row(0, 0, header)
        for row in range(rows):
            source = row % real.height
            for column, (name, values) in enumerate(zip(header, columns, strict=True)):
                value = values[source]
                if value is None:
                    continue
                if name == "InvoiceDate":
                    sheet.write_number(row + 1, column, value, date)
                elif name in numeric and value.isdigit():
                    sheet.write_number(row + 1, column, int(value))
                elif isinstance(value, str):
                    sheet.write_string(row + 1, column, value)
                else:
                    sheet.write_number(row + 1, column, value)
    return path


def big_csv(path: Path, rows: int = CSV_ROWS) -> Path:
    """The CSV export's data lines repeated to ``rows`` (the export has no quoted line ends)."""
    header, *lines = CSV_EXPORT.read_bytes().removesuffix(b"\n").split(b"\n")
    header, lines = header + b"\n", [line + b"\n" for line in lines]
    with path.open("wb") as handle:
        handle.write(header)
        for start in range(0, rows, len(lines)):
            handle.writelines(lines[: min(len(lines), rows - start)])
    return path


def run_load(stack: Stack, key: str) -> dict:
    """In the measured process: the project's ingest of ``key``, and this process's peaks."""
    import psycopg
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from include.retail.ingest.load import ingest_object

    s3 = S3Hook(aws_conn_id="aws_default")
    with psycopg.connect(url(stack), autocommit=True) as conn:
        clock = time.perf_counter()
        result = ingest_object(s3, BUCKET, key, conn, run_id="bench_memory")
        seconds = time.perf_counter() - clock
    return {
        "seconds": seconds,
        "status": str(result.status),
        "rows_loaded": result.rows_loaded,
        "rows_rejected": result.rows_rejected,
        "process_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "reader_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def prepare(stack: Stack) -> None:
    import psycopg

    from include.retail.platform.warehouse import apply_ddl

    with psycopg.connect(stack.postgres.url(), autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", (DATABASE,)).fetchone():
            conn.execute(f'create database "{DATABASE}"')
    with psycopg.connect(url(stack)) as conn:
        apply_ddl(conn)


def reset(stack: Stack, path: Path, key: str) -> None:
    import psycopg

    with psycopg.connect(url(stack), autocommit=True) as conn:
        conn.execute("truncate bronze.retail_transactions, bronze.rejected_rows, bronze.load_ledger")
        conn.execute("checkpoint")
    stack.boto3_client("s3").upload_file(str(path), BUCKET, key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--home", type=Path, default=REPO_ROOT / ".devstack")
    parser.add_argument("--only", action="append", help="an input's name (repeatable); default all")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--make", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:
        kind, path = args.make
        (big_workbook if kind == "workbook" else big_csv)(Path(path))
        return

    stack = Stack(args.home)
    os.environ.update(stack.environment())
    if args.child:
        print(json.dumps(run_load(stack, args.child)))
        return

    stack.up()
    prepare(stack)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as folder:
        makers = {
            "xlsx 541,909": (WORKBOOK, None, 541_909),
            "xlsx 1,048,575": (Path(folder) / "excel_limit.xlsx", "workbook", EXCEL_ROWS),
            "csv 541,909": (CSV_EXPORT, None, 541_909),
            "csv 3,000,000": (Path(folder) / "three_million.csv", "csv", CSV_ROWS),
        }
        inputs = {}
        for name, (path, make, rows) in makers.items():
            if args.only and name not in args.only:
                continue
            clock = time.perf_counter()
            if make:
                # In a process of its own: a child forked from a big process starts with the parent's
                # peak in its ru_maxrss (Linux keeps it across exec), which would add to every figure.
                subprocess.run(
                    [sys.executable, "-m", __spec__.name, "--make", make, str(path)], check=True, cwd=REPO_ROOT
                )
            print(f"{name:16} {path.stat().st_size / 2**20:7.0f} MB  ({time.perf_counter() - clock:.0f} s to make)")
            inputs[name] = (path, rows)
        results: dict[str, list[dict]] = {name: [] for name in inputs}
        for round_number in range(1, args.repeat + 1):
            for name, (path, rows) in inputs.items():
                key = f"incoming/bench_memory/{path.name}"
                reset(stack, path, key)
                run = measure_in_child(__spec__.name, key, args.home)
                if run["rows_loaded"] + run["rows_rejected"] != rows:
                    raise SystemExit(f"{name}: {run}")
                results[name].append(run)
                print(
                    f"round {round_number} {name:16} {run['seconds']:6.1f} s  peak {run['peak_mb']:5.0f} MB "
                    f"(process {run['process_mb']:.0f}, reader {run['reader_mb']:.0f})",
                    flush=True,
                )

    print(f"\n{'input':16}{'rows':>11}{'median s':>10}{'peak MB':>9}{'process':>9}{'reader':>8}")
    for name, runs in results.items():
        print(
            f"{name:16}{inputs[name][1]:>11,}{statistics.median(r['seconds'] for r in runs):10.1f}"
            f"{max(r['peak_mb'] for r in runs):9.0f}{max(r['process_mb'] for r in runs):9.0f}"
            f"{max(r['reader_mb'] for r in runs):8.0f}"
        )
    over = [name for name, runs in results.items() if max(r["peak_mb"] for r in runs) >= TARGET_MB]
    print(f"\ntarget: every peak under {TARGET_MB} MB: {'missed by ' + ', '.join(over) if over else 'met'}")
    out = REPO_ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"memory_{datetime.now(UTC):%Y%m%dT%H%M%S}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
