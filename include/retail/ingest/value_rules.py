"""What a value may be beyond its type: the plausible ranges, and the day/month order of dates written with slashes.

A value that parses is not yet a value to trust: one row dated 9999-12-31 makes a calendar of 8,000 years, a
price of 1e308 a 300-digit revenue, and ``01/12/2010`` read month-first moves December to January without a
single error. The rules are declared once here (``ValueRules``, DESIGN.md section 3), with defaults a retailer
would pick; each deployment may override them through Airflow Variables (``include.retail.ingest.tasks``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, get_args

import polars as pl

DateOrder = Literal["day_first", "month_first"]
DATE_ORDERS: tuple[str, ...] = get_args(DateOrder)

# Formats of dates written with slashes, by order; the time is optional. ISO dates (2011-12-09) and the workbook's
# date cells (read as ISO text) are never ambiguous and are not here.
SLASH_FORMATS: dict[str, tuple[str, ...]] = {
    "day_first": ("%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y"),
    "month_first": ("%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y"),
}
# How each order writes 9 December 2011, 12:50, for messages.
SLASH_EXAMPLES: dict[str, str] = {"day_first": "9/12/2011 12:50", "month_first": "12/9/2011 12:50"}
# A date written with slashes, and those that read only day-first, only month-first, or both ways (regular
# expressions without captures: polars matches them several times faster than it extracts the numbers).
_SLASH_DATE = r"^\s*[0-9]{1,2}/[0-9]{1,2}/[0-9]{4}(?:\s|$)"
_MONTH, _DAY_PAST_12 = r"(?:0?[1-9]|1[0-2])", r"(?:1[3-9]|2[0-9]|3[01])"
_READS: dict[str, str] = {
    "day_first": rf"^\s*{_DAY_PAST_12}/{_MONTH}/[0-9]{{4}}(?:\s|$)",
    "month_first": rf"^\s*{_MONTH}/{_DAY_PAST_12}/[0-9]{{4}}(?:\s|$)",
    "either": rf"^\s*{_MONTH}/{_MONTH}/[0-9]{{4}}(?:\s|$)",
}


@dataclass(frozen=True)
class ValueRules:
    """The contract's rules of what a typed value may be; a value outside them rejects its row, with a reason naming
    the column as the file writes it, the value and the bound (so that the file's threshold of rejected rows
    applies: a few such rows are set aside, many reject the file).

    Each field but ``date_orders`` is overridden by the Airflow Variable ``retail_value_rule_<field>``
    (``config.VALUE_RULE_VARIABLE_PREFIX``), ``date_orders`` by ``retail_date_order`` (``config.DATE_ORDER_VARIABLE``).
    """

    earliest_invoice_date: date = date(2000, 1, 1)
    """No InvoiceDate before this day: the real data starts in 2010; an earlier date is a typo or a placeholder."""

    invoice_days_ahead: int = 1
    """No InvoiceDate after this many days past today (UTC) when the file is read: 1 lets a shop ahead of UTC in."""

    max_abs_quantity: int = 1_000_000
    """No Quantity beyond ± this: the real data's largest is 80,995 (a mistaken order, cancelled)."""

    max_abs_unit_price: float = 1_000_000.0
    """No UnitPrice beyond ± this: the real data's largest is 38,970 (a manual adjustment)."""

    date_orders: Mapping[str, DateOrder] = field(default_factory=dict)
    """S3 key prefix -> ``day_first`` or ``month_first``: how the files uploaded there write dates with slashes
    (``{"incoming/uk/": "day_first"}``); the longest matching prefix counts. Without one a file's own dates must
    settle the order."""

    def __post_init__(self) -> None:
        wrong = {prefix: order for prefix, order in self.date_orders.items() if order not in DATE_ORDERS}
        if wrong:
            raise ValueError(f"a date order is one of {', '.join(DATE_ORDERS)}; got {wrong}")

    def latest_invoice_date(self, today: date | None = None) -> date:
        return (today or datetime.now(UTC).date()) + timedelta(days=self.invoice_days_ahead)

    def declared_date_order(self, source_name: str) -> DateOrder | None:
        """The order declared for the key ``source_name``: that of its longest matching prefix, if any."""
        matching = [prefix for prefix in self.date_orders if source_name.startswith(prefix)]
        return self.date_orders[max(matching, key=len)] if matching else None

    @classmethod
    def from_settings(cls, setting: Callable[[str], str | None], date_orders: str | None = None) -> ValueRules:
        """The rules ``setting`` (field name -> text, or None) overrides, the others at their default, and the date
        orders as JSON text (``{"incoming/uk/": "day_first"}``): settings arrive as text (Airflow Variables)."""
        overrides: dict[str, object] = {}
        for rule in fields(cls):
            if rule.default is MISSING or (value := setting(rule.name)) is None:
                continue
            kind = type(rule.default)
            overrides[rule.name] = (
                date.fromisoformat(value) if kind is date else int(float(value)) if kind is int else float(value)
            )
        if date_orders:
            try:
                declared = json.loads(date_orders)
            except json.JSONDecodeError:
                declared = None
            if not isinstance(declared, dict):
                raise ValueError(
                    f'date orders are a JSON object such as {{"incoming/uk/": "day_first"}}: {date_orders}'
                )
            overrides["date_orders"] = declared
        return cls(**overrides)

    def as_request(self) -> dict:
        """As JSON values, for the reader's child process (``from_request`` reads it back)."""
        return {
            **{rule.name: getattr(self, rule.name) for rule in fields(self)},
            "earliest_invoice_date": self.earliest_invoice_date.isoformat(),
            "date_orders": dict(self.date_orders),
        }

    @classmethod
    def from_request(cls, request: dict) -> ValueRules:
        return cls(**{**request, "earliest_invoice_date": date.fromisoformat(request["earliest_invoice_date"])})


