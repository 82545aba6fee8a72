"""Silver and gold, built by the transform DAG through Cosmos, against an independent computation.

The expected figures are computed here from the CSV export of the workbook with polars and Python's
Decimal, following the cleaning rules the models document, never copied from the pipeline's output.
"""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import yaml

from devstack.sample import HEADER, write_workbook
from include.retail.transform.dbt_project import DBT_MANIFEST, DBT_PROJECT_DIR

pytestmark = [pytest.mark.integration]


def non_product_codes() -> set[str]:
    project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    return {code.upper() for code in project["vars"]["non_product_stock_codes"]}


def expected_from(csv_path: Path) -> dict:
    """What silver and gold must hold for this one file, computed from the CSV alone."""
    raw = pl.read_csv(csv_path, infer_schema=False)
    distinct = raw.unique(maintain_order=True)  # exact duplicates collapse within a file
    rows = distinct.with_columns(
        pl.col("InvoiceNo").str.strip_chars().alias("invoice"),
        pl.col("StockCode").str.strip_chars().alias("stock"),
        pl.col("Country").str.strip_chars().alias("country"),
        pl.col("Quantity").cast(pl.Int64).alias("quantity"),
        pl.col("InvoiceDate").str.slice(0, 10).alias("day"),
        pl.col("InvoiceDate").str.slice(0, 7).alias("month"),
        pl.col("CustomerID").cast(pl.Int64).alias("customer"),
    )
    cancellation = pl.col("invoice").str.starts_with("C")
    non_product = pl.col("stock").str.to_uppercase().is_in(sorted(non_product_codes()))
    sales = rows.filter(~cancellation & ~non_product & (pl.col("quantity") > 0))

    revenue_by_month: dict[str, Decimal] = defaultdict(Decimal)
    for month, quantity, price in sales.select("month", "quantity", "UnitPrice").iter_rows():
        revenue_by_month[month] += quantity * Decimal(price)
    monthly = (
        sales.group_by("month")
        .agg(
            pl.col("invoice").n_unique().alias("orders"),
            pl.col("customer").drop_nulls().n_unique().alias("customers"),
            pl.col("quantity").sum().alias("units"),
        )
        .sort("month")
    )
    cancelled_invoices = rows.filter(cancellation).group_by("month").agg(pl.col("invoice").n_unique().alias("n"))
    cancelled = dict(cancelled_invoices.iter_rows())
    return {
        "bronze_rows": raw.height,
        "silver_rows": distinct.height,
        "fact_sales_daily_rows": sales.select("day", "stock", "country").unique().height,
        "dim_product_rows": rows.select("stock").unique().height,
        "dim_customer_rows": rows.select("customer").drop_nulls().unique().height,
        "customer_rfm_rows": sales.select("customer").drop_nulls().unique().height,
        "country_sales_rows": sales.select("country").unique().height,
        "units": sales["quantity"].sum(),
        "revenue": sum(revenue_by_month.values(), Decimal(0)),
        "monthly": [
            (
                month,
                revenue_by_month[month],
                orders,
                customers,
                units,
                Decimal(cancelled.get(month, 0)) / (orders + cancelled.get(month, 0)),
            )
            for month, orders, customers, units in monthly.iter_rows()
        ],
    }


@pytest.fixture(scope="module")
def real_transform(reset_warehouse, real_csv, upload, run_ingest, run_transform):
    reset_warehouse()
    upload(real_csv, "incoming/transform/online_retail.csv")
    ingest = run_ingest("incoming/transform/online_retail.csv")
    assert ingest.state == "success"
    return run_transform()


@pytest.fixture(scope="module")
def expected(real_csv) -> dict:
    return expected_from(real_csv)


def test_transform_succeeds_with_every_dbt_test_and_announces(real_transform) -> None:
    assert real_transform.state == "success"
    (alert,) = real_transform.alerts
    assert alert["subject"].startswith("[retail] Transform done: 13 months, revenue ")
    # Counted from the run results of the producer's dbt build (its callback keeps them): a whole build runs
    # every data test the project has.
    data_tests = sum(node["resource_type"] == "test" for node in json.loads(DBT_MANIFEST.read_text())["nodes"].values())
    assert alert["subject"].endswith(f", {data_tests} tests passed")
    assert f"; all {data_tests} dbt data tests passed." in alert["message"]
    assert "gold.monthly_sales_summary" in alert["message"]


