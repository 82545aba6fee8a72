"""Cost grows with new data only: the real workbook's 13 months loaded one file at a time, each load transformed.

The real rows (the CSV export of the workbook, 541,909 rows) are split by invoice month into 13 files, written to a
temporary directory (never the repository). Each file is uploaded under ``incoming/monthly/`` and loaded by
``include.retail.ingest.ingest_object`` as the loader role (what the ``ingest_file`` task runs), then transformed by
one plain ``dbt build`` of include/dbt: the same command the transform DAG's producer runs, without Airflow around it,
so that the figure is the transform's own cost. Two phases, each on an emptied warehouse:

- empty:   the 13 months in order, from nothing;
- history: first five years of history (the whole workbook five times, its dates shifted back by 1 to 5 whole years,
           one file per year, loaded and transformed once), then the same 13 months in order on top.

Per month it prints ingest seconds, transform seconds (the dbt process, start to end), dbt's own elapsed time,
the slowest nodes, the rows in bronze, and the rows the transform read from bronze.retail_transactions and
silver.transactions (PostgreSQL's own counters of rows fetched by scans, pg_stat_user_tables): unlike seconds on a
shared machine, these do not depend on what else runs, and they show whether a run reads the history. The
target: the 13th month's transform, and a month on top of five years of history, cost at most 1.3x the first
month's.

    .venv/bin/python -m bench.bench_monthly                      # both phases
    .venv/bin/python -m bench.bench_monthly --phase empty        # one
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from devstack import REPO_ROOT
from devstack.aws import BUCKET
from devstack.stack import Stack

CSV_EXPORT = REPO_ROOT.parent / "shared" / "data" / "online_retail.csv"
HISTORY_YEARS = 5
PREFIX = "incoming/monthly"


@dataclass
class Step:
    phase: str
    file: str
    ingest_seconds: float
    transform_seconds: float
    dbt_elapsed: float
    bronze_rows: int
    silver_lines: int
    bronze_rows_read: int
    silver_lines_read: int
    slowest: list[tuple[str, float]]


def split_by_month(source: Path, out: Path) -> list[Path]:
    """The export's rows, all as text as they came, one CSV per invoice month (``YYYY-MM.csv``)."""
    rows = pl.read_csv(source, infer_schema=False)
    month = pl.col("InvoiceDate").str.slice(0, 7)
    files = []
    for (name,), part in rows.with_columns(month.alias("_month")).group_by("_month", maintain_order=True):
        path = out / f"{name}.csv"
        part.drop("_month").write_csv(path)
        files.append(path)
    return sorted(files)


def shifted_year(source: Path, years_back: int, out: Path) -> Path:
    """The whole export with every invoice date moved back by whole years (no 29 February in the source)."""
    rows = pl.read_csv(source, infer_schema=False)
    year = pl.col("InvoiceDate").str.slice(0, 4).cast(pl.Int32) - years_back
    shifted = rows.with_columns((year.cast(pl.Utf8) + pl.col("InvoiceDate").str.slice(4)).alias("InvoiceDate"))
    path = out / f"history_minus_{years_back}y.csv"
    shifted.write_csv(path)
    return path


