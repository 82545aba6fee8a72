"""The transform's cost follows the new files (issue 15, items 3 and 5) without loosening a test.

Files are loaded by the ingest DAG (``dag.test()``), then the dbt project is built by plain ``dbt build`` runs
of include/dbt (what the transform DAG's producer runs), into a target directory of the test's own:

- monthly files built one after the other equal a full refresh over the same bronze, invoice_totals included;
- the tests narrowed to unverified lines check only the new load, yet the lines a failed build left behind are
  tested again by every later build until their file is corrected;
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
from include.retail.dbt_project import DBT_EXECUTABLE, DBT_PROJECT_DIR

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


def compiled_test(tmp_path: Path, prefix: str) -> str:
    (path,) = (tmp_path / "target" / "compiled" / "retail" / "models" / "silver" / "transactions.yml").glob(
        f"{prefix}*.sql"
    )
    return path.read_text()


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
    reset_warehouse()
    keys = []
    for part, (start, end) in enumerate(pairwise(cuts), start=1):
        part_rows = [row for row in rows if start <= row[4].date() < end]
        path = write_csv(tmp_path / f"part{part}.csv", [HEADER, *part_rows])
        keys.append(upload(path, f"incoming/monthly/part{part}.csv"))
        assert run_ingest(keys[-1]).state == "success"
        build = dbt("build")
        assert build.returncode == 0, build.stdout[-3000:]

    # The last build's row-level tests of transactions looked at the last month's load only.
    at_least = compiled_test(tmp_path, "at_least_transactions_unit_price")
    assert current_batch(warehouse, keys[-1]) in at_least
    assert not any(current_batch(warehouse, key) in at_least for key in keys[:-1])
    incremental = snapshot(warehouse)
    assert incremental["silver.invoice_totals"]

    full = dbt("build", "--full-refresh")
    assert full.returncode == 0, full.stdout[-3000:]
    assert "and true" in compiled_test(tmp_path, "at_least_transactions_unit_price")  # a full refresh tests all
    assert snapshot(warehouse) == incremental


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
