"""What a transform built, read from the warehouse: rows per layer and gold's revenue, for the summary, the gold
report and ``make demo``; and whether there is anything worth announcing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

    from include.retail.transform.dbt_results import DbtProject


@dataclass(frozen=True)
class Revenue:
    """Gold's revenue and the months it covers."""

    total: Decimal
    months: int  # with a sale: gold.monthly_sales_summary also has a row for every empty month between them
    first_month: date | None
    last_month: date | None


def layer_counts(conn: psycopg.Connection, project: DbtProject) -> dict[str, int]:
    """Row counts of bronze's current rows and of every model, keyed ``schema.name``."""
    from psycopg import sql

    counts = {
        "bronze.retail_transactions_current": conn.execute(
            "select count(*) from bronze.retail_transactions_current"
        ).fetchone()[0]
    }
    for schema, name in project.models:
        query = sql.SQL("select count(*) from {}.{}").format(sql.Identifier(schema), sql.Identifier(name))
        counts[f"{schema}.{name}"] = conn.execute(query).fetchone()[0]
    return counts


def gold_revenue(conn: psycopg.Connection) -> Revenue:
    total, first_month, last_month, months = conn.execute(
        """
        select sum(revenue), min(month_start), max(month_start), count(*)
        from gold.monthly_sales_summary
        where orders > 0
        """
    ).fetchone()
    return Revenue(total=total or Decimal(0), months=months, first_month=first_month, last_month=last_month)


def nothing_to_announce(counts: dict[str, int]) -> str | None:
    """Why a successful transform has no summary worth sending, or None.

    With no current rows in bronze gold is empty, and the summary would read "Transform done: 0 months,
    revenue 0.00": a run with nothing to build (a stale Asset event, a warehouse just reset) announced as news.
    """
    if not counts.get("bronze.retail_transactions_current") or not counts.get("gold.monthly_sales_summary"):
        return "No sales in bronze, so gold is empty: nothing to announce."
    return None
