"""The gold report as one self-contained HTML page: KPIs, plotly charts and the data-quality panel.

Charts are plotly's, with plotly.js inlined once, so the page opens offline and straight from the bucket: no
CDN, no server. The figures it shows are also embedded as JSON (``<script id="gold-data">``), so a test reads
them back. plotly is imported inside the functions so that parsing the DAG does not pay for it.

Nothing a file says is markup here: a country, description, stock code or segment is drawn as the text it is
(``plotly_text``), the HTML around the charts escapes what it shows, and the embedded JSON cannot end or
re-open its script element (``script_json``).
"""

from __future__ import annotations

import html
import json
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from include.retail.transform.gold_report import GoldReport

# Plotly's mode bar without its logo; charts follow the page's width; no text typeset as LaTeX (`$…$`): the
# page loads no MathJax, and a label from a file is never to become math.
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "typesetMath": False}
ACCENT, SECOND = "#1f6f8b", "#e07a1f"


def plotly_text(text: str) -> str:
    """``text`` as plotly draws it literally, for every label or hover text that comes from the data.

    Plotly reads its text as pseudo-HTML: ``<b>``, ``<i>``, ``<u>``, ``<s>``, ``<sup>``, ``<sub>``, ``<em>``,
    ``<span style>`` and ``<br>`` style or break it, ``<a href>`` becomes a live link, and entities are decoded.
    It decodes entities only within the text between tags, into text nodes (plotly.js ``buildSVGText`` and
    ``convertEntities``, src/lib/svg_text_utils.js), so ``&``, ``<`` and ``>`` written as ``&amp;``, ``&lt;``
    and ``&gt;`` are shown as those characters and nothing else: ordinary text looks as before."""
    return html.escape(text, quote=False)


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
            y=[plotly_text(row["country"]) for row in reversed(report.countries)],
            orientation="h",
            marker_color=ACCENT,
        )
    )
    countries.update_xaxes(type="log", title_text="revenue (log scale)")
    # Labels are categories whatever they look like: a country written "2011-01" or "1e3" is not a date or number.
    countries.update_yaxes(type="category")
    products = go.Figure(
        go.Bar(
            x=[float(row["revenue"]) for row in reversed(report.products)],
            y=[
                plotly_text(f"{row['description'] or '(no description)'} · {row['stock_code']}")
                for row in reversed(report.products)
            ],
            orientation="h",
            marker_color=ACCENT,
        )
    )
    products.update_xaxes(title_text="revenue")
    products.update_yaxes(type="category")
    segments = go.Figure(
        go.Bar(
            x=[plotly_text(row["rfm_segment"]) for row in report.segments],
            y=[row["customers"] for row in report.segments],
            marker_color=ACCENT,
            text=[row["customers"] for row in report.segments],
            textposition="outside",
        )
    )
    segments.update_xaxes(type="category")
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
        data=script_json(report.as_json()),
    )


def script_json(text: str) -> str:
    """JSON text safe inside a ``<script>`` element: every ``<``, ``>`` and ``&`` written as its JSON escape.

    Inside a script element ``</script`` ends it, and ``<!--`` followed by ``<script`` makes the parser skip the
    next ``</script>`` (HTML's "script data double escaped" state), so a description ``<!--<script`` would run
    the data on into the rest of the page. JSON has no ``<`` outside its strings, and ``\\u003c`` in a string
    reads back as ``<``: ``json.loads`` returns exactly the values written."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def embedded_data(page: str) -> dict[str, Any]:
    """The figures a rendered page embeds (``render_html``), as JSON values."""
    start = page.index('<script type="application/json" id="gold-data">')
    body = page[page.index(">", start) + 1 : page.index("</script>", start)]
    return json.loads(body)
