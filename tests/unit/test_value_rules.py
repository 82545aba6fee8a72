"""Issue 22: values that parse are not yet values to trust. Plausible ranges, and the day/month order of dates
written with slashes settled by the file's own evidence or a declared order, never guessed."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from include.retail.ingest.contract import FileRejected, check_rejected_share, settle_date_order, type_rows
from include.retail.ingest.value_rules import DateEvidence, DateExample, ValueRules
from tests.unit.test_contract import WRITTEN_AS, raw_rows


def test_the_defaults_are_a_retailers() -> None:
    rules = ValueRules()
    assert rules.earliest_invoice_date == date(2000, 1, 1)
    assert rules.latest_invoice_date(date(2011, 12, 9)) == date(2011, 12, 10)  # tomorrow
    assert (rules.max_abs_quantity, rules.max_abs_unit_price) == (1_000_000, 1_000_000)
    assert rules.date_orders == {}


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        (
            "invoice_date",
            "9999-12-31",
            "InvoiceDate: '9999-12-31' is after {latest}, the latest plausible date (tomorrow, UTC)",
        ),
        (
            "invoice_date",
            "1999-12-31 23:59:59",
            "InvoiceDate: '1999-12-31 23:59:59' is before 2000-01-01, the earliest plausible date",
        ),
        ("quantity", "1000001", "Quantity: '1000001' is outside ±1,000,000, the plausible range"),
        ("quantity", "-80995000", "Quantity: '-80995000' is outside ±1,000,000, the plausible range"),
        ("unit_price", "1e308", "UnitPrice: '1e308' is outside ±1,000,000, the plausible range"),
        ("unit_price", "-1000000.01", "UnitPrice: '-1000000.01' is outside ±1,000,000, the plausible range"),
    ],
)
def test_an_implausible_value_rejects_its_row_naming_column_value_and_bound(
    column: str, value: str, reason: str
) -> None:
    typed = type_rows(raw_rows({}, {column: value}), WRITTEN_AS)

    latest = datetime.now(UTC).date() + timedelta(days=1)
    assert typed.rows["source_row"].to_list() == [2]
    assert typed.rejected.select("source_row", "reason").rows() == [(3, reason.format(latest=latest))]


def test_the_bounds_themselves_are_plausible() -> None:
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    typed = type_rows(
        raw_rows(
            {"invoice_date": "2000-01-01 00:00:00", "quantity": "1000000", "unit_price": "-1000000"},
            {"invoice_date": f"{tomorrow} 23:59:59", "quantity": "-1000000", "unit_price": "1000000.00"},
        ),
        WRITTEN_AS,
    )
    assert typed.rejected.height == 0


def test_the_day_after_tomorrow_is_not_plausible() -> None:
    after_tomorrow = datetime.now(UTC).date() + timedelta(days=2)
    typed = type_rows(raw_rows({"invoice_date": f"{after_tomorrow} 00:00:00"}), WRITTEN_AS)
    assert typed.rejected["reason"][0].endswith("the latest plausible date (tomorrow, UTC)")


def test_rules_are_the_deployments_to_set() -> None:
    rules = ValueRules(max_abs_quantity=10, earliest_invoice_date=date(2010, 12, 1), invoice_days_ahead=0)
    typed = type_rows(
        raw_rows({"quantity": "-11"}, {"invoice_date": "2010-11-30 23:59:59"}, {"quantity": "10"}),
        WRITTEN_AS,
        rules=rules,
    )
    assert typed.rows["source_row"].to_list() == [4]
    assert typed.rejected["reason"].to_list() == [
        "Quantity: '-11' is outside ±10, the plausible range",
        "InvoiceDate: '2010-11-30 23:59:59' is before 2010-12-01, the earliest plausible date",
    ]


def test_many_implausible_rows_reject_the_file_as_untypeable_ones_do() -> None:
    """One row dated 9999-12-31 among 1,001 is set aside (0.1%); eleven are more than the 1% allowed."""
    one = type_rows(raw_rows(*[{}] * 1_000, {"invoice_date": "9999-12-31"}), WRITTEN_AS)
    check_rejected_share("incoming/a.csv", [one], 1_001, max_fraction=0.01)
    assert one.rows.height == 1_000

    eleven = type_rows(raw_rows(*[{}] * 990, *[{"unit_price": "1e308"}] * 11), WRITTEN_AS)
    with pytest.raises(FileRejected) as rejection:
        check_rejected_share("incoming/a.csv", [eleven], 1_001, max_fraction=0.01)
    assert "first: row 992: UnitPrice: '1e308' is outside ±1,000,000" in rejection.value.reason


def test_rules_from_settings_as_airflow_variables_give_them() -> None:
    settings = {"max_abs_quantity": "5000000", "max_abs_unit_price": "2500.5", "earliest_invoice_date": "1995-01-01"}
    rules = ValueRules.from_settings(settings.get, '{"incoming/uk/": "day_first", "incoming/us/": "month_first"}')
    assert rules == ValueRules(
        earliest_invoice_date=date(1995, 1, 1),
        max_abs_quantity=5_000_000,
        max_abs_unit_price=2500.5,
        date_orders={"incoming/uk/": "day_first", "incoming/us/": "month_first"},
    )
    assert ValueRules.from_settings(lambda name: None) == ValueRules()
    assert ValueRules.from_request(rules.as_request()) == rules  # as the reader's child receives them


@pytest.mark.parametrize(
    ("date_orders", "reason"),
    [
        ('{"incoming/uk/": "dd/mm/yyyy"}', "a date order is one of day_first, month_first; got"),
        ('["incoming/uk/"]', "date orders are a JSON object such as"),
        ("{not json", "date orders are a JSON object such as"),
    ],
    ids=["order", "list", "json"],
)
def test_a_date_order_setting_that_does_not_parse_is_refused(date_orders: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        ValueRules.from_settings(lambda name: None, date_orders)


def test_the_longest_declared_prefix_of_a_key_gives_its_order() -> None:
    rules = ValueRules(date_orders={"incoming/": "month_first", "incoming/uk/": "day_first"})
    assert rules.declared_date_order("incoming/uk/2011/sales.csv") == "day_first"
    assert rules.declared_date_order("incoming/us/sales.csv") == "month_first"
    assert ValueRules().declared_date_order("incoming/uk/sales.csv") is None


def evidence_of(*dates: str, sheet: str | None = None) -> DateEvidence:
    text = pl.Series(dates, dtype=pl.String)
    return DateEvidence().with_dates(text, pl.int_range(2, len(dates) + 2, eager=True), sheet)


def test_evidence_is_the_first_date_that_reads_only_one_way_or_both() -> None:
    evidence = evidence_of("2011-12-09 12:50:00", "1/2/2011 8:26", "13/2/2011", "14/2/2011 10:00", "29/02/x", None)
    assert evidence.day_first == DateExample(None, 4, "13/2/2011")
    assert evidence.month_first is None
    assert evidence.either == DateExample(None, 3, "1/2/2011 8:26")
    assert evidence.order == "day_first"
    assert evidence_of("12/13/2010 08:26").order == "month_first"
    assert evidence_of("2011-12-09 12:50:00").order is None


def test_later_evidence_keeps_the_first_example_of_each_kind() -> None:
    first = evidence_of("1/2/2011", sheet="2010")
    both = first.with_dates(pl.Series(["3/4/2011", "12/25/2011"]), pl.Series([7, 8]), "2011")
    assert both.either == DateExample("2010", 2, "1/2/2011")
    assert both.month_first == DateExample("2011", 8, "12/25/2011")


def test_a_declared_order_settles_whatever_the_evidence() -> None:
    mixed = evidence_of("13/12/2010", "12/13/2010")
    assert settle_date_order(mixed, "day_first", "incoming/uk/a.csv", "InvoiceDate") == "day_first"
    assert settle_date_order(evidence_of("13/12/2010"), None, "incoming/a.csv", "InvoiceDate") == "day_first"
    assert settle_date_order(DateEvidence(), None, "incoming/a.csv", "InvoiceDate") is None


def test_dates_in_both_orders_reject_the_file_naming_one_of_each() -> None:
    with pytest.raises(FileRejected) as rejection:
        settle_date_order(evidence_of("1/12/2010", "13/12/2010", "12/13/2010"), None, "incoming/a.csv", "Date")
    assert rejection.value.reason == (
        "Date: its dates follow both day/month orders (row 3: '13/12/2010' reads only day-first, row 4: "
        "'12/13/2010' only month-first), so none can be trusted: write every date in one order, best as "
        "2011-12-09 12:50:00"
    )


def test_dates_that_all_read_both_ways_reject_the_file_saying_how_to_declare_the_order() -> None:
    evidence = evidence_of(*(f"{day:02d}/12/2010 09:00" for day in range(1, 11)))
    with pytest.raises(FileRejected) as rejection:
        settle_date_order(evidence, None, "incoming/uk/december.csv", "InvoiceDate")
    assert rejection.value.reason == (
        "InvoiceDate: the day/month order of its dates cannot be told from the file: every date written with "
        "slashes reads both ways (row 2: '01/12/2010 09:00' is 1 December or 12 January 2010); declare the order "
        "of the files uploaded to incoming/uk/ in the Airflow Variable retail_date_order, e.g. "
        '{"incoming/uk/": "day_first"} (or "month_first"), or write the dates as 2011-12-09 12:50:00'
    )
