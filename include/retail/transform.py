"""What a transform run built: rows per layer, revenue, months covered, dbt tests, for the SNS summary."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from include.retail import config


@dataclass(frozen=True)
class DbtProject:
    """The models and data tests of the dbt project, as its manifest lists them."""

    models: list[tuple[str, str]]  # (schema, name), in the manifest's order
    data_tests: int

    @classmethod
    def from_manifest(cls, manifest: Path) -> DbtProject:
        nodes = json.loads(manifest.read_text())["nodes"].values()
        models = sorted((node["schema"], node["name"]) for node in nodes if node["resource_type"] == "model")
        return cls(models=models, data_tests=sum(node["resource_type"] == "test" for node in nodes))


def layer_counts(conn: psycopg.Connection, project: DbtProject) -> dict[str, int]:
    """Row counts of bronze's current rows and of every model, keyed ``schema.name``."""
    counts = {
        "bronze.retail_transactions_current": conn.execute(
            "select count(*) from bronze.retail_transactions_current"
        ).fetchone()[0]
    }
    for schema, name in project.models:
        query = sql.SQL("select count(*) from {}.{}").format(sql.Identifier(schema), sql.Identifier(name))
        counts[f"{schema}.{name}"] = conn.execute(query).fetchone()[0]
    return counts


def nothing_to_announce(counts: dict[str, int]) -> str | None:
    """Why a successful transform has no summary worth sending, or None.

    With no current rows in bronze gold is empty, and the summary would read "Transform done: 0 months,
    revenue 0.00": a run with nothing to build (a stale Asset event, a warehouse just reset) announced as news.
    """
    if not counts.get("bronze.retail_transactions_current") or not counts.get("gold.monthly_sales_summary"):
        return "No sales in bronze, so gold is empty: nothing to announce."
    return None


def transform_summary(
    conn: psycopg.Connection, project: DbtProject, counts: dict[str, int], *, run_id: str, seconds: float
) -> tuple[str, str]:
    """Subject and body of the message announcing a successful transform."""
    revenue, first_month, last_month, months = conn.execute(
        "select sum(revenue), min(month_start), max(month_start), count(*) from gold.monthly_sales_summary"
    ).fetchone()
    subject = (
        f"{config.ALERT_SUBJECT_PREFIX} Transform done: {months} months, revenue {revenue or 0:,.2f}, "
        f"{project.data_tests} tests passed"
    )
    lines = [
        f"Run {run_id} rebuilt silver and gold in {seconds:.0f} s; all {project.data_tests} dbt data tests passed.",
        f"Revenue {revenue or 0:,.2f} over {months} months ({first_month:%Y-%m} to {last_month:%Y-%m})."
        if months
        else "No sales yet.",
        "",
        "Rows per layer:",
        *(f"  {table:45} {rows:>10,}" for table, rows in counts.items()),
    ]
    return subject, "\n".join(lines) + "\n"
