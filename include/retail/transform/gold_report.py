"""The gold report: one self-contained HTML page drawn from gold, written to the bucket after each transform.

Monthly revenue and orders, the cancellation rate, the top countries and products, the RFM segments' sizes,
and a data-quality panel (rows per layer, files and rejected rows, dbt tests, freshness). Charts are plotly's,
with plotly.js inlined once, so the page opens offline and straight from the bucket: no CDN, no server.
The figures it shows are also embedded as JSON (``<script id="gold-data">``), so a test reads them back.

Queries and rendering are plain functions of a psycopg connection and plain data, tested without Airflow;
plotly is imported inside the rendering functions so that parsing the DAG does not pay for it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import plotly.graph_objects as go
    import psycopg

    from include.retail.transform.summary import DbtRun

REPORTS_PREFIX = "reports/"
LATEST_KEY = REPORTS_PREFIX + "latest.html"
# The user metadata on latest.html naming the dated report it is a copy of (boto3 lower-cases the name).
REPORT_KEY_METADATA = "report-key"
# How long the summary's presigned link lasts: SigV4's longest. A link signed with temporary credentials (an
# IAM role's, as on MWAA) dies with them, sooner; the summary says so.
PRESIGNED_SECONDS = 7 * 24 * 3600
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

    layer_rows: dict[str, int]  # schema.table -> rows, as reports.layer_counts counts them
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
            "months": len(self.monthly),
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
    transform summary reports too (reports.layer_counts, the producer's run results)."""
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


# -- rendering ---------------------------------------------------------------------------------

# Plotly's mode bar without its logo; charts follow the page's width.
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
ACCENT, SECOND = "#1f6f8b", "#e07a1f"


def _layout(fig: go.Figure, title: str, height: int = 360) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01},
        template="plotly_white",
        height=height,
        margin={"l": 60, "r": 30, "t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.15},
    )
    return fig


def figures(report: GoldReport) -> dict[str, go.Figure]:
    """The charts, by the id of the element each is drawn in."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    months = [row["month_start"].strftime("%Y-%m") for row in report.monthly]
    monthly = make_subplots(specs=[[{"secondary_y": True}]])
    monthly.add_trace(
        go.Bar(x=months, y=[float(row["revenue"]) for row in report.monthly], name="revenue", marker_color=ACCENT),
        secondary_y=False,
    )
    monthly.add_trace(
        go.Scatter(x=months, y=[row["orders"] for row in report.monthly], name="orders", line_color=SECOND),
        secondary_y=True,
    )
    monthly.update_yaxes(title_text="revenue", secondary_y=False)
    monthly.update_yaxes(title_text="orders", secondary_y=True, showgrid=False)

    cancellations = go.Figure(
        go.Scatter(
            x=months,
            y=[float(row["cancellation_rate"]) for row in report.monthly],
            mode="lines+markers",
            name="cancellation rate",
            line_color=SECOND,
        )
    )
    cancellations.update_yaxes(tickformat=".1%", rangemode="tozero")

    # Horizontal bars, largest on top: plotly draws the first category at the bottom.
    countries = go.Figure(
        go.Bar(
            x=[float(row["revenue"]) for row in reversed(report.countries)],
            y=[row["country"] for row in reversed(report.countries)],
            orientation="h",
            marker_color=ACCENT,
        )
    )
    countries.update_xaxes(type="log", title_text="revenue (log scale)")
    products = go.Figure(
        go.Bar(
            x=[float(row["revenue"]) for row in reversed(report.products)],
            y=[
                f"{row['description'] or '(no description)'} · {row['stock_code']}" for row in reversed(report.products)
            ],
            orientation="h",
            marker_color=ACCENT,
        )
    )
    products.update_xaxes(title_text="revenue")
    segments = go.Figure(
        go.Bar(
            x=[row["rfm_segment"] for row in report.segments],
            y=[row["customers"] for row in report.segments],
            marker_color=ACCENT,
            text=[row["customers"] for row in report.segments],
            textposition="outside",
        )
    )
    segments.update_yaxes(title_text="customers")
    return {
        "monthly-revenue": _layout(monthly, "Monthly revenue and orders"),
        "cancellation-rate": _layout(cancellations, "Cancellation rate (cancelled / all invoices)"),
        "top-countries": _layout(countries, f"Top {len(report.countries)} countries by revenue", 400),
        "top-products": _layout(products, f"Top {len(report.products)} products by revenue", 400),
        "rfm-segments": _layout(segments, "Customers per RFM segment"),
    }


def _when(moment: datetime | date | None) -> str:
    if moment is None:
        return "never"
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return moment.isoformat()


def _quality_panel(report: GoldReport) -> str:
    quality = report.quality
    layers = "".join(
        f"<tr><td>{html.escape(table)}</td><td class=n>{rows:,}</td></tr>" for table, rows in quality.layer_rows.items()
    )
    from include.retail.ingest.ledger import Status

    order = {status: index for index, status in enumerate(Status)}  # loaded, duplicate, rejected, failed
    by_status = sorted(quality.files.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))
    files = ", ".join(f"{count:,} {html.escape(status)}" for status, count in by_status) or "none"
    tests = "none run" if not quality.tests_run else f"{quality.tests_passed:,} of {quality.tests_run:,} passed"
    if quality.tests_passed != quality.tests_run:
        others = ", ".join(f"{n} {html.escape(s)}" for s, n in sorted(quality.tests.items()) if s != "pass")
        tests += f" ({others})"
    facts = [
        ("dbt data tests", tests),
        ("files seen", files),
        ("files in bronze now", f"{quality.current_files:,}"),
        ("rows rejected", f"{quality.rows_rejected:,} (bronze.rejected_rows)"),
        ("last file loaded", _when(quality.last_load_at)),
        ("sales through", _when(quality.data_through)),
        ("report generated", _when(report.generated_at)),
    ]
    rows = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in facts)
    return (
        '<section class="panel" id="data-quality"><h2>Data quality</h2><div class="cols">'
        f'<table class="facts">{rows}</table>'
        f'<table class="layers"><tr><th>table</th><th class=n>rows</th></tr>{layers}</table>'
        "</div></section>"
    )


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Retail gold report, {generated}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f4f6f8; color: #1d2731; }}
header {{ background: #1d2731; color: #fff; padding: 16px 24px; }}
header h1 {{ margin: 0; font-size: 20px; }} header p {{ margin: 4px 0 0; opacity: .8; }}
main {{ padding: 16px 24px; display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 16px; }}
.kpis {{ grid-column: 1 / -1; display: flex; flex-wrap: wrap; gap: 16px; }}
.kpi {{ background: #fff; border-radius: 6px; padding: 12px 16px; min-width: 150px; }}
.kpi b {{ display: block; font-size: 22px; }} .kpi span {{ color: #5b6670; }}
.panel {{ background: #fff; border-radius: 6px; padding: 8px; min-width: 0; }}
#data-quality {{ grid-column: 1 / -1; padding: 8px 16px; }} h2 {{ font-size: 16px; margin: 8px 0; }}
.cols {{ display: flex; flex-wrap: wrap; gap: 32px; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 3px 12px 3px 0; text-align: left; }}
.facts th {{ color: #5b6670; font-weight: normal; }} .n {{ text-align: right; font-variant-numeric: tabular-nums; }}
</style>
</head>
<body>
<header><h1>Retail pipeline: gold</h1><p>{span}; generated {generated}</p></header>
<main>
<section class="kpis">{kpis}</section>
{charts}
{quality}
</main>
<script type="application/json" id="gold-data">{data}</script>
</body>
</html>
"""


