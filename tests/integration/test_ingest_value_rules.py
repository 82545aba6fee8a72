"""Issue 22 through the real ingest DAG: a value that parses but cannot be trusted (a date in 9999, a price of
1e308, a line cut short) is set aside with its reason while the rest loads; the day/month order a file's dates
cannot settle is declared by an Airflow Variable; the rules are Airflow Variables over their defaults."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from include.retail.platform import config
from tests import hostile_files

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("make", "name", "row", "reason"), hostile_files.BAD_ROW_FILES, ids=hostile_files.BAD_ROW_FILE_IDS
)
def test_one_untrustworthy_row_in_1001_is_set_aside_and_the_rest_loads(
    make: Callable[[Path], Path], name: str, row: int, reason: str, tmp_path, upload, run_ingest, warehouse
) -> None:
    key = upload(make(tmp_path / name), f"incoming/value_rules/{name}")

    run = run_ingest(key)

    assert run.state == "success"
    assert warehouse.execute(
        "select status, rows_loaded, rows_rejected from bronze.load_ledger where airflow_run_id = %s", (run.run_id,)
    ).fetchall() == [("loaded", 1_000, 1)]
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    assert warehouse.execute(
        "select source_row, reason from bronze.rejected_rows where source_key = %s", (key,)
    ).fetchall() == [(row, reason.format(tomorrow=tomorrow))]
    assert warehouse.execute(
        "select max(invoice_date)::date, max(abs(unit_price)) from bronze.retail_transactions where source_key = %s",
        (key,),
    ).fetchone() == (date(2010, 12, 1), Decimal("2.55"))


def test_a_declared_date_order_loads_dates_the_file_cannot_settle(
    tmp_path, upload, run_ingest, warehouse, monkeypatch
) -> None:
    """1-10 December written day-first: rejected, naming the Variable; declared for the folder, loaded as December."""
    path = hostile_files.ambiguous_dates_csv(tmp_path / "december.csv", first_invoice=940_000)
    key = upload(path, "incoming/uk/december.csv")
    rejected = run_ingest(key)
    assert rejected.state == "failed"
    (error,) = warehouse.execute(
        "select error from bronze.load_ledger where airflow_run_id = %s", (rejected.run_id,)
    ).fetchone()
    assert (
        f"declare the order of the files uploaded to incoming/uk/ in the Airflow Variable {config.DATE_ORDER_VARIABLE}"
        in error
    )

    monkeypatch.setenv(f"AIRFLOW_VAR_{config.DATE_ORDER_VARIABLE.upper()}", '{"incoming/uk/": "day_first"}')
    key = upload(path, "incoming/uk/december.csv")
    loaded = run_ingest(key)

    assert loaded.state == "success"
    days = warehouse.execute(
        "select invoice_date::date from bronze.retail_transactions where source_key = %s order by source_row", (key,)
    ).fetchall()
    assert days == [(date(2010, 12, day),) for day in range(1, 11)]


def test_value_rules_are_airflow_variables_over_their_defaults(stack, monkeypatch) -> None:
    from include.retail.ingest.tasks import read_limits, value_rules
    from include.retail.ingest.value_rules import ValueRules

    assert value_rules() == ValueRules()
    monkeypatch.setenv(f"AIRFLOW_VAR_{config.VALUE_RULE_VARIABLE_PREFIX.upper()}MAX_ABS_QUANTITY", "5000000")
    monkeypatch.setenv(f"AIRFLOW_VAR_{config.VALUE_RULE_VARIABLE_PREFIX.upper()}EARLIEST_INVOICE_DATE", "1995-01-01")
    monkeypatch.setenv(f"AIRFLOW_VAR_{config.DATE_ORDER_VARIABLE.upper()}", '{"incoming/us/": "month_first"}')
    expected = ValueRules(
        earliest_invoice_date=date(1995, 1, 1), max_abs_quantity=5_000_000, date_orders={"incoming/us/": "month_first"}
    )
    assert value_rules() == expected
    assert read_limits().value_rules == expected  # as they travel to the reader's child

    monkeypatch.setenv(f"AIRFLOW_VAR_{config.DATE_ORDER_VARIABLE.upper()}", '{"incoming/us/": "mm/dd"}')
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="a date order is one of day_first, month_first"):
        value_rules()
