"""``python -m devstack report`` (``make report``): fetch the latest gold report from the stack's bucket.

Each retail_transform run writes its report to ``s3://<bucket>/reports/``
(include/retail/transform/gold_report_publish.py). The embedded stack's bucket lives in the moto server's memory,
out of a browser's reach without signing, so this copies the latest report to a local file and prints where it
is, with its S3 URI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from botocore.exceptions import ClientError

from devstack.aws import BUCKET
from devstack.stack import Stack
from include.retail.transform.gold_report_publish import LATEST_KEY, REPORT_KEY_METADATA


def add_parser(commands) -> None:
    """The ``report`` subcommand, on the CLI's subparsers."""
    command = commands.add_parser("report", help="copy the latest gold report to a local file and print where")
    command.add_argument(
        "--output", type=Path, default=None, help="where to write it (default: <state dir>/reports/<report name>)"
    )


def fetch_latest(stack: Stack, output: Path | None = None) -> tuple[Path, str]:
    """Write the latest report to ``output`` (default ``<home>/reports/<its dated name>``); return the file and
    the report's S3 URI. Raises FileNotFoundError when the bucket holds none."""
    s3 = stack.boto3_client("s3")
    try:
        latest = s3.get_object(Bucket=BUCKET, Key=LATEST_KEY)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
            raise FileNotFoundError(f"s3://{BUCKET}/{LATEST_KEY}") from error
        raise
    key = latest["Metadata"].get(REPORT_KEY_METADATA, LATEST_KEY)
    if output is None:
        output = stack.home / "reports" / Path(key).name
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(latest["Body"].read())
    return output.resolve(), f"s3://{BUCKET}/{key}"


def run(stack: Stack, args: argparse.Namespace) -> int:
    """Print where the latest report is, locally and in the bucket; exit 1, saying why, when there is none."""
    if not stack.moto.running():
        print(
            "report: the embedded stack is not running, and its S3 (moto) forgets every object when it stops: "
            "`make demo` builds a report (or `make up`, then `make upload WORKBOOK=...`).",
            file=sys.stderr,
        )
        return 1
    try:
        path, uri = fetch_latest(stack, args.output)
    except FileNotFoundError:
        print(
            f"report: no gold report in s3://{BUCKET}/reports/ yet; each retail_transform run writes one "
            "(`make demo`, or `make upload WORKBOOK=...` with the services up).",
            file=sys.stderr,
        )
        return 1
    print(f"  gold report    {path}")
    print(f"  in the bucket  {uri}  (latest: s3://{BUCKET}/{LATEST_KEY})")
    print(f"  open it        file://{path}")
    return 0