class Pipeline:
    """Ingest and transform on the bench's own stack, as production would run them one after the other."""

    def __init__(self, stack: Stack, work: Path) -> None:
        self.stack = stack
        self.target = work / "dbt-target"  # dbt's artifacts stay out of include/dbt/target, which the DAG reads
        self.env = {**os.environ, **stack.environment(), "DBT_LOG_PATH": str(work / "dbt-logs")}

    def ingest(self, path: Path) -> float:
        import psycopg
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from include.retail.ingest import ingest_object
        from include.retail.warehouse import LOADER_ROLE

        key = f"{PREFIX}/{path.name}"
        self.stack.boto3_client("s3").upload_file(str(path), BUCKET, key)
        with psycopg.connect(self.stack.warehouse_url(LOADER_ROLE), autocommit=True) as conn:
            clock = time.perf_counter()
            result = ingest_object(S3Hook(aws_conn_id="aws_default"), BUCKET, key, conn, run_id="bench-monthly")
            seconds = time.perf_counter() - clock
        assert result.status == "loaded", result
        return seconds

    def dbt(self, command: str) -> None:
        from include.retail.dbt_project import DBT_EXECUTABLE, DBT_PROJECT_DIR

        arguments = [str(DBT_EXECUTABLE), command, "--quiet", "--target-path", str(self.target)]
        subprocess.run(arguments, cwd=DBT_PROJECT_DIR, env=self.env, check=True)

    def parse(self) -> None:
        """A first ``dbt parse`` (not timed): every build then parses partially, as the DAG's producer does with
        the manifest built ahead of time, so that the first month does not pay for a full parse."""
        self.dbt("parse")

    def transform(self) -> tuple[float, dict]:
        clock = time.perf_counter()
        self.dbt("build")
        seconds = time.perf_counter() - clock
        return seconds, json.loads((self.target / "run_results.json").read_text())

    def counts(self) -> tuple[int, int]:
        import psycopg

        with psycopg.connect(self.stack.warehouse_url()) as conn:
            bronze, silver = conn.execute(
                "select (select count(*) from bronze.retail_transactions), (select count(*) from silver.transactions)"
            ).fetchone()
        return bronze, silver

    def rows_read(self) -> dict[tuple[str, int], int]:
        """Rows each table has handed to scans so far (sequential and index), keyed by name and oid: a table dbt
        rebuilds is a new relation, whose counters start at zero."""
        import psycopg

        with psycopg.connect(self.stack.warehouse_url()) as conn:
            rows = conn.execute(
                "select schemaname || '.' || relname, relid::bigint, seq_tup_read + coalesce(idx_tup_fetch, 0) "
                "from pg_stat_user_tables where schemaname in ('bronze', 'silver', 'gold')"
            ).fetchall()
        return {(name, relid): read for name, relid, read in rows}

    def step(self, phase: str, path: Path) -> Step:
        ingest_seconds = self.ingest(path)
        before = self.rows_read()
        transform_seconds, results = self.transform()
        time.sleep(1)  # the dbt process's connections have closed; let PostgreSQL publish their counters
        after = self.rows_read()
        read = {name: 0 for name, _ in after}
        for (name, relid), count in after.items():
            read[name] += count - before.get((name, relid), 0)
        nodes = sorted(
            ((node["unique_id"].split(".")[-1][:40], node["execution_time"]) for node in results["results"]),
            key=lambda node: -node[1],
        )
        bronze, silver = self.counts()
        return Step(
            phase,
            path.name,
            ingest_seconds,
            transform_seconds,
            results["elapsed_time"],
            bronze,
            silver,
            read["bronze.retail_transactions"],
            read.get("silver.transactions", 0),
            nodes[:3],
        )


def report(step: Step) -> None:
    slowest = ", ".join(f"{name} {seconds:.2f}" for name, seconds in step.slowest)
    print(
        f"{step.phase:8} {step.file:26} ingest {step.ingest_seconds:5.2f} s  transform {step.transform_seconds:5.2f} s "
        f"(dbt {step.dbt_elapsed:5.2f} s)  bronze {step.bronze_rows:>9,}  silver {step.silver_lines:>9,}  "
        f"read: bronze {step.bronze_rows_read:>10,} silver {step.silver_lines_read:>10,}  [{slowest}]",
        flush=True,
    )


def run_phase(phase: str, pipeline: Pipeline, months: list[Path], work: Path, history_months: int) -> list[Step]:
    pipeline.stack.reset_warehouse()
    steps = []
    if phase == "history":
        for years_back in range(HISTORY_YEARS, 0, -1):
            year_file = shifted_year(CSV_EXPORT, years_back, work)
            seconds = pipeline.ingest(year_file)
            year_file.unlink()
            print(f"history  {year_file.name:26} ingest {seconds:5.2f} s", flush=True)
        transform_seconds, _ = pipeline.transform()
        print(f"history  five years transformed in {transform_seconds:.2f} s", flush=True)
        months = months[:history_months]
    for month in months:
        steps.append(pipeline.step(phase, month))
        report(steps[-1])
    first, last = steps[0], steps[-1]
    print(
        f"{phase}: last month's transform / first month's = {last.transform_seconds:.2f} / "
        f"{first.transform_seconds:.2f} s = {last.transform_seconds / first.transform_seconds:.2f}x\n",
        flush=True,
    )
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=["empty", "history", "both"], default="both")
    parser.add_argument("--history-months", type=int, default=13, help="months loaded on top of the history")
    parser.add_argument("--home", type=Path, default=REPO_ROOT / ".devstack" / "bench_monthly")
    args = parser.parse_args()
    if not CSV_EXPORT.is_file():
        raise SystemExit(f"the CSV export of the real workbook is not at {CSV_EXPORT}")

    args.home.mkdir(parents=True, exist_ok=True)
    args.home.chmod(0o755)
    stack = Stack(args.home)
    os.environ.update(stack.environment())
    stack.up()

    phases = ["empty", "history"] if args.phase == "both" else [args.phase]
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="bench-monthly-") as tmp:
        work = Path(tmp)
        months = split_by_month(CSV_EXPORT, work)
        pipeline = Pipeline(stack, work)
        pipeline.parse()
        for phase in phases:
            steps += run_phase(phase, pipeline, months, work, args.history_months)

    out = REPO_ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"monthly_{datetime.now(UTC):%Y%m%dT%H%M%S}.json").write_text(
        json.dumps([asdict(step) for step in steps], indent=2)
    )


if __name__ == "__main__":
    main()
