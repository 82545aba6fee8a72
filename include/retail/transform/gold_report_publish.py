"""Publish the gold report: render it from gold after a successful build, write it to ``s3://<bucket>/reports/``
under a dated key and as ``latest.html``, and presign a link to it for the summary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from include.retail.transform import gold_report, gold_report_page
from include.retail.transform.dbt_project import DBT_MANIFEST
from include.retail.transform.dbt_results import DbtProject, DbtRun
from include.retail.transform.layers import layer_counts, nothing_to_announce

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

REPORTS_PREFIX = "reports/"


LATEST_KEY = REPORTS_PREFIX + "latest.html"


# The user metadata on latest.html naming the dated report it is a copy of (boto3 lower-cases the name).
REPORT_KEY_METADATA = "report-key"


# How long the summary's presigned link lasts: SigV4's longest. A link signed with temporary credentials (an
# IAM role's, as on MWAA) dies with them, sooner; the summary says so.
PRESIGNED_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class ReportLink:
    """Where a published report is: its dated key, the latest copy, and a presigned HTTPS link to the dated one."""

    bucket: str
    key: str
    url: str
    expires_at: str  # ISO 8601, UTC: when the presigned link stops working at the latest

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def latest_uri(self) -> str:
        return f"s3://{self.bucket}/{LATEST_KEY}"


def dated_key(generated_at: datetime) -> str:
    return f"{REPORTS_PREFIX}gold-{generated_at.astimezone(UTC):%Y-%m-%dT%H%M%SZ}.html"


def publish(s3, bucket: str, page: str, generated_at: datetime) -> str:
    """Write ``page`` under a dated key and as ``reports/latest.html`` (``s3`` is a boto3 S3 client); return the
    dated key, which later runs leave as it is."""
    key = dated_key(generated_at)
    common = {"Bucket": bucket, "Body": page.encode(), "ContentType": "text/html; charset=utf-8"}
    s3.put_object(Key=key, **common)
    s3.put_object(Key=LATEST_KEY, CacheControl="no-cache", Metadata={REPORT_KEY_METADATA: key}, **common)
    return key


def share(s3, bucket: str, key: str, *, expires_in: int = PRESIGNED_SECONDS) -> ReportLink:
    """A presigned GET link to a published report, for the summary. Made where it is sent, never kept in an
    XCom or a log: whoever holds it can read the report until it expires."""
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in)
    expires_at = (datetime.now(UTC) + timedelta(seconds=expires_in)).replace(microsecond=0)
    return ReportLink(bucket=bucket, key=key, url=url, expires_at=expires_at.isoformat())


def render_and_publish(conn: psycopg.Connection, s3, bucket: str, dbt_run: DbtRun) -> dict[str, str]:
    """Read gold, render the page and publish it (``s3`` is a boto3 S3 client); return its bucket and dated key.
    Skipped (AirflowSkipException), as the summary is, when gold is empty."""
    from airflow.sdk.exceptions import AirflowSkipException

    counts = layer_counts(conn, DbtProject.from_manifest(DBT_MANIFEST))
    if reason := nothing_to_announce(counts):
        raise AirflowSkipException(reason)
    report = gold_report.read_gold(conn, counts, dbt_run)
    page = gold_report_page.render_html(report)
    key = publish(s3, bucket, page, report.generated_at)
    log.info("gold report (%s bytes): s3://%s/%s, also %s", f"{len(page):,}", bucket, key, LATEST_KEY)
    return {"bucket": bucket, "key": key}
