"""The gold report's figures, read from gold and the ledger: one self-contained HTML page is drawn from them
after each transform (``gold_report_page``) and written to the bucket (``gold_report_publish``).

Monthly revenue and orders, the cancellation rate, the top countries and products, the RFM segments' sizes,
and a data-quality panel (rows per layer, files and rejected rows, dbt tests, freshness). The queries are plain
functions of a psycopg connection, tested without Airflow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    from include.retail.transform.dbt_results import DbtRun

TOP = 10  # countries and products shown

# Gold, read as the report shows it. One query per panel; gold is small (13 months, ~4,000 products).
MONTHLY_SQL = """
select
    month_start,
    revenue,
    orders,
    cancelled_orders,
    cancellation_rate,
    customers,
    units
from gold.monthly_sales_summary
order by month_start
"""
COUNTRIES_SQL = """
select
    country,
    revenue,
    orders,
    customers,
    revenue_share
from gold.country_sales
order by revenue desc, country
limit %(top)s
"""
PRODUCTS_SQL = """
select
    stock_code,
    description,
    revenue,
    units_sold,
    orders
from gold.product_performance
order by revenue desc, stock_code
limit %(top)s
"""
SEGMENTS_SQL = """
select
    rfm_segment,
    count(*) as customers,
    sum(monetary) as monetary
from gold.customer_rfm
group by rfm_segment
order by customers desc, rfm_segment
"""
# Files by ledger status, and the rows rejected and the latest load of what bronze currently holds.
LEDGER_SQL = """
with

current_loads as (

    select * from bronze.load_ledger
    where status = 'loaded' and superseded_by is null

)

select
    (select coalesce(sum(rows_rejected), 0) from current_loads) as rows_rejected,
    (select max(finished_at) from current_loads) as last_load_at,
    (select count(*) from current_loads) as current_files,
    (select max(last_sale_on) from gold.country_sales) as data_through
"""
FILES_SQL = "select status, count(*) from bronze.load_ledger group by status order by status"


@dataclass(frozen=True)
class Quality:
    """The data-quality panel: how much each layer holds, what was refused, what dbt tested, how fresh it is."""

    layer_rows: dict[str, int]  # schema.table -> rows, as layers.layer_counts counts them
    files: dict[str, int]  # ledger status -> files, every file ever seen
    current_files: int  # files whose rows bronze currently holds
    rows_rejected: int  # untypeable rows of those files (bronze.rejected_rows)
    tests: dict[str, int]  # dbt data tests by status, from the build's run results
    last_load_at: datetime | None
    data_through: date | None  # the last day with a sale

    @property
    def tests_passed(self) -> int:
        return self.tests.get("pass", 0)

    @property
    def tests_run(self) -> int:
        return sum(self.tests.values())


@dataclass(frozen=True)
class GoldReport:
    """Everything the page shows, as plain rows (dicts keyed by gold's column names)."""

    generated_at: datetime
    monthly: list[dict[str, Any]]
    countries: list[dict[str, Any]]
    products: list[dict[str, Any]]
    segments: list[dict[str, Any]]
    quality: Quality

    @property
    def totals(self) -> dict[str, Any]:
        """The headline figures: gold's monthly rows added up, customers from the RFM mart."""
        orders = sum(row["orders"] for row in self.monthly)
        cancelled = sum(row["cancelled_orders"] for row in self.monthly)
        return {
            "revenue": sum((row["revenue"] for row in self.monthly), Decimal(0)),
            "orders": orders,
            "cancelled_orders": cancelled,
            "cancellation_rate": Decimal(cancelled) / (orders + cancelled) if orders + cancelled else Decimal(0),
            "customers": sum(row["customers"] for row in self.segments),
            # with a sale; the monthly rows include the empty months between them
            "months": sum(1 for row in self.monthly if row["orders"]),
        }

    def as_json(self) -> str:
        """The figures as JSON: decimals as exact strings, dates in ISO form."""

        def plain(value: Any) -> Any:
            if isinstance(value, Decimal):
                return str(value)
            if isinstance(value, date | datetime):
                return value.isoformat()
            raise TypeError(f"{type(value).__name__} is not JSON serialisable")

        return json.dumps(asdict(self) | {"totals": self.totals}, default=plain, sort_keys=True)


def read_gold(conn: psycopg.Connection, layer_rows: Mapping[str, int], dbt_run: DbtRun) -> GoldReport:
    """Read the report's figures from gold and the ledger; ``layer_rows`` and ``dbt_run`` are what the
    transform summary reports too (layers.layer_counts, the producer's run results)."""
    from psycopg.rows import dict_row

    cursor = conn.cursor(row_factory=dict_row)
    ledger = cursor.execute(LEDGER_SQL).fetchone()
    files = dict(conn.execute(FILES_SQL).fetchall())
    return GoldReport(
        generated_at=datetime.now(UTC).replace(microsecond=0),
        monthly=cursor.execute(MONTHLY_SQL).fetchall(),
        countries=cursor.execute(COUNTRIES_SQL, {"top": TOP}).fetchall(),
        products=cursor.execute(PRODUCTS_SQL, {"top": TOP}).fetchall(),
        segments=cursor.execute(SEGMENTS_SQL).fetchall(),
        quality=Quality(
            layer_rows=dict(layer_rows),
            files=files,
            current_files=ledger["current_files"],
            rows_rejected=int(ledger["rows_rejected"]),
            tests=dbt_run.data_tests(),
            last_load_at=ledger["last_load_at"],
            data_through=ledger["data_through"],
        ),
    )
