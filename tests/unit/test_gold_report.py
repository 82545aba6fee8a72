"""The gold report's rendering: one self-contained page whose charts and embedded figures are gold's rows."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from include.retail.transform.dbt_results import DbtRun
from include.retail.transform.gold_report import GoldReport, Quality
from include.retail.transform.gold_report_page import embedded_data, figures, plotly_text, render_html, script_json
from include.retail.transform.gold_report_publish import LATEST_KEY, ReportLink, dated_key
from include.retail.transform.layers import Revenue
from include.retail.transform.summary import transform_summary

MONTHLY = [
    {
        "month_start": date(2011, 1, 1),
        "revenue": Decimal("1000.50"),
        "orders": 10,
        "cancelled_orders": 2,
        "cancellation_rate": Decimal("0.166667"),
        "customers": 7,
        "units": 120,
    },
    {
        "month_start": date(2011, 2, 1),
        "revenue": Decimal("2000.25"),
        "orders": 30,
        "cancelled_orders": 0,
        "cancellation_rate": Decimal("0"),
        "customers": 12,
        "units": 300,
    },
]
COUNTRIES = [
    {"country": "United Kingdom", "revenue": Decimal("2500.00"), "orders": 35, "customers": 15, "revenue_share": 0.8},
    {"country": "EIRE", "revenue": Decimal("500.75"), "orders": 5, "customers": 4, "revenue_share": 0.2},
]
PRODUCTS = [
    {"stock_code": "22423", "description": "REGENCY CAKESTAND 3 TIER", "revenue": Decimal("900"), "units_sold": 70,
     "orders": 20},
    {"stock_code": "85123A", "description": None, "revenue": Decimal("100.10"), "units_sold": 40, "orders": 9},
]  # fmt: skip
SEGMENTS = [
    {"rfm_segment": "hibernating", "customers": 9, "monetary": Decimal("800")},
    {"rfm_segment": "champions", "customers": 3, "monetary": Decimal("2200.75")},
]
QUALITY = Quality(
    layer_rows={"bronze.retail_transactions_current": 1234, "gold.monthly_sales_summary": 2},
    files={"loaded": 2, "duplicate": 1, "rejected": 1},
    current_files=2,
    rows_rejected=3,
    tests={"pass": 131, "warn": 2},
    last_load_at=datetime(2026, 11, 30, 12, 0, tzinfo=UTC),
    data_through=date(2011, 2, 28),
)
REPORT = GoldReport(
    generated_at=datetime(2026, 11, 30, 12, 5, 7, tzinfo=UTC),
    monthly=MONTHLY,
    countries=COUNTRIES,
    products=PRODUCTS,
    segments=SEGMENTS,
    quality=QUALITY,
)


@pytest.fixture(scope="module")
def page() -> str:
    return render_html(REPORT)


def test_the_page_needs_nothing_from_the_network(page: str) -> None:
    """No CDN: no external script, stylesheet or font; plotly.js inlined exactly once for all charts."""
    assert not re.search(r"<script[^>]+\bsrc=", page)
    assert not re.search(r"<link[^>]+\bhref=", page)
    assert "@import" not in page
    assert page.count("window.PlotlyConfig") == 1  # plotly.js's bundle preamble
    assert page.count("Plotly.newPlot(") == 5


def test_the_embedded_figures_are_the_reports_rows_exactly(page: str) -> None:
    data = embedded_data(page)
    assert [(row["month_start"], row["revenue"], row["orders"]) for row in data["monthly"]] == [
        ("2011-01-01", "1000.50", 10),
        ("2011-02-01", "2000.25", 30),
    ]
    assert data["totals"]["revenue"] == "3000.75"
    assert data["totals"]["orders"] == 40
    assert data["totals"]["customers"] == 12
    assert Decimal(data["totals"]["cancellation_rate"]) == Decimal(2) / 42
    assert [row["country"] for row in data["countries"]] == ["United Kingdom", "EIRE"]
    assert data["quality"]["tests"] == {"pass": 131, "warn": 2}
    assert data["quality"]["last_load_at"] == "2026-11-30T12:00:00+00:00"


def test_the_headline_and_quality_panel_show_the_figures(page: str) -> None:
    for text in (
        "3,000.75",
        "2011-01 to 2011-02",
        "4.76%",  # 2 cancelled of 42 invoices
        "131 of 133 passed (2 warn)",
        "2 loaded, 1 duplicate, 1 rejected",
        "3 (bronze.rejected_rows)",
        "2026-11-30 12:00 UTC",
        "2011-02-28",
        "bronze.retail_transactions_current</td><td class=n>1,234",
    ):
        assert text in page, text


def test_the_charts_draw_gold_rows_largest_first() -> None:
    charts = figures(REPORT)
    revenue, orders = charts["monthly-revenue"].data
    assert list(revenue.x) == ["2011-01", "2011-02"]
    assert list(revenue.y) == [1000.5, 2000.25]
    assert list(orders.y) == [10, 30]
    assert list(charts["cancellation-rate"].data[0].y) == [0.166667, 0.0]
    # Horizontal bars are drawn bottom-up: the largest is last in the trace, so it shows on top.
    assert list(charts["top-countries"].data[0].y) == ["EIRE", "United Kingdom"]
    assert list(charts["top-products"].data[0].y) == ["(no description) · 85123A", "REGENCY CAKESTAND 3 TIER · 22423"]
    assert list(charts["rfm-segments"].data[0].y) == [9, 3]


def test_an_empty_gold_still_renders() -> None:
    empty = GoldReport(
        generated_at=REPORT.generated_at,
        monthly=[],
        countries=[],
        products=[],
        segments=[],
        quality=Quality({}, {}, 0, 0, {}, None, None),
    )
    page = render_html(empty)
    assert "no sales yet" in page
    assert "none run" in page
    assert embedded_data(page)["totals"]["revenue"] == "0"


def test_a_closing_script_tag_in_the_data_cannot_end_the_data_early() -> None:
    hostile = GoldReport(
        generated_at=REPORT.generated_at,
        monthly=MONTHLY,
        countries=COUNTRIES,
        products=[{**PRODUCTS[0], "description": "</script><script>alert(1)</script>"}],
        segments=SEGMENTS,
        quality=QUALITY,
    )
    page = render_html(hostile)
    assert embedded_data(page)["products"][0]["description"] == "</script><script>alert(1)</script>"
    assert "</script><script>alert(1)" not in page  # escaped in the embedded data and in plotly's


@pytest.mark.parametrize(
    "text", ["<!--<script", "</script><script>alert(1)</script>", "a & b > c", "<\\/ \\u003c", "é\u2028\x00"]
)
def test_the_embedded_json_holds_no_markup_and_reads_back_exactly(text: str) -> None:
    """Every ``<`` (also ``>``, ``&``) is a JSON escape, so ``<!--<script`` cannot swallow the script's end."""
    hostile = GoldReport(
        generated_at=REPORT.generated_at,
        monthly=MONTHLY,
        countries=[{**COUNTRIES[0], "country": text}],
        products=[{**PRODUCTS[0], "description": text, "stock_code": text}],
        segments=[{**SEGMENTS[0], "rfm_segment": text}],
        quality=QUALITY,
    )
    page = render_html(hostile)
    start = page.index('<script type="application/json" id="gold-data">') + len('<script type="application/json" ')
    block = page[start : page.index("</script>", start)]
    assert not set("<>&") & set(block.removeprefix('id="gold-data">'))
    assert embedded_data(page) == json.loads(hostile.as_json())
    assert json.loads(script_json(json.dumps(text))) == text


