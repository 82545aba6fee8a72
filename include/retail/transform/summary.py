"""Announce what a transform built over SNS: rows per layer, revenue and months, the tests dbt ran, and a
presigned link to the gold report.

The message is plain text from plain data (row counts, gold's revenue, dbt's own run results), so that it is
unit-tested without Airflow; ``announce_transform`` gathers them and publishes it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from include.retail.platform import alerts, config
from include.retail.platform.alerts import subject_line
from include.retail.transform.dbt_project import DBT_MANIFEST
from include.retail.transform.dbt_results import DbtProject, DbtRun
from include.retail.transform.gold_report_publish import ReportLink, share
from include.retail.transform.layers import Revenue, gold_revenue, layer_counts, nothing_to_announce

if TYPE_CHECKING:
    import psycopg


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
    ``report`` the gold report published for it (gold_report_publish.share)."""
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


def announce_transform(
    conn: psycopg.Connection,
    s3,
    topic_arn: str,
    dbt_run: DbtRun,
    *,
    run_id: str,
    seconds: float,
    report: dict | None = None,
) -> dict:
    """Publish what the transform built, the tests its dbt build ran and where its gold report (``report``: the
    bucket and key ``gold_report_publish.render_and_publish`` returned) is, with a presigned link made by ``s3``
    (a boto3 S3 client). Skipped (AirflowSkipException), saying why, when there is nothing to announce."""
    from airflow.sdk.exceptions import AirflowSkipException

    counts = layer_counts(conn, DbtProject.from_manifest(DBT_MANIFEST))
    if reason := nothing_to_announce(counts):
        raise AirflowSkipException(reason)
    subject, message = transform_summary(
        gold_revenue(conn),
        counts,
        dbt_run,
        run_id=run_id,
        seconds=seconds,
        # Presigned here, where it is sent: the link is in the message, never in an XCom or a log.
        report=share(s3, **report) if report else None,
    )
    message_id = alerts.publish(topic_arn, subject, message)
    return {"subject": subject, "message_id": message_id, "rows": counts, "report": report}
