"""Cost grows with new data only: the real workbook's 13 months loaded one file at a time, each load transformed.

The real rows (the CSV export of the workbook, 541,909 rows) are split by invoice month into 13 files, written to a
temporary directory (never the repository). Each file is uploaded under ``incoming/monthly/`` and loaded by
``include.retail.ingest.load.ingest_object`` as the loader role (what the ``ingest_file`` task runs), then
transformed by one plain ``dbt build`` of include/dbt: the same command the transform DAG's producer runs, without
Airflow around it, so that the figure is the transform's own cost. Two phases, each on an emptied warehouse:

- empty:   the 13 months in order, from nothing;
- history: first five years of history (the whole workbook five times, its dates shifted back by 1 to 5 whole years,
           one file per year, loaded and transformed once), then the same 13 months in order on top.

Per month it prints ingest seconds, transform seconds (the dbt process, start to end), dbt's own elapsed time,
the slowest nodes, the rows in bronze, and the rows the transform read from bronze.retail_transactions,
silver.transactions and all of silver's tables together (PostgreSQL's own counters of rows fetched by scans,
pg_stat_user_tables): unlike seconds on a shared machine, these do not depend on what else runs, and they show
whether a run reads the history. The target: the 13th month's transform, and a month on top of five years of
history, cost at most 1.3x the first month's. The JSON in bench/results keeps every node's time and every table's
rows read, per month.

``--verify`` proves that no number depends on the way the files came: after the empty phase it keeps every silver
and gold table, rebuilds the project with ``dbt build --full-refresh`` and compares each table both ways
(``except all``); with ``--baseline-project DIR`` (a copy of an earlier include/dbt) it then rebuilds with that
project too and compares again, on the columns the earlier tables have.

    .venv/bin/python -m bench.bench_monthly                      # both phases
    .venv/bin/python -m bench.bench_monthly --phase empty        # one
    .venv/bin/python -m bench.bench_monthly --phase empty --verify --baseline-project /tmp/dbt_before
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
    silver_rows_read: int
    slowest: list[tuple[str, float]]
    nodes: dict[str, float]
    tables_read: dict[str, int]


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
        from include.retail.transform.dbt_project import DBT_PROJECT_DIR

        self.stack = stack
        self.project = DBT_PROJECT_DIR
        self.target = work / "dbt-target"  # dbt's artifacts stay out of include/dbt/target, which the DAG reads
        self.env = {**os.environ, **stack.environment(), "DBT_LOG_PATH": str(work / "dbt-logs")}

    def ingest(self, path: Path) -> float:
        import psycopg
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from include.retail.ingest.load import ingest_object
        from include.retail.platform.warehouse import LOADER_ROLE

        key = f"{PREFIX}/{path.name}"
        self.stack.boto3_client("s3").upload_file(str(path), BUCKET, key)
        with psycopg.connect(self.stack.warehouse_url(LOADER_ROLE), autocommit=True) as conn:
            clock = time.perf_counter()
            result = ingest_object(S3Hook(aws_conn_id="aws_default"), BUCKET, key, conn, run_id="bench-monthly")
            seconds = time.perf_counter() - clock
        assert result.status == "loaded", result
        return seconds

    def dbt(self, command: str, *options: str, project: Path | None = None) -> None:
        from include.retail.transform.dbt_project import DBT_EXECUTABLE

        arguments = [str(DBT_EXECUTABLE), command, *options, "--quiet", "--target-path", str(self.target)]
        subprocess.run(arguments, cwd=project or self.project, env=self.env, check=True)

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
            sum(count for name, count in read.items() if name.startswith("silver.")),
            nodes[:3],
            {name: round(seconds, 3) for name, seconds in nodes},
            {name: count for name, count in sorted(read.items()) if count},
        )

    def tables(self) -> dict[str, list[str]]:
        """Every silver and gold table, with its columns in order."""
        import psycopg

        with psycopg.connect(self.stack.warehouse_url()) as conn:
            rows = conn.execute(
                "select columns.table_schema || '.' || columns.table_name, columns.column_name "
                "from information_schema.columns as columns "
                "join information_schema.tables as tables using (table_schema, table_name) "
                "where columns.table_schema in ('silver', 'gold') and tables.table_type = 'BASE TABLE' "
                "order by 1, columns.ordinal_position"
            ).fetchall()
        tables: dict[str, list[str]] = {}
        for table, column in rows:
            tables.setdefault(table, []).append(column)
        return tables

    def keep(self) -> dict[str, list[str]]:
        """A copy of every silver and gold table in the schema ``kept``, under its schema-qualified name."""
        import psycopg
        from psycopg import sql

        tables = self.tables()
        with psycopg.connect(self.stack.warehouse_url()) as conn:
            conn.execute("drop schema if exists kept cascade")
            conn.execute("create schema kept")
            for table in tables:
                schema, name = table.split(".")
                conn.execute(
                    sql.SQL("create table kept.{} as table {}").format(
                        sql.Identifier(table), sql.Identifier(schema, name)
                    )
                )
        return tables

    def differences(self, kept: dict[str, list[str]]) -> dict[str, tuple[int, int]]:
        """Rows of each kept table missing from the table now, and rows now missing from the kept one (except all
        both ways), on the columns both have; a table that is gone counts as entirely different."""
        import psycopg
        from psycopg import sql

        now = self.tables()
        found = {}
        with psycopg.connect(self.stack.warehouse_url()) as conn:
            for table, columns in kept.items():
                if table not in now:
                    found[table] = (-1, -1)
                    continue
                shared = sql.SQL(", ").join(sql.Identifier(column) for column in columns if column in now[table])
                schema, name = table.split(".")
                kept_rows = sql.SQL("select {} from kept.{}").format(shared, sql.Identifier(table))
                now_rows = sql.SQL("select {} from {}").format(shared, sql.Identifier(schema, name))
                count = sql.SQL("select count(*) from ({} except all {}) as missing")
                (missing_now,) = conn.execute(count.format(kept_rows, now_rows)).fetchone()
                (missing_kept,) = conn.execute(count.format(now_rows, kept_rows)).fetchone()
                found[table] = (missing_now, missing_kept)
        return found


def report(step: Step) -> None:
    slowest = ", ".join(f"{name} {seconds:.2f}" for name, seconds in step.slowest)
    print(
        f"{step.phase:8} {step.file:26} ingest {step.ingest_seconds:5.2f} s  transform {step.transform_seconds:5.2f} s "
        f"(dbt {step.dbt_elapsed:5.2f} s)  bronze {step.bronze_rows:>9,}  silver {step.silver_lines:>9,}  "
        f"read: bronze {step.bronze_rows_read:>10,} silver.transactions {step.silver_lines_read:>10,} "
        f"all silver {step.silver_rows_read:>10,}  [{slowest}]",
        flush=True,
    )


def verify(pipeline: Pipeline, baseline: Path | None) -> bool:
    """The tables the monthly builds left equal a full refresh of this project (and of the baseline project)."""
    kept = pipeline.keep()
    same = True
    builds = [("this project", None)] + ([("the baseline project", baseline)] if baseline else [])
    for label, project in builds:
        pipeline.dbt("build", "--full-refresh", project=project)
        for table, (missing_now, missing_kept) in pipeline.differences(kept).items():
            verdict = "identical" if missing_now == missing_kept == 0 else "DIFFERENT"
            same = same and (verdict == "identical" or (project is not None and missing_now == -1))
            print(
                f"verify   {table:36} monthly builds vs full refresh of {label}: {verdict} "
                f"({missing_now} rows only in the monthly builds, {missing_kept} only in the full refresh)",
                flush=True,
            )
    return same


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
    parser.add_argument("--project", type=Path, help="the dbt project to build (default: include/dbt)")
    parser.add_argument("--verify", action="store_true", help="after the empty phase, compare with a full refresh")
    parser.add_argument("--baseline-project", type=Path, help="with --verify, also a full refresh of this project")
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
        pipeline.project = (args.project or pipeline.project).resolve()
        pipeline.parse()
        verified = True
        for phase in phases:
            steps += run_phase(phase, pipeline, months, work, args.history_months)
            if phase == "empty" and args.verify:
                verified = verify(pipeline, args.baseline_project)
                pipeline.dbt("parse")

    out = REPO_ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"monthly_{datetime.now(UTC):%Y%m%dT%H%M%S}.json").write_text(
        json.dumps([asdict(step) for step in steps], indent=2)
    )
    if not verified:
        raise SystemExit("the monthly builds differ from a full refresh (see the verify lines above)")


if __name__ == "__main__":
    main()