def test_labels_from_the_data_are_plotly_text_not_markup() -> None:
    """Plotly decodes ``&amp;``, ``&lt;`` and ``&gt;`` in its text into those characters (and nothing else):
    the labels carry them so, and an axis of labels is a category axis whatever the labels look like."""
    assert (
        plotly_text('<a href="https://x">R&D</a> > &lt;') == '&lt;a href="https://x"&gt;R&amp;D&lt;/a&gt; &gt; &amp;lt;'
    )
    assert plotly_text("REGENCY CAKESTAND 3 TIER · 22423 $5 “quoted”") == "REGENCY CAKESTAND 3 TIER · 22423 $5 “quoted”"
    hostile = GoldReport(
        generated_at=REPORT.generated_at,
        monthly=MONTHLY,
        countries=[{**COUNTRIES[0], "country": "<b>bold</b>"}, {**COUNTRIES[1], "country": "2011-01"}],
        products=[{**PRODUCTS[0], "description": "<br>R&D", "stock_code": "<i>1</i>"}],
        segments=[{**SEGMENTS[0], "rfm_segment": "<sup>1</sup>"}],
        quality=QUALITY,
    )
    charts = figures(hostile)
    assert list(charts["top-countries"].data[0].y) == ["2011-01", "&lt;b&gt;bold&lt;/b&gt;"]
    assert list(charts["top-products"].data[0].y) == ["&lt;br&gt;R&amp;D · &lt;i&gt;1&lt;/i&gt;"]
    assert list(charts["rfm-segments"].data[0].x) == ["&lt;sup&gt;1&lt;/sup&gt;"]
    assert charts["top-countries"].layout.yaxis.type == "category"
    assert charts["top-products"].layout.yaxis.type == "category"
    assert charts["rfm-segments"].layout.xaxis.type == "category"


def test_the_dated_key_sorts_by_time_and_the_summary_links_the_report() -> None:
    assert dated_key(REPORT.generated_at) == "reports/gold-2026-11-30T120507Z.html"
    assert LATEST_KEY == "reports/latest.html"
    link = ReportLink(
        bucket="retail-landing",
        key=dated_key(REPORT.generated_at),
        url="https://retail-landing.s3.amazonaws.com/reports/gold-2026-11-30T120507Z.html?X-Amz-Signature=abc",
        expires_at="2026-12-07T12:05:07+00:00",
    )
    revenue = Revenue(total=Decimal("3000.75"), months=2, first_month=date(2011, 1, 1), last_month=date(2011, 2, 1))
    _, message = transform_summary(revenue, {}, DbtRun({}), run_id="run-1", seconds=10, report=link)
    assert "Gold report: s3://retail-landing/reports/gold-2026-11-30T120507Z.html" in message
    assert "(latest: s3://retail-landing/reports/latest.html)" in message
    assert f"  {link.url}\n" in message
    assert "valid until 2026-12-07 12:05 UTC at the latest" in message