def render_html(report: GoldReport) -> str:
    """The report as one HTML document that needs nothing else: plotly.js is inlined once, before the charts."""
    totals = report.totals
    kpis = [
        (f"{totals['revenue']:,.2f}", "revenue"),
        (f"{totals['orders']:,}", "orders"),
        (f"{totals['customers']:,}", "customers with a sale"),
        (f"{totals['cancellation_rate']:.2%}", "of invoices cancelled"),
        (f"{totals['months']}", "months"),
    ]
    charts = []
    for index, (element_id, figure) in enumerate(figures(report).items()):
        chart = figure.to_html(
            full_html=False, include_plotlyjs=index == 0, div_id=element_id, config=PLOTLY_CONFIG, default_width="100%"
        )
        charts.append(f'<section class="panel">{chart}</section>')
    if report.monthly:
        span = f"{report.monthly[0]['month_start']:%Y-%m} to {report.monthly[-1]['month_start']:%Y-%m}"
    else:
        span = "no sales yet"
    return PAGE.format(
        generated=_when(report.generated_at),
        span=span,
        kpis="".join(f'<div class="kpi"><b>{value}</b><span>{label}</span></div>' for value, label in kpis),
        charts="\n".join(charts),
        quality=_quality_panel(report),
        # `</` would end the script element early; JSON allows `<\\/` for it.
        data=report.as_json().replace("</", "<\\/"),
    )


def embedded_data(page: str) -> dict[str, Any]:
    """The figures a rendered page embeds (``render_html``), as JSON values."""
    start = page.index('<script type="application/json" id="gold-data">')
    body = page[page.index(">", start) + 1 : page.index("</script>", start)]
    return json.loads(body)


# -- publishing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportLink:
    """Where a published report is: its dated key, the latest copy, and a presigned HTTPS link to the dated one."""

    bucket: str
    key: str
    url: str
    expires_at: str  # ISO 8601, UTC: when the presigned link stops working at the latest

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def latest_uri(self) -> str:
        return f"s3://{self.bucket}/{LATEST_KEY}"


def dated_key(generated_at: datetime) -> str:
    return f"{REPORTS_PREFIX}gold-{generated_at.astimezone(UTC):%Y-%m-%dT%H%M%SZ}.html"


def publish(s3, bucket: str, page: str, generated_at: datetime) -> str:
    """Write ``page`` under a dated key and as ``reports/latest.html`` (``s3`` is a boto3 S3 client); return the
    dated key, which later runs leave as it is."""
    key = dated_key(generated_at)
    common = {"Bucket": bucket, "Body": page.encode(), "ContentType": "text/html; charset=utf-8"}
    s3.put_object(Key=key, **common)
    s3.put_object(Key=LATEST_KEY, CacheControl="no-cache", Metadata={REPORT_KEY_METADATA: key}, **common)
    return key


def share(s3, bucket: str, key: str, *, expires_in: int = PRESIGNED_SECONDS) -> ReportLink:
    """A presigned GET link to a published report, for the summary. Made where it is sent, never kept in an
    XCom or a log: whoever holds it can read the report until it expires."""
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in)
    expires_at = (datetime.now(UTC) + timedelta(seconds=expires_in)).replace(microsecond=0)
    return ReportLink(bucket=bucket, key=key, url=url, expires_at=expires_at.isoformat())