def test_silver_and_gold_hold_what_the_source_says(real_transform, expected, warehouse) -> None:
    def count(table: str) -> int:
        return warehouse.execute(f"select count(*) from {table}").fetchone()[0]

    assert (
        warehouse.execute("select sum(source_rows) from silver.transactions").fetchone()[0] == expected["bronze_rows"]
    )
    assert count("silver.transactions") == expected["silver_rows"]
    assert count("silver.dim_date") == 374
    assert count("silver.dim_product") == expected["dim_product_rows"]
    assert count("silver.dim_customer") == expected["dim_customer_rows"]
    assert count("silver.fact_sales_daily") == expected["fact_sales_daily_rows"]
    assert count("gold.country_sales") == expected["country_sales_rows"]
    assert count("gold.customer_rfm") == expected["customer_rfm_rows"]

    monthly = warehouse.execute(
        "select to_char(month_start, 'YYYY-MM'), revenue, orders, customers, units, cancellation_rate "
        "from gold.monthly_sales_summary order by month_start"
    ).fetchall()
    assert [row[:5] for row in monthly] == [row[:5] for row in expected["monthly"]]
    for (month, *_, rate), (_, *_, expected_rate) in zip(monthly, expected["monthly"], strict=True):
        assert abs(rate - expected_rate) < Decimal("0.0001"), month


def test_revenue_reconciles_to_the_cent(real_transform, expected, warehouse) -> None:
    gold, fact, silver, units = warehouse.execute(
        """
        select
            (select sum(revenue) from gold.monthly_sales_summary),
            (select sum(revenue) from silver.fact_sales_daily),
            (select sum(line_amount) from silver.transactions where line_type = 'sale'),
            (select sum(units) from silver.fact_sales_daily)
        """
    ).fetchone()
    assert gold == fact == silver == expected["revenue"]
    assert units == expected["units"]


def test_the_gold_report_shows_golds_numbers_and_the_summary_links_it(real_transform, expected, warehouse, s3) -> None:
    """The report the run published (found through the link in its SNS summary) holds gold's figures, which
    equal the independent computation from the CSV; the link opens it; latest.html is the same page."""
    import re
    import urllib.request

    from devstack.aws import BUCKET
    from include.retail.transform.gold_report import TOP
    from include.retail.transform.gold_report_page import embedded_data
    from include.retail.transform.gold_report_publish import LATEST_KEY, REPORT_KEY_METADATA

    (alert,) = real_transform.alerts
    key = re.search(rf"Gold report: s3://{BUCKET}/(reports/gold-[0-9T-]+Z\.html) ", alert["message"]).group(1)
    url = re.search(r"^  (http\S+)$", alert["message"], re.MULTILINE).group(1)
    stored = s3.get_object(Bucket=BUCKET, Key=key)
    page = stored["Body"].read().decode()
    assert stored["ContentType"].startswith("text/html")
    with urllib.request.urlopen(url, timeout=30) as response:  # the presigned link, as a mail reader would open it
        assert response.read().decode() == page
    latest = s3.get_object(Bucket=BUCKET, Key=LATEST_KEY)
    assert latest["Metadata"][REPORT_KEY_METADATA] == key
    assert latest["Body"].read().decode() == page
    data = embedded_data(page)

    monthly = warehouse.execute(
        "select to_char(month_start, 'YYYY-MM-DD'), revenue, orders, cancelled_orders, cancellation_rate "
        "from gold.monthly_sales_summary order by month_start"
    ).fetchall()
    shown = [
        (row["month_start"], Decimal(row["revenue"]), row["orders"], row["cancelled_orders"],
         Decimal(row["cancellation_rate"]))
        for row in data["monthly"]
    ]  # fmt: skip
    assert shown == monthly
    assert [(month[:7], revenue, orders) for month, revenue, orders, *_ in shown] == [
        (month, revenue, orders) for month, revenue, orders, *_ in expected["monthly"]
    ]
    assert Decimal(data["totals"]["revenue"]) == expected["revenue"]
    assert data["totals"]["customers"] == expected["customer_rfm_rows"]
    assert f"{expected['revenue']:,.2f}" in page  # the headline figure as the reader sees it

    countries = warehouse.execute(
        "select country, revenue from gold.country_sales order by revenue desc limit %s", (TOP,)
    ).fetchall()
    assert [(row["country"], Decimal(row["revenue"])) for row in data["countries"]] == countries
    products = warehouse.execute(
        "select stock_code, revenue from gold.product_performance order by revenue desc limit %s", (TOP,)
    ).fetchall()
    assert [(row["stock_code"], Decimal(row["revenue"])) for row in data["products"]] == products
    segments = dict(warehouse.execute("select rfm_segment, count(*) from gold.customer_rfm group by 1").fetchall())
    assert {row["rfm_segment"]: row["customers"] for row in data["segments"]} == segments

    quality = data["quality"]
    assert quality["layer_rows"]["bronze.retail_transactions_current"] == expected["bronze_rows"]
    assert quality["layer_rows"]["silver.transactions"] == expected["silver_rows"]
    assert quality["layer_rows"]["gold.customer_rfm"] == expected["customer_rfm_rows"]
    assert quality["files"] == {"loaded": 1}
    assert quality["rows_rejected"] == 0
    data_tests = sum(node["resource_type"] == "test" for node in json.loads(DBT_MANIFEST.read_text())["nodes"].values())
    assert quality["tests"] == {"pass": data_tests}
    assert quality["data_through"] == "2011-12-09"