def implausible(
    typed: Mapping[str, pl.Series], written_as: Mapping[str, str], rules: ValueRules
) -> list[tuple[pl.Series, pl.Expr]]:
    """(mask of the rows, their reason) for each typed value outside ``rules``; the reasons read the row's text."""
    latest = rules.latest_invoice_date()
    dates, quantities = typed["invoice_date"], typed["quantity"]
    prices = typed["unit_price"].cast(pl.Float64, strict=False)
    when = {0: "today", 1: "tomorrow"}.get(rules.invoice_days_ahead, f"today + {rules.invoice_days_ahead} days")
    checks = [
        (
            "invoice_date",
            dates < datetime.combine(rules.earliest_invoice_date, time()),
            f"is before {rules.earliest_invoice_date}, the earliest plausible date",
        ),
        (
            "invoice_date",
            dates >= datetime.combine(latest + timedelta(days=1), time()),
            f"is after {latest}, the latest plausible date ({when}, UTC)",
        ),
        ("quantity", quantities.abs() > rules.max_abs_quantity, _outside(rules.max_abs_quantity)),
        ("unit_price", prices.abs() > rules.max_abs_unit_price, _outside(rules.max_abs_unit_price)),
    ]
    found = []
    for column, mask, bound in checks:
        mask = mask.fill_null(False)
        if mask.any():
            found.append((mask, pl.format("{}: '{}' {}", pl.lit(written_as[column]), pl.col(column), pl.lit(bound))))
    return found


def _outside(bound: float) -> str:
    shown = f"{bound:,.0f}" if bound == int(bound) else f"{bound:,}"
    return f"is outside ±{shown}, the plausible range"


@dataclass(frozen=True)
class DateExample:
    """A date written with slashes, where the file writes it (sheet None: a CSV)."""

    sheet: str | None
    row: int
    text: str

    def where(self) -> str:
        return f"sheet {self.sheet!r} row {self.row}" if self.sheet is not None else f"row {self.row}"


@dataclass(frozen=True)
class DateEvidence:
    """What a file's dates written with slashes say of their order: the first that reads only day-first
    (13/12/2011), the first that reads only month-first (12/13/2011), the first that reads both ways (3/4/2011)."""

    day_first: DateExample | None = None
    month_first: DateExample | None = None
    either: DateExample | None = None

    def with_dates(self, text: pl.Series, rows: pl.Series, sheet: str | None = None) -> DateEvidence:
        """This evidence and that of ``text`` (a date column as written, later in the file), whose rows are
        numbered ``rows``: the first example of each kind. Only the kinds not yet found are looked for."""
        missing = [kind for kind in _READS if getattr(self, kind) is None]
        if not missing or not text.str.contains("/", literal=True).any():  # a memchr: ISO dates cost no more
            return self
        found = {}
        for kind in missing:
            hits = text.str.contains(_READS[kind]).arg_true()
            if hits.len():
                found[kind] = DateExample(sheet, rows[hits[0]], text[hits[0]])
        return replace(self, **found)

    @property
    def is_mixed(self) -> bool:
        return bool(self.day_first and self.month_first)

    @property
    def order(self) -> DateOrder | None:
        """The order the evidence settles, when it settles one and only one."""
        if bool(self.day_first) == bool(self.month_first):
            return None
        return "day_first" if self.day_first else "month_first"


def both_ways(example: DateExample) -> str:
    """How ``example`` (reading both ways) reads day-first and month-first: '3 April or 4 March 2011'."""
    first, second, year = example.text.split()[0].split("/")
    month_names = [date(2000, month, 1).strftime("%B") for month in (int(second), int(first))]
    return f"{int(first)} {month_names[0]} or {int(second)} {month_names[1]} {year}"


def writes_slash_dates(text: pl.Series) -> bool:
    """Whether the date column ``text`` holds a date written with slashes, whose order must then be settled."""
    return bool(text.str.contains("/", literal=True).any()) and bool(text.str.contains(_SLASH_DATE).any())
