"""The gold report in a real browser (issue 22): text from a file is shown as that text, never run or rendered.

Plotly reads labels as pseudo-HTML (``<a href>`` a live link, ``<b>`` bold) and HTML's script parsing has its
traps (``<!--<script`` in the embedded JSON), so reading the page's source is not enough: the page is opened in
headless Chromium and the DOM that plotly.js and the parser built is read, the charts' SVG included. It needs
only the render function and Chromium (a few seconds); no stack.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from include.retail.transform.gold_report import GoldReport
from include.retail.transform.gold_report_page import embedded_data, render_html
from tests.chromium import CHROMIUM, CHROMIUM_ARGS
from tests.unit.test_gold_report import MONTHLY, QUALITY, REPORT

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium binary at {CHROMIUM} (apt-get install -y chromium)"
)
TIMEOUT_MS = 60_000  # the page inlines plotly.js (~4.9 MB); a busy machine parses it slowly

# What a file could write in a Description, Country or StockCode. Each would be a link, bold, a line break,
# styled, math, or end a script element early if the page took it for markup; each must show as written.
HOSTILE = (
    '<a href="https://example.com">x</a>',
    "<b>bold</b>",
    "<!--<script",
    "</script><script>window.__pwned = 1; alert(1)</script>",
    '<img src=x onerror="window.__pwned = 1; alert(1)">',
    '<span style="fill:red">red</span><br>next <i>line</i> <sup>2</sup>',
    "&lt;b&gt;an entity, written out&lt;/b&gt; R&amp;D &#60;a&#62; & more",
    "$x^2$ costs $5",
)
HOSTILE_REPORT = GoldReport(
    generated_at=REPORT.generated_at,
    monthly=MONTHLY,
    countries=[
        {"country": text, "revenue": Decimal(1000 - 100 * i), "orders": 1, "customers": 1, "revenue_share": 0.1}
        for i, text in enumerate(HOSTILE)
    ],
    products=[
        {
            "stock_code": f"<u>{i}</u>",
            "description": text,
            "revenue": Decimal(1000 - 100 * i),
            "units_sold": 1,
            "orders": 1,
        }
        for i, text in enumerate(HOSTILE)
    ],
    segments=[{"rfm_segment": text, "customers": 10 - i, "monetary": Decimal(1)} for i, text in enumerate(HOSTILE)],
    quality=QUALITY,
)
# Each chart's categories as the figure lists them (horizontal bars bottom-up), and the axis that shows them.
LABELS = {
    "top-countries": ("ytick", [row["country"] for row in reversed(HOSTILE_REPORT.countries)]),
    "top-products": (
        "ytick",
        [f"{row['description']} · {row['stock_code']}" for row in reversed(HOSTILE_REPORT.products)],
    ),
    "rfm-segments": ("xtick", [row["rfm_segment"] for row in HOSTILE_REPORT.segments]),
}


@pytest.fixture(scope="module")
def page_source() -> str:
    return render_html(HOSTILE_REPORT)


@pytest.fixture(scope="module")
def browser_page(page_source: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The report opened from a file in headless Chromium once plotly has drawn it, with what the browser saw:
    dialogs opened, uncaught errors and every request made (a data ``<img>`` would fetch ``x``)."""
    from playwright.sync_api import sync_playwright

    path = tmp_path_factory.mktemp("report") / "gold.html"
    path.write_text(page_source)
    seen: dict[str, list[str]] = {"dialogs": [], "errors": [], "requests": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.on("dialog", lambda dialog: (seen["dialogs"].append(dialog.message), dialog.dismiss()))
            page.on("pageerror", lambda error: seen["errors"].append(str(error)))
            page.on("request", lambda request: seen["requests"].append(request.url))
            page.goto(path.as_uri(), wait_until="load")
            page.wait_for_function(
                "ids => ids.every(id => document.querySelector(`#${id} .xtick text`))", arg=list(LABELS)
            )
            yield {"page": page, "url": path.as_uri(), **seen}
        finally:
            browser.close()


def test_no_script_from_the_data_runs_and_nothing_is_fetched(browser_page: dict[str, Any]) -> None:
    page = browser_page["page"]
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert browser_page["dialogs"] == []
    assert browser_page["errors"] == []
    assert browser_page["requests"] == [browser_page["url"]]
    assert page.evaluate("document.querySelectorAll('img, [onerror]').length") == 0
    assert page.evaluate("document.querySelectorAll('.js-plotly-plot .main-svg').length") >= 5


def test_no_link_and_no_styling_is_made_from_the_data(browser_page: dict[str, Any]) -> None:
    """Anywhere in the document, the charts' SVG included: no ``<a>`` in SVG, no link or handler attribute
    (``href``, ``xlink:href``, ``src``, ``on…``) made from the data, no bold or styled ``tspan``, and the only
    ``<b>`` elements are the page's own KPI figures."""
    page = browser_page["page"]
    assert page.evaluate("document.querySelectorAll('svg a').length") == 0
    linking = page.evaluate(
        """[...document.querySelectorAll('*')].flatMap(element => [...element.attributes]
            .filter(a => /href$|^src$|^on/i.test(a.name) && /example\\.com|pwned/.test(a.value))
            .map(a => `${element.tagName} ${a.name}=${a.value}`))"""
    )
    assert linking == []
    assert page.evaluate("document.querySelectorAll('svg tspan[style]').length") == 0
    assert page.evaluate("[...document.querySelectorAll('b')].every(b => b.parentElement.className === 'kpi')")
    assert page.evaluate("document.querySelectorAll('b').length") == 5


@pytest.mark.parametrize("chart", list(LABELS))
def test_each_label_is_the_datas_text_exactly(browser_page: dict[str, Any], chart: str) -> None:
    """Every category label: one SVG text node (no tspan a tag, a ``<br>`` or an entity made) whose text is
    what the file wrote, character for character."""
    axis, expected = LABELS[chart]
    labels = browser_page["page"].evaluate(
        "([chart, axis]) => [...document.querySelectorAll(`#${chart} .${axis} text`)]"
        ".map(text => ({text: text.textContent, children: text.childElementCount}))",
        [chart, axis],
    )
    assert [label["text"] for label in labels] == expected
    assert all(label["children"] == 0 for label in labels)


@pytest.mark.parametrize("chart", list(LABELS))
def test_each_hover_label_shows_the_datas_text(browser_page: dict[str, Any], chart: str) -> None:
    """The mouse over each bar, as a reader would: the hover label holds the text as written, no link."""
    page = browser_page["page"]
    _, expected = LABELS[chart]
    bars = page.locator(f"#{chart} .bars .point path")
    assert bars.count() == len(expected)
    horizontal = chart != "rfm-segments"
    for index, label in enumerate(expected):
        bar = bars.nth(index)
        bar.scroll_into_view_if_needed()
        box = bar.bounding_box()
        assert box is not None
        # At the bar's value end: a log axis draws horizontal bars from far left of the plot area.
        if horizontal:
            page.mouse.move(box["x"] + box["width"] - 3, box["y"] + box["height"] / 2)
        else:
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 3)
        page.wait_for_function(
            "([chart, label]) => document.querySelector(`#${chart} .hoverlayer`).textContent.includes(label)",
            arg=[chart, label],
            timeout=15_000,
        )
        hover = page.locator(f"#{chart} .hoverlayer")
        assert hover.locator("a, tspan[style]").count() == 0, label
    page.mouse.move(0, 0)


def test_the_embedded_json_reads_back_as_the_rows_exactly(browser_page: dict[str, Any], page_source: str) -> None:
    """In the browser (the script element ends where it should) and in Python (``embedded_data``)."""
    rows = json.loads(HOSTILE_REPORT.as_json())
    in_browser = browser_page["page"].evaluate("JSON.parse(document.getElementById('gold-data').textContent)")
    assert in_browser == rows
    assert embedded_data(page_source) == rows
    assert [row["description"] for row in rows["products"]] == list(HOSTILE)
    assert browser_page["page"].evaluate("document.body.lastElementChild.id") == "gold-data"
