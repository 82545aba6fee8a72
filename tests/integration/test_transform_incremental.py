"""The transform's cost follows the new files (issue 15, items 3 and 5) without loosening a test.

Files are loaded by the ingest DAG (``dag.test()``), then the dbt project is built by plain ``dbt build`` runs
of include/dbt (what the transform DAG's producer runs), into a target directory of the test's own:

- monthly files built one after the other equal a full refresh over the same bronze, invoice_totals and the
  product totals included, also when a later file repeats earlier invoices and when a file is corrected;
- the tests narrowed to unverified or untested lines check only the new load, yet the lines a failed build left
  behind are tested again by every later build until their file is corrected or the build passes;
- the not_null and unique tests that read the catalog still fail on a null or a duplicate once the guarantee
  is gone, and a model that makes a null fails its build naming the column.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import psycopg
import pytest

from devstack.sample import HEADER, sample_rows, write_csv, write_workbook
from devstack.stack import Stack
from include.retail.transform.dbt_project import DBT_EXECUTABLE, DBT_PROJECT_DIR

pytestmark = [pytest.mark.integration]

# Columns that say where a row came from or when it was built, not what it says (as in test_transform.py).
LINEAGE = ("source_", "batch_id", "loaded_at", "transaction_id")


@pytest.fixture
def dbt(stack: Stack, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """``dbt <args>`` on the stack's warehouse, artifacts in the test's own target directory."""

    def run(*args: str, project: Path = DBT_PROJECT_DIR) -> subprocess.CompletedProcess:
        env = {**stack.environment(), "PATH": "/usr/bin:/bin", "DBT_LOG_PATH": str(tmp_path / "dbt-logs")}
        command = [str(DBT_EXECUTABLE), *args, "--target-path", str(tmp_path / "target")]
        return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, check=False)

    return run


def results(tmp_path: Path) -> dict[str, str]:
    """Status of every node of the last dbt command, by name."""
    run = json.loads((tmp_path / "target" / "run_results.json").read_text())
    return {node["unique_id"].split(".")[2]: node["status"] for node in run["results"]}


def compiled_test(tmp_path: Path, prefix: str, model: str = "transactions", naming: str = "") -> str:
    """The SQL dbt compiled for a test of a model, by the start of its file name (dbt shortens long names to a
    hash: then by a text its SQL holds)."""
    folder = tmp_path / "target" / "compiled" / "retail" / "models" / "silver" / f"{model}.yml"
    (sql,) = [path.read_text() for path in folder.glob(f"{prefix}*.sql") if naming in path.read_text()]
    return sql


def compiled(tmp_path: Path, path: str) -> str:
    """The SQL dbt compiled for a model or a singular test (path inside the project)."""
    return (tmp_path / "target" / "compiled" / "retail" / path).read_text()


def snapshot(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    """Every silver and gold table's business columns, rows sorted."""
    tables = conn.execute(
        "select table_schema, table_name from information_schema.tables "
        "where table_schema in ('silver', 'gold') and table_type = 'BASE TABLE' order by 1, 2"
    ).fetchall()
    shot = {}
    for schema, name in tables:
        columns = [
            column
            for (column,) in conn.execute(
                "select column_name from information_schema.columns where table_schema = %s and table_name = %s "
                "order by ordinal_position",
                (schema, name),
            ).fetchall()
            if not any(marker in column for marker in LINEAGE)
        ]
        rows = conn.execute(f"select {', '.join(columns)} from {schema}.{name}").fetchall()
        shot[f"{schema}.{name}"] = sorted(rows, key=repr)
    return shot


def current_batch(warehouse: psycopg.Connection, key: str) -> str:
    (batch_id,) = warehouse.execute(
        "select batch_id::text from bronze.load_ledger where source_key = %s and status = 'loaded' "
        "and superseded_by is null",
        (key,),
    ).fetchone()
    return batch_id