SNAPSHOT_TABLES = [
    "silver.dim_date",
    "silver.dim_product",
    "silver.dim_customer",
    "silver.fact_sales_daily",
    "silver.fact_returns_daily",
    "gold.monthly_sales_summary",
    "gold.country_sales",
    "gold.product_performance",
    "gold.customer_rfm",
]
LINEAGE = ("source_", "batch_id", "loaded_at", "transaction_id")


def snapshot(warehouse) -> dict[str, list[tuple]]:
    """Every silver and gold table's business columns, rows sorted: what must not depend on how files arrived."""
    tables = {}
    for table in SNAPSHOT_TABLES:
        schema, name = table.split(".")
        columns = [
            column
            for (column,) in warehouse.execute(
                "select column_name from information_schema.columns where table_schema = %s and table_name = %s "
                "order by ordinal_position",
                (schema, name),
            ).fetchall()
            if not any(marker in column for marker in LINEAGE)
        ]
        select = f"select {', '.join(columns)} from {table}"
        tables[table] = sorted(warehouse.execute(select).fetchall(), key=repr)
    return tables


def test_incremental_loads_equal_one_whole_load(
    tmp_path, real_csv, reset_warehouse, upload, run_ingest, run_transform, warehouse, stack
) -> None:
    """The workbook split by date into two files, each loaded and transformed in turn, equals it loaded whole."""
    import subprocess

    from include.retail.transform.dbt_project import DBT_EXECUTABLE

    whole = pl.read_csv(real_csv, infer_schema=False)
    first, second = tmp_path / "until_june.csv", tmp_path / "from_june.csv"
    whole.filter(pl.col("InvoiceDate") < "2011-06-01").write_csv(first)
    whole.filter(pl.col("InvoiceDate") >= "2011-06-01").write_csv(second)

    reset_warehouse()
    for part in (first, second):
        key = upload(part, f"incoming/split/{part.name}")
        assert run_ingest(key).state == "success"
        assert run_transform().state == "success"
    incremental = snapshot(warehouse)

    # The incremental models rebuilt from scratch over the same bronze give the same tables.
    env = {**stack.environment(), "PATH": "/usr/bin:/bin"}
    subprocess.run(
        [str(DBT_EXECUTABLE), "build", "--full-refresh", "--quiet"],
        cwd=DBT_PROJECT_DIR,
        env=env,
        check=True,
    )
    assert snapshot(warehouse) == incremental

    reset_warehouse()
    key = upload(real_csv, "incoming/split/whole.csv")
    assert run_ingest(key).state == "success"
    assert run_transform().state == "success"
    assert snapshot(warehouse) == incremental


