"""The summaries announced over SNS: what an ingest run loaded into bronze, and what a transform built.

Plain text from plain data (ledger rows, row counts, dbt's own artifacts), so that each message is
unit-tested without Airflow; the tasks in ingest_tasks.py and transform_tasks.py publish them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from include.retail.platform import config
from include.retail.platform.alerts import subject_line
from include.retail.ingest.ledger import Status

if TYPE_CHECKING:
    import psycopg

    from include.retail.transform.gold_report import ReportLink


def load_summary(results: Iterable[dict], *, run_id: str, earlier: Iterable[dict] = ()) -> tuple[str, str]:
    """Subject and body announcing what a run loaded into bronze, and the loads of earlier runs that
    were never announced (``earlier``: a run that died after its bronze commit), which go to silver now."""
    results, earlier = list(results), list(earlier)
    loaded = [result for result in results if result["status"] == Status.LOADED]
    files = len(loaded) + len(earlier)
    rows = sum(result["rows_loaded"] for result in [*loaded, *earlier])
    subject = f"{config.ALERT_SUBJECT_PREFIX} Loaded {files} file{'s' if files != 1 else ''}, {rows:,} rows into bronze"
    this_run = sum(result["rows_loaded"] for result in loaded)
    lines = [f"Run {run_id} loaded {this_run:,} rows from {len(loaded)} file(s) into bronze.", ""]
    for result in results:
        seconds = sum(filter(None, (result.get("read_seconds"), result.get("load_seconds"))))
        line = f"- {result['key']}: {result['status']}"
        if result["status"] == Status.LOADED:
            line += f", {result['rows_loaded']:,} rows in {seconds:.1f} s"
            if result["rows_rejected"]:
                line += f", {result['rows_rejected']:,} rows rejected (see bronze.rejected_rows)"
            if result.get("rows_overlapping"):
                line += (
                    f", {result['rows_overlapping']:,} of them identical to rows of another file already loaded"
                    " (counted in both)"
                )
            if result.get("superseded"):
                line += ", supersedes an earlier load of this key"
        elif result["status"] == Status.DUPLICATE and result.get("duplicate_of_key", result["key"]) != result["key"]:
            line += (
                f" (the same rows as {result['duplicate_of_key']}, already loaded: a re-export in another format"
                " or order; nothing added)"
            )
        elif result["status"] == Status.DUPLICATE:
            line += " (this content was loaded before; nothing added)"
        elif result["status"] == Status.REJECTED:
            line += f" and quarantined: {result.get('error')}"
        lines.append(line)
    if earlier:
        lines += ["", f"Loaded by earlier runs that ended before announcing them ({len(earlier)}), now sent to silver:"]
        lines += [
            f"- {batch['key']}: loaded, {batch['rows_loaded']:,} rows (batch {batch['batch_id']})" for batch in earlier
        ]
    return subject_line(subject), "\n".join(lines) + "\n"


@dataclass(frozen=True)
class DbtProject:
    """The models of the dbt project, as its manifest lists them: the tables a transform builds."""

    models: list[tuple[str, str]]  # (schema, name), sorted

    @classmethod
    def from_manifest(cls, manifest: Path) -> DbtProject:
        nodes = json.loads(manifest.read_text())["nodes"].values()
        return cls(models=sorted((node["schema"], node["name"]) for node in nodes if node["resource_type"] == "model"))


@dataclass(frozen=True)
class DbtRun:
    """What one dbt invocation did, node by node, as its ``target/run_results.json`` records it.

    The summary counts tests from here, not from the manifest: the manifest lists the tests the project
    has, run_results.json the ones dbt ran and how each ended.
    """

    statuses: dict[str, str]  # unique_id -> dbt's status: success, error, skipped (models); pass, fail, warn (tests)

    @classmethod
    def from_run_results(cls, run_results: dict) -> DbtRun:
        return cls({result["unique_id"]: result["status"] for result in run_results["results"]})

    @classmethod
    def from_file(cls, path: Path) -> DbtRun:
        return cls.from_run_results(json.loads(path.read_text()))

    def data_tests(self) -> dict[str, int]:
        """How many data tests (``test.*`` nodes; not unit tests) ended in each status."""
        counts: dict[str, int] = {}
        for unique_id, status in self.statuses.items():
            if unique_id.split(".", 1)[0] == "test":
                counts[status] = counts.get(status, 0) + 1
        return counts


@dataclass(frozen=True)
class Revenue:
    """Gold's revenue and the months it covers."""

    total: Decimal
    months: int
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
        "select sum(revenue), min(month_start), max(month_start), count(*) from gold.monthly_sales_summary"
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


def transform_summary(
    revenue: Revenue,
    counts: dict[str, int],
    dbt_run: DbtRun,
    *,
    run_id: str,
    seconds: float,
    report: ReportLink | None = None,
) -> tuple[str, str]:
    """Subject and body of the message announcing a successful transform; its tests are those dbt ran, and
    ``report`` the gold report published for it (include/retail/transform/gold_report.py)."""
    tests = dbt_run.data_tests()
    passed, ran = tests.get("pass", 0), sum(tests.values())
    subject = (
        f"{config.ALERT_SUBJECT_PREFIX} Transform done: {revenue.months} months, revenue {revenue.total:,.2f}, "
        f"{passed} tests passed"
    )
    if passed == ran:
        tested = f"all {passed} dbt data tests passed."
    else:
        others = ", ".join(f"{count} {status}" for status, count in sorted(tests.items()) if status != "pass")
        tested = f"{passed} of the {ran} dbt data tests it ran passed ({others})."
    lines = [
        f"Run {run_id} rebuilt silver and gold in {seconds:.0f} s; {tested}",
        f"Revenue {revenue.total:,.2f} over {revenue.months} months "
        f"({revenue.first_month:%Y-%m} to {revenue.last_month:%Y-%m})."
        if revenue.months
        else "No sales yet.",
        "",
        "Rows per layer:",
        *(f"  {table:45} {rows:>10,}" for table, rows in counts.items()),
    ]
    if report is not None:
        expires = datetime.fromisoformat(report.expires_at)
        lines += [
            "",
            f"Gold report: {report.uri} (latest: {report.latest_uri}). To open it in a browser:",
            f"  {report.url}",
            f"  (a presigned link, valid until {expires:%Y-%m-%d %H:%M} UTC at the latest: a link signed with an IAM "
            "role's temporary credentials stops working when they expire, within hours.)",
        ]
    return subject_line(subject), "\n".join(lines) + "\n"