def test_files_built_one_by_one_equal_a_full_refresh_and_test_only_the_new_load(
    tmp_path, reset_warehouse, upload, run_ingest, dbt, warehouse
) -> None:
    rows = sample_rows(invoices=450)
    days = sorted({row[4].date() for row in rows})
    assert len(days) >= 6
    cuts = [days[0], days[len(days) // 3], days[2 * len(days) // 3], days[-1] + timedelta(days=1)]
    parts = [[row for row in rows if start <= row[4].date() < end] for start, end in pairwise(cuts)]
    # A fourth file repeats the first invoices of the first, a year later (as the shifted history of the monthly
    # bench does): the same invoice numbers and customers, which the product totals must not count twice.
    repeated = {row[0] for row in parts[0][:60]}
    parts.append([[*row[:4], row[4] + timedelta(days=365), *row[5:]] for row in parts[0] if row[0] in repeated])
    reset_warehouse()
    keys = []
    for part, part_rows in enumerate(parts, start=1):
        path = write_csv(tmp_path / f"part{part}.csv", [HEADER, *part_rows])
        keys.append(upload(path, f"incoming/monthly/part{part}.csv"))
        assert run_ingest(keys[-1]).state == "success"
        build = dbt("build")
        assert build.returncode == 0, build.stdout[-3000:]

    # The last build read and tested the last file's load only: the row-level tests of transactions, the
    # relationships tests of transactions and of the daily facts, the reconciliation, and the product totals.
    last, earlier = current_batch(warehouse, keys[-1]), [current_batch(warehouse, key) for key in keys[:-1]]
    narrowed = {
        "at_least": compiled_test(tmp_path, "at_least_transactions_unit_price"),
        "relationships to dim_product": compiled_test(tmp_path, "relationships_transactions", naming="dim_product"),
        "fact relationships": compiled_test(
            tmp_path, "relationships_fact_sales_daily", "fact_sales_daily", naming="dim_product"
        ),
        "reconciliation": compiled(tmp_path, "tests/reconcile_revenue_gold_silver_bronze.sql"),
        "product_totals": compiled(tmp_path, "models/silver/product_totals.sql"),
        "product_descriptions": compiled(tmp_path, "models/silver/product_descriptions.sql"),
    }
    for name, sql in narrowed.items():
        assert last in sql, name
        # (the product totals name the loads already counted too, after the new lines: "held")
        assert not any(batch in sql.split("held", 1)[0] for batch in earlier), name
    incremental = snapshot(warehouse)
    assert incremental["silver.invoice_totals"]
    orders = dict(warehouse.execute("select stock_code, orders from gold.product_performance").fetchall())
    assert orders == dict(
        warehouse.execute(
            "select stock_code, count(distinct invoice_no) from silver.transactions "
            "where line_type = 'sale' group by stock_code"
        ).fetchall()
    )

    full = dbt("build", "--full-refresh")
    assert full.returncode == 0, full.stdout[-3000:]
    assert "and true" in compiled_test(tmp_path, "at_least_transactions_unit_price")  # a full refresh tests all
    assert "where true" in compiled(tmp_path, "models/silver/product_totals.sql")  # and rebuilds from every line
    assert last not in compiled(tmp_path, "tests/reconcile_revenue_gold_silver_bronze.sql")
    assert snapshot(warehouse) == incremental

    # A corrected second file (a day dropped, a description changed) supersedes its load: the product totals,
    # which cannot take lines back out, rebuild from every line; the daily facts rebuild the days of both loads.
    corrected = [row for row in parts[1] if row[4].date() != parts[1][0][4].date()]
    corrected[0] = [*corrected[0][:2], "A DESCRIPTION ONLY THE CORRECTION HAS", *corrected[0][3:]]
    path = write_csv(tmp_path / "part2_corrected.csv", [HEADER, *corrected])
    assert run_ingest(upload(path, keys[1])).state == "success"
    build = dbt("build")
    assert build.returncode == 0, build.stdout[-3000:]
    assert "where true" in compiled(tmp_path, "models/silver/product_totals.sql")
    corrected_incremental = snapshot(warehouse)
    assert corrected_incremental != incremental
    assert dbt("build", "--full-refresh").returncode == 0
    assert snapshot(warehouse) == corrected_incremental


def test_tests_narrowed_to_untested_loads_fail_until_a_build_passes_them(
    tmp_path, reset_warehouse, upload, run_ingest, dbt, warehouse
) -> None:
    """The reconciliation checks only the loads silver.tested_loads does not hold: a build whose gold disagrees
    with silver fails on the new load, and so does the next one (the load is still untested), until a build
    passes; only then does tested_loads take the load."""
    broken = tmp_path / "dbt"
    shutil.copytree(DBT_PROJECT_DIR, broken, ignore=shutil.ignore_patterns("target", "logs"))
    summary = broken / "models" / "gold" / "monthly_sales_summary.sql"
    summary.write_text(
        summary.read_text().replace(
            "coalesce(monthly.revenue, 0) as revenue,", "coalesce(monthly.revenue, 0) + 1 as revenue,"
        )
    )
    rows = sample_rows(invoices=120)
    middle = rows[len(rows) // 2][4]
    first = write_csv(tmp_path / "first.csv", [HEADER, *[row for row in rows if row[4] < middle]])
    second = write_csv(tmp_path / "second.csv", [HEADER, *[row for row in rows if row[4] >= middle]])
    reset_warehouse()
    assert run_ingest(upload(first, "incoming/tested/first.csv")).state == "success"
    assert dbt("build").returncode == 0
    assert run_ingest(upload(second, "incoming/tested/second.csv")).state == "success"
    second_batch = current_batch(warehouse, "incoming/tested/second.csv")

    for _ in range(2):
        assert dbt("build", project=broken).returncode != 0
        status = results(tmp_path)
        assert status["reconcile_revenue_gold_silver_bronze"] == "fail"
        assert status["tested_loads"] == "skipped"
        assert second_batch in compiled(tmp_path, "tests/reconcile_revenue_gold_silver_bronze.sql")

    build = dbt("build")
    assert build.returncode == 0, build.stdout[-3000:]
    tested = {batch for (batch,) in warehouse.execute("select batch_id::text from silver.tested_loads").fetchall()}
    assert second_batch in tested


def test_lines_a_failed_build_left_behind_are_tested_until_their_file_is_corrected(
    tmp_path, reset_warehouse, upload, run_ingest, dbt
) -> None:
    """A sale priced below zero fails transactions' at_least test; the next build, with nothing new, fails on
    it again (its load is still unverified); the corrected file under the same key passes."""
    good = write_csv(tmp_path / "good.csv", [HEADER, *sample_rows(invoices=60)])
    sale = [581002, "71053", "WHITE METAL LANTERN", 2, datetime(2011, 12, 1, 9, 5), -3.39, 17850.0, "United Kingdom"]
    broken = write_workbook(tmp_path / "broken.xlsx", {"Online Retail": [HEADER, sale]})
    fixed = write_workbook(tmp_path / "fixed.xlsx", {"Online Retail": [HEADER, [*sale[:5], 3.39, *sale[6:]]]})
    reset_warehouse()
    assert run_ingest(upload(good, "incoming/verified/good.csv")).state == "success"
    assert dbt("build").returncode == 0

    assert run_ingest(upload(broken, "incoming/verified/late.xlsx")).state == "success"
    for _ in range(2):
        assert dbt("build").returncode != 0
        status = results(tmp_path)
        assert status["at_least_transactions_unit_price__0"] == "fail"
        assert status["invoice_totals"] == "skipped"

    assert run_ingest(upload(fixed, "incoming/verified/late.xlsx")).state == "success"
    build = dbt("build")
    assert build.returncode == 0, build.stdout[-3000:]


def test_catalog_backed_tests_still_fail_on_a_null_or_a_duplicate(
    tmp_path, reset_warehouse, upload, run_ingest, dbt, warehouse
) -> None:
    """The not_null and unique tests skip their scan while PostgreSQL holds the guarantee; without it they scan
    and fail as before."""
    path = write_csv(tmp_path / "shop.csv", [HEADER, *sample_rows(invoices=60)])
    reset_warehouse()
    assert run_ingest(upload(path, "incoming/catalog/shop.csv")).state == "success"
    assert dbt("build").returncode == 0

    guarded = warehouse.execute(
        "select attnotnull from pg_attribute where attrelid = 'silver.transactions'::regclass and attname = 'country'"
    ).fetchone()[0]
    assert guarded  # declared NOT NULL by the post-hook
    warehouse.execute("alter table silver.transactions alter column country drop not null")
    warehouse.execute(
        "update silver.transactions set country = null "
        "where transaction_id = (select min(transaction_id) from silver.transactions)"
    )
    for (index,) in warehouse.execute(
        "select indexrelid::regclass::text from pg_index "
        "where indrelid = 'silver.transactions'::regclass and indisunique"
    ).fetchall():
        warehouse.execute(f"drop index {index}")
    warehouse.execute("insert into silver.transactions select * from silver.transactions limit 1")

    assert dbt("test", "--select", "transactions").returncode != 0
    status = results(tmp_path)
    assert status["not_null_transactions_country"] == "fail"
    assert status["unique_transactions_transaction_id"] == "fail"
    assert status["unique_combination_of_columns_transactions_source_key__source_sheet__source_row"] == "fail"
    assert status["not_null_transactions_stock_code"] == "pass"


def test_a_model_that_makes_a_null_fails_its_build_naming_the_column(
    tmp_path, reset_warehouse, upload, run_ingest, dbt
) -> None:
    project = tmp_path / "dbt"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    model = project / "models" / "gold" / "country_sales.sql"
    model.write_text(
        model.read_text().replace(
            "        country,\n        revenue,",
            "        nullif(country, 'United Kingdom') as country,\n        revenue,",
        )
    )
    path = write_csv(tmp_path / "shop.csv", [HEADER, *sample_rows(invoices=60)])
    reset_warehouse()
    assert run_ingest(upload(path, "incoming/nulls/shop.csv")).state == "success"

    build = dbt("build", "--select", "+country_sales", project=project)

    assert build.returncode != 0
    assert results(tmp_path)["country_sales"] == "error"
    assert 'column "country" of relation "country_sales" contains null values' in build.stdout


def test_a_row_without_a_country_is_set_aside_and_months_count_only_those_with_a_sale(
    tmp_path, reset_warehouse, upload, run_ingest, dbt, warehouse
) -> None:
    """Issue 22, two trials in one pair of builds:

    - a workbook whose Country is blank in one row loaded into bronze, then failed every transform on silver's
      NOT NULL (first build and incremental), so a clean file uploaded next never reached gold. The row is set
      aside with its reason; both builds pass (the reconciliation of gold with silver and bronze included) and
      the clean file's lines are in silver;
    - a file of a later year made the summary say "157 months" where 26 had sales: gold's monthly summary has a
      row for every month of the span (zeros between); the summary and the report count the months with a sale.
    """
    from include.retail.transform.dbt_results import DbtRun
    from include.retail.transform.gold_report import read_gold
    from include.retail.transform.layers import gold_revenue

    rows = sample_rows(invoices=120)  # December 2010
    blank = next(index for index, row in enumerate(rows) if row[3] > 0 and row[5] > 0)
    rows[blank] = [*rows[blank][:7], None]
    workbook = write_workbook(tmp_path / "a.xlsx", {"Sheet1": [HEADER, *rows[:200]]})
    later = [[*row[:4], row[4] + timedelta(days=400), *row[5:]] for row in rows[200:]]  # January 2012
    clean = write_csv(tmp_path / "b.csv", [HEADER, *later])
    reset_warehouse()
    assert run_ingest(upload(workbook, "incoming/blank/a.xlsx")).state == "success"
    build = dbt("build")
    assert build.returncode == 0, build.stdout[-3000:]
    set_aside = warehouse.execute("select reason, source_row from silver.transactions_set_aside").fetchall()
    assert set_aside == [("missing_country", blank + 2)]

    assert run_ingest(upload(clean, "incoming/blank/b.csv")).state == "success"
    build = dbt("build")
    assert build.returncode == 0, build.stdout[-3000:]
    (lines,) = warehouse.execute(
        "select count(*) from silver.transactions where source_key = 'incoming/blank/b.csv'"
    ).fetchone()
    assert lines > 0

    (calendar_months,) = warehouse.execute("select count(*) from gold.monthly_sales_summary").fetchone()
    revenue = gold_revenue(warehouse)
    assert calendar_months == 14
    assert (revenue.months, revenue.first_month.isoformat(), revenue.last_month.isoformat()) == (
        2,
        "2010-12-01",
        "2012-01-01",
    )
    assert read_gold(warehouse, {}, DbtRun({})).totals["months"] == 2