def test_failing_dbt_test_stops_dependent_models_and_alerts(
    tmp_path, reset_warehouse, upload, run_ingest, run_transform, warehouse
) -> None:
    """A sale with a negative price is a data error silver's tests catch: nothing downstream is built."""
    from datetime import datetime

    rows = [
        [581001, "85123A", "WHITE HANGING HEART", 6, datetime(2011, 12, 1, 9, 0), 2.55, 17850.0, "United Kingdom"],
        [581002, "71053", "WHITE METAL LANTERN", 2, datetime(2011, 12, 1, 9, 5), -3.39, 17850.0, "United Kingdom"],
    ]
    path = write_workbook(tmp_path / "broken_price.xlsx", {"Online Retail": [HEADER, *rows]})
    reset_warehouse()
    key = upload(path, "incoming/broken/broken_price.xlsx")
    assert run_ingest(key).state == "success"  # bronze keeps what came; judging it is silver's job

    run = run_transform()

    assert run.state == "failed"
    failed = [alert["subject"] for alert in run.alerts]
    assert any("FAILED retail_transform.dbt.transactions.test" in subject for subject in failed), failed
    assert not any("Transform done" in subject for subject in failed)
    exists = warehouse.execute("select to_regclass('gold.monthly_sales_summary')").fetchone()[0]
    assert exists is None  # gold was never built from the bad data


def _typed_sheets(path: Path, key: str):
    """A file read and typed as the ingest task does, for loads the test drives itself."""
    from include.retail.ingest.contract import type_rows
    from include.retail.ingest.reader import read_source

    contents = read_source(path, key)
    return [type_rows(sheet.raw, sheet.written_as, sheet_name=sheet.name) for sheet in contents.sheets]


