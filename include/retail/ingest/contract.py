"""The data contract of a retail transactions file: which columns, under which names, typed how.

Headers are matched by name through an alias table, never by position, so later editions of the data
(``Invoice``, ``Price``, ``Customer ID``) load into the same columns. Values arrive as text (the reader
asks for strings so that nothing is guessed) and are typed here; a value that cannot be typed, or that is
typed but implausible (``value_rules``), puts its row into the rejected rows, with a reason naming the column
as the file names it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from include.retail.ingest.value_rules import (
    SLASH_EXAMPLES,
    SLASH_FORMATS,
    DateEvidence,
    DateOrder,
    ValueRules,
    both_ways,
    implausible,
)
from include.retail.platform.config import DATE_ORDER_VARIABLE

# The bronze columns, in table order.
COLUMNS: tuple[str, ...] = (
    "invoice_no",
    "stock_code",
    "description",
    "quantity",
    "invoice_date",
    "unit_price",
    "customer_id",
    "country",
)

# Header as written (normalised: lower case, letters and digits only) -> bronze column.
HEADER_ALIASES: dict[str, str] = {
    "invoiceno": "invoice_no",
    "invoice": "invoice_no",
    "invoicenumber": "invoice_no",
    "stockcode": "stock_code",
    "description": "description",
    "quantity": "quantity",
    "invoicedate": "invoice_date",
    "unitprice": "unit_price",
    "price": "unit_price",
    "customerid": "customer_id",
    "country": "country",
}

# How a reader would look for each column in a file (for error messages).
HEADINGS: dict[str, str] = {
    "invoice_no": "InvoiceNo (or Invoice)",
    "stock_code": "StockCode",
    "description": "Description",
    "quantity": "Quantity",
    "invoice_date": "InvoiceDate",
    "unit_price": "UnitPrice (or Price)",
    "customer_id": "CustomerID (or Customer ID)",
    "country": "Country",
}

# What each typed column expects, as said in rejection reasons.
EXPECTED: dict[str, str] = {
    "quantity": "a whole number",
    "invoice_date": "a date-time such as 2011-12-09 12:50:00",
    "unit_price": "a decimal number",
    "customer_id": "a whole-number customer code",
}

# Date-times as the known editions write them: the workbook's cells (read as ISO text) and the ISO exports. Dates
# written with slashes (12/1/2010 8:26) are read in the order the file settles (settle_date_order), never guessed.
DATETIME_FORMATS: tuple[str, ...] = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)

# Integers beyond this lose exactness as floats; a code this large is not a code.
_MAX_EXACT_INTEGER = 2**53


# Excel's own limit on a cell; a longer value was not written by Excel and is not a retail field.
MAX_CELL_CHARACTERS = 32_767

FORMULA_WITHOUT_RESULT = "a formula with no saved result: open and save the file in Excel, or export it as CSV"
NUL_CHARACTER = "contains a NUL character"
# Rejected rows a quarantine report shows, at most.
REPORT_SAMPLE_ROWS = 50

# PostgreSQL text (and jsonb) cannot hold NUL: a rejected row's raw values show it as this symbol.
_NUL_SHOWN_AS = "\u2400"


class FileRejected(Exception):
    """The file breaks the contract: it is quarantined whole, and its task fails without retrying.

    A plain exception, so that the contract (and the reader's child process) need no Airflow: the
    ingest task turns it into Airflow's no-retry failure.
    """

    def __init__(self, source: str, reason: str, details: dict | None = None) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason
        self.details = details or {}


def normalise_header(name: object) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower()) if name is not None else ""


@dataclass(frozen=True)
class HeaderMatch:
    """How one sheet's header meets the contract."""

    columns: dict[str, int]  # bronze column -> position in the sheet
    written_as: dict[str, str]  # bronze column -> header as the file writes it
    missing: tuple[str, ...]
    ambiguous: dict[str, list[str]]  # bronze column -> the several headers that claim it

    @property
    def is_data_sheet(self) -> bool:
        """A sheet with any contract column is meant to hold transactions (a notes sheet has none)."""
        return bool(self.columns) or bool(self.ambiguous)

    @property
    def meets_contract(self) -> bool:
        return not self.missing and not self.ambiguous

    def problem(self) -> str:
        parts = []
        if self.missing:
            wanted = ", ".join(HEADINGS[column] for column in self.missing)
            parts.append(f"missing required column(s): {wanted}")
        for column, headers in self.ambiguous.items():
            parts.append(f"several headers mean {HEADINGS[column]}: {', '.join(map(repr, headers))}")
        return "; ".join(parts)


def match_header(header: list[object]) -> HeaderMatch:
    """Map a header row to bronze columns through the alias table; extra columns are ignored."""
    claims: dict[str, list[tuple[int, str]]] = {}
    for position, name in enumerate(header):
        column = HEADER_ALIASES.get(normalise_header(name))
        if column:
            claims.setdefault(column, []).append((position, str(name)))
    columns = {column: found[0][0] for column, found in claims.items() if len(found) == 1}
    written_as = {column: found[0][1] for column, found in claims.items() if len(found) == 1}
    ambiguous = {column: [name for _, name in found] for column, found in claims.items() if len(found) > 1}
    missing = tuple(column for column in COLUMNS if column not in claims)
    return HeaderMatch(columns, written_as, missing, ambiguous)


@dataclass(frozen=True)
class TypedSheet:
    """One sheet (or the CSV) after typing: what bronze takes, and what it cannot."""

    name: str | None  # None for a CSV
    rows: pl.DataFrame  # COLUMNS typed, plus source_row
    rejected: pl.DataFrame  # source_row, reason, raw_values (JSON text of the row as written)


def _parse(text: pl.Series, strict: Callable[[pl.Series], pl.Series], lenient: Callable[[pl.Series], pl.Series]):
    """Type ``text`` with the fast ``strict`` parser; retry only what it fails on, trimmed, with ``lenient``.

    Almost every value passes the strict parser, so the costly rules run on a handful of values.
    Returns the typed values and a mask of the values that are neither blank nor typeable.
    """
    typed = strict(text)
    retry = (typed.is_null() & text.is_not_null()).arg_true()
    untypeable = pl.repeat(False, text.len(), eager=True)
    if retry.len():
        trimmed = text.gather(retry).str.strip_chars()
        second = lenient(trimmed).cast(typed.dtype)
        typed = typed.scatter(retry, second)
        untypeable = untypeable.scatter(retry.filter(second.is_null() & (trimmed != "")), True)
    return typed, untypeable


def _whole_numbers(text: pl.Series) -> pl.Series:
    """Integers as written ("6") or as a spreadsheet float ("17850.0"); anything else is null."""
    as_float = text.cast(pl.Float64, strict=False)
    exact = as_float.is_finite() & (as_float == as_float.round(0)) & (as_float.abs() < _MAX_EXACT_INTEGER)
    return pl.select(pl.when(exact).then(as_float).cast(pl.Int64)).to_series()


def _decimals(text: pl.Series) -> pl.Series:
    """A finite decimal number, kept as the text written so that bronze stores it exactly."""
    return pl.select(pl.when(text.cast(pl.Float64, strict=False).is_finite()).then(text)).to_series()


def _datetimes(formats: tuple[str, ...]) -> Callable[[pl.Series], pl.Series]:
    """A parser trying ``formats`` in turn, each on the values the earlier ones left: a file of slash dates pays
    for its own format, not for every format."""

    def parse(text: pl.Series) -> pl.Series:
        typed = pl.repeat(None, text.len(), dtype=pl.Datetime("us"), eager=True).alias(text.name)
        left = pl.int_range(text.len(), eager=True)
        for fmt in formats:
            parsed = text.gather(left).str.to_datetime(fmt, strict=False, time_unit="us")
            typed = typed.scatter(left, parsed)
            left = left.filter(parsed.is_null())
            if not left.len():
                break
        return typed

    return parse


def _parsers(date_order: DateOrder | None) -> dict[str, tuple[Callable[[pl.Series], pl.Series], ...]]:
    """Each typed column's (strict, lenient) parsers; slash dates are read in ``date_order`` only, and a file that
    writes them is parsed in their format first."""
    date_formats = (*SLASH_FORMATS[date_order], *DATETIME_FORMATS) if date_order else DATETIME_FORMATS
    return {
        "quantity": (lambda text: text.str.to_integer(strict=False), _whole_numbers),
        "customer_id": (lambda text: text.str.to_integer(strict=False), _whole_numbers),
        "unit_price": (_decimals, _decimals),
        "invoice_date": (
            lambda text: text.str.to_datetime(date_formats[0], strict=False, time_unit="us"),
            _datetimes(date_formats),  # on the values the strict parser failed on, trimmed
        ),
    }


def _expected(column: str, date_order: DateOrder | None) -> str:
    if column == "invoice_date" and date_order:
        order = date_order.replace("_", " ")
        return f"{EXPECTED[column]} or, as this file writes dates, {SLASH_EXAMPLES[date_order]} ({order})"
    return EXPECTED[column]


def settle_date_order(
    evidence: DateEvidence, declared: DateOrder | None, source_name: str, heading: str, judged_on: str = "the file"
) -> DateOrder | None:
    """The order in which to read the file's dates written with slashes: the ``declared`` one, else the one its own
    ``evidence`` (from ``judged_on``) settles; None when it has no such date. Rejects a file whose dates follow both
    orders, and one whose every such date reads both ways: that order is never guessed."""
    if declared or evidence.order:
        return declared or evidence.order
    if evidence.day_first and evidence.month_first:
        day, month = evidence.day_first, evidence.month_first
        raise FileRejected(
            source_name,
            f"{heading}: its dates follow both day/month orders ({day.where()}: '{day.text}' reads only day-first, "
            f"{month.where()}: '{month.text}' only month-first), so none can be trusted: write every date in one "
            "order, best as 2011-12-09 12:50:00",
        )
    if evidence.either:
        either = evidence.either
        folder = source_name.rpartition("/")[0] + "/"
        raise FileRejected(
            source_name,
            f"{heading}: the day/month order of its dates cannot be told from {judged_on}: every date written with "
            f"slashes reads both ways ({either.where()}: '{either.text}' is {both_ways(either)}); declare the order "
            f"of the files uploaded to {folder} in the Airflow Variable {DATE_ORDER_VARIABLE}, e.g. "
            f'{{"{folder}": "day_first"}} (or "month_first"), or write the dates as 2011-12-09 12:50:00',
        )
    return None


def type_rows(
    raw: pl.DataFrame,
    written_as: dict[str, str],
    unsaved_formulas: dict[str, list[int]] | None = None,
    *,
    sheet_name: str | None = None,
    row_faults: pl.DataFrame | None = None,
    date_order: DateOrder | None = None,
    rules: ValueRules | None = None,
) -> TypedSheet:
    """Type the text columns (named as bronze names them, plus source_row) of the sheet ``sheet_name``.

    Text columns are kept exactly as written, spaces included: bronze cleans nothing. A blank
    value is a null, which is a value; only a non-blank value that cannot be typed rejects its row,
    as does a NUL character (PostgreSQL cannot store it), a cell of ``unsaved_formulas`` (bronze
    column -> source rows of formula cells with no saved result, which read as blank), a typed value
    outside ``rules`` (the defaults when None) and a row of ``row_faults`` (source_row, reason: what the
    reader found wrong with the row, e.g. a CSV line shorter than its header). Dates written with slashes
    are read in ``date_order``, which the reader settles for the whole file; without one they cannot be typed.
    """
    # (mask of the rows concerned, reason), in column order; several may hit one row.
    problems: list[tuple[pl.Series, pl.Expr | pl.Series]] = []
    if row_faults is not None and row_faults.height:
        reasons = raw["source_row"].replace_strict(
            row_faults["source_row"], row_faults["reason"], default=None, return_dtype=pl.String
        )
        problems.append((reasons.is_not_null(), reasons))
    typed_columns = {}
    parsers = _parsers(date_order)
    nul = {column: raw[column].str.contains("\x00", literal=True).fill_null(False) for column in COLUMNS}
    for column in COLUMNS:
        heading = written_as[column]
        if nul[column].any():
            problems.append((nul[column], pl.lit(f"{heading}: {NUL_CHARACTER}")))
        if unsaved_formulas and unsaved_formulas.get(column):
            formula = raw["source_row"].is_in(unsaved_formulas[column])
            problems.append((formula, pl.lit(f"{heading}: {FORMULA_WITHOUT_RESULT}")))
        if column in parsers:
            strict, lenient = parsers[column]
            typed_columns[column], untypeable = _parse(raw[column], strict, lenient)
            if untypeable.any():
                untypeable = untypeable & ~nul[column]  # said once, as a NUL
                expected = _expected(column, date_order)
                reason = pl.format("{}: expected {}, got '{}'", pl.lit(heading), pl.lit(expected), pl.col(column))
                problems.append((untypeable, reason))
    problems += implausible(typed_columns, written_as, rules or ValueRules())
    typed = raw.with_columns(**typed_columns)
    if not problems:
        return TypedSheet(sheet_name, rows=typed, rejected=_no_rejections())
    bad = pl.select(pl.any_horizontal(mask for mask, _ in problems)).to_series()
    if not bad.any():
        return TypedSheet(sheet_name, rows=typed, rejected=_no_rejections())
    # Reasons are spelled out for the few bad rows only.
    failures = [
        pl.when(pl.lit(mask.filter(bad))).then(reason if isinstance(reason, pl.Expr) else pl.lit(reason.filter(bad)))
        for mask, reason in problems
    ]
    # One chunk per column: polars 1.43 panics ("i < self.len()") formatting a reason over columns filtered
    # into different chunkings, as a CSV parsed by several threads gives (a file with ~1,000 bad dates).
    rejected = (
        raw.filter(bad)
        .rechunk()
        .select(
            pl.col("source_row"),
            pl.concat_str(failures, separator="; ", ignore_nulls=True).alias("reason"),
            pl.struct(
                pl.col(column).str.replace_all("\x00", _NUL_SHOWN_AS, literal=True).alias(written_as[column])
                for column in COLUMNS
            )
            .struct.json_encode()
            .alias("raw_values"),
        )
    )
    return TypedSheet(sheet_name, rows=typed.filter(~bad), rejected=rejected)


def _no_rejections() -> pl.DataFrame:
    return pl.DataFrame(schema={"source_row": pl.Int32, "reason": pl.String, "raw_values": pl.String})


def check_rejected_share(source_name: str, sheets: list[TypedSheet], row_count: int, max_fraction: float) -> None:
    """Reject the whole file when more than ``max_fraction`` of its ``row_count`` rows cannot be typed: so many
    bad rows mean a file the contract misreads (a shifted column, a foreign export), not a few typos."""
    check_rejected_count(source_name, sum(sheet.rejected.height for sheet in sheets), sheets, row_count, max_fraction)


def check_rejected_count(
    source_name: str, rejected: int, sample: list[TypedSheet], row_count: int, max_fraction: float
) -> None:
    """``check_rejected_share`` for a file read in batches: ``rejected`` rows in all, ``sample`` the first of
    them by sheet (at least REPORT_SAMPLE_ROWS of each, or all)."""
    if not rejected or rejected <= max_fraction * row_count:
        return
    first = next(sheet for sheet in sample if sheet.rejected.height)
    example = first.rejected.row(0, named=True)
    where = f"sheet {first.name!r} " if first.name else ""
    raise FileRejected(
        source_name,
        f"{rejected} of {row_count} rows ({rejected / row_count:.1%}) have values that cannot be typed, more than "
        f"the {max_fraction:.1%} allowed; first: {where}row {example['source_row']}: {example['reason']}",
        details={
            "rejected_rows": [
                {"sheet": sheet.name, **row}
                for sheet in sample
                for row in sheet.rejected.head(REPORT_SAMPLE_ROWS).to_dicts()
            ][:REPORT_SAMPLE_ROWS]
        },
    )