def _wait_until_blocked_on_advisory_lock(warehouse, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not warehouse.execute(
        "select exists (select 1 from pg_locks where locktype = 'advisory' and not granted)"
    ).fetchone()[0]:
        assert time.monotonic() < deadline, "the held load never reached its lock"
        time.sleep(0.05)


def test_a_load_committing_after_another_files_transform_is_transformed_next(
    tmp_path, reset_warehouse, upload, run_ingest, run_transform, warehouse, stack
) -> None:
    """Issue 9 item 2: load A starts (its loaded_at is its transaction's start), waits before committing while
    file B loads and is transformed, then commits: the next transform picks A up and reconciles."""
    import hashlib
    import threading
    from datetime import UTC, datetime

    import psycopg

    from devstack.sample import sample_rows, write_csv
    from include.retail.ingest.bronze import load_into_bronze
    from include.retail.ingest.ledger import SourceFile, batches_missing_from_silver

    rows = sample_rows(invoices=300)
    middle = len(rows) // 2
    early = write_csv(tmp_path / "early.csv", [HEADER, *rows[:middle]])
    late = write_workbook(tmp_path / "late.xlsx", {"Online Retail": [HEADER, *rows[middle:]]})
    reset_warehouse()

    key_a = "incoming/held/early.csv"
    sha256 = hashlib.sha256(early.read_bytes()).hexdigest()
    source = SourceFile(key=key_a, sha256=sha256, etag=None, size=early.stat().st_size)
    sheets = _typed_sheets(early, key_a)
    outcome: dict = {}

    def held_load() -> None:
        with psycopg.connect(stack.warehouse_url("retail_loader"), autocommit=True) as conn:
            outcome["result"] = load_into_bronze(conn, source, sheets, started_at=datetime.now(UTC), run_id="held")

    # The test holds the load's own lock on the content hash, so load A waits inside its transaction.
    with psycopg.connect(stack.warehouse_url(), autocommit=True) as holder:
        holder.execute("select pg_advisory_lock(hashtextextended(%s, 0))", (sha256,))
        loader = threading.Thread(target=held_load)
        loader.start()
        try:
            _wait_until_blocked_on_advisory_lock(warehouse)
            key_b = upload(late, "incoming/held/late.xlsx")
            assert run_ingest(key_b).state == "success"
            assert run_transform().state == "success"
        finally:
            holder.execute("select pg_advisory_unlock(hashtextextended(%s, 0))", (sha256,))
            loader.join(timeout=60)
    assert outcome["result"].status == "loaded"
    loaded_at_a, loaded_at_b = warehouse.execute(
        "select min(loaded_at) filter (where source_key = %s), min(loaded_at) filter (where source_key <> %s) "
        "from bronze.retail_transactions",
        (key_a, key_a),
    ).fetchone()
    assert loaded_at_a < loaded_at_b  # A started first and committed last: time alone would skip it
    assert [batch["key"] for batch in batches_missing_from_silver(warehouse)] == [key_a]

    assert run_transform().state == "success"  # reconciliation included
    assert batches_missing_from_silver(warehouse) == []
    silver_rows, bronze_rows = warehouse.execute(
        "select (select sum(source_rows) + (select count(*) from silver.transactions_set_aside) "
        "from silver.transactions), (select count(*) from bronze.retail_transactions_current)"
    ).fetchone()
    assert silver_rows == bronze_rows == len(rows)


def test_a_csv_export_of_a_loaded_workbook_is_a_duplicate_and_partial_overlaps_are_counted(
    tmp_path, reset_warehouse, upload, run_ingest, run_transform, warehouse
) -> None:
    """Issue 9 item 8: the same rows re-exported (CSV, other order) add nothing; a partial overlap loads, counted."""
    from devstack.sample import sample_rows, write_csv

    rows = sample_rows(invoices=120)
    workbook = write_workbook(tmp_path / "shop.xlsx", {"Online Retail": [HEADER, *rows]})
    export = write_csv(tmp_path / "shop_export.csv", [HEADER, *reversed(rows)])
    extra = [[590001, "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 3, rows[-1][4], 2.55, 17850.0, "France"]]
    overlapping = write_csv(tmp_path / "shop_plus.csv", [HEADER, *rows[:10], *extra])
    reset_warehouse()

    assert run_ingest(upload(workbook, "incoming/reexport/shop.xlsx")).state == "success"
    assert run_transform().state == "success"
    before = snapshot(warehouse)

    again = run_ingest(upload(export, "incoming/reexport/shop_export.csv"))
    assert again.state == "success"
    status, duplicate_of_key = warehouse.execute(
        "select ledger.status, original.source_key from bronze.load_ledger as ledger "
        "join bronze.load_ledger as original on ledger.duplicate_of = original.batch_id "
        "where ledger.airflow_run_id = %s",
        (again.run_id,),
    ).fetchone()
    assert (status, duplicate_of_key) == ("duplicate", "incoming/reexport/shop.xlsx")
    assert again.alerts == []  # nothing loaded, nothing to announce
    assert run_transform().state == "success"
    assert snapshot(warehouse) == before  # not counted twice

    partial = run_ingest(upload(overlapping, "incoming/reexport/shop_plus.csv"))
    assert partial.state == "success"
    (rows_loaded, rows_overlapping), *_ = warehouse.execute(
        "select rows_loaded, rows_overlapping from bronze.load_ledger where airflow_run_id = %s", (partial.run_id,)
    ).fetchall()
    assert (rows_loaded, rows_overlapping) == (11, 10)
    (alert,) = partial.alerts
    assert "incoming/reexport/shop_plus.csv: loaded, 11 rows" in alert["message"]
    assert "10 of them identical to rows of another file already loaded" in alert["message"]


def test_a_corrected_file_replaces_its_keys_lines_and_days(
    tmp_path, reset_warehouse, upload, run_ingest, run_transform, warehouse
) -> None:
    """The ledger-driven rebuild handles corrections: the superseded load's lines leave silver, and the days
    only it had leave fact_sales_daily, exactly as a clean load of the corrected file alone."""
    from devstack.sample import sample_rows

    rows = sample_rows(invoices=150)
    first_day = rows[0][4].date()
    corrected_rows = [row for row in rows if row[4].date() != first_day]  # the correction drops a day
    original = write_workbook(tmp_path / "shop.xlsx", {"Online Retail": [HEADER, *rows]})
    corrected = write_workbook(tmp_path / "shop_corrected.xlsx", {"Online Retail": [HEADER, *corrected_rows]})
    other = write_workbook(tmp_path / "other.xlsx", {"Online Retail": [HEADER, *rows[-5:]]})

    reset_warehouse()
    assert run_ingest(upload(corrected, "incoming/fix/shop.xlsx")).state == "success"
    assert run_ingest(upload(other, "incoming/fix/other.xlsx")).state == "success"
    assert run_transform().state == "success"
    clean = snapshot(warehouse)

    reset_warehouse()
    assert run_ingest(upload(original, "incoming/fix/shop.xlsx")).state == "success"
    assert run_ingest(upload(other, "incoming/fix/other.xlsx")).state == "success"
    assert run_transform().state == "success"
    assert run_ingest(upload(corrected, "incoming/fix/shop.xlsx")).state == "success"
    assert run_transform().state == "success"
    assert snapshot(warehouse) == clean
