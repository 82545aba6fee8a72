"""`make report` (devstack/fetch_gold_report.py) against the session's moto server: the latest report, copied to a file.

The report's figures against gold are checked in test_transform.py, on the run that builds gold from the real
workbook; here the publishing and fetching, with a page of our own.
"""

from __future__ import annotations

import argparse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devstack.aws import BUCKET
from devstack.fetch_gold_report import fetch_latest, run
from devstack.stack import Stack
from include.retail.transform.gold_report_publish import LATEST_KEY, publish, share

pytestmark = [pytest.mark.integration]


def test_the_latest_report_is_fetched_under_its_dated_name(stack: Stack, s3, capsys) -> None:
    older = publish(s3, BUCKET, "<!doctype html><title>older</title>", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    newer = publish(s3, BUCKET, "<!doctype html><title>newer</title>", datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC))
    assert older != newer
    link = share(s3, BUCKET, older)
    with urllib.request.urlopen(link.url, timeout=30) as response:  # the dated report stays, and its link works
        assert b"<title>older</title>" in response.read()

    assert run(stack, argparse.Namespace(output=None)) == 0

    out = capsys.readouterr().out
    local = stack.home / "reports" / "gold-2026-01-02T030406Z.html"
    assert local.read_text() == "<!doctype html><title>newer</title>"
    assert f"gold report    {local}" in out
    assert f"s3://{BUCKET}/reports/gold-2026-01-02T030406Z.html" in out
    assert f"(latest: s3://{BUCKET}/{LATEST_KEY})" in out


def test_an_explicit_output_path_is_used(stack: Stack, s3, tmp_path: Path) -> None:
    publish(s3, BUCKET, "<!doctype html><title>mine</title>", datetime(2026, 1, 3, tzinfo=UTC))
    path, uri = fetch_latest(stack, tmp_path / "copy.html")
    assert path == (tmp_path / "copy.html").resolve()
    assert path.read_text() == "<!doctype html><title>mine</title>"
    assert uri == f"s3://{BUCKET}/reports/gold-2026-01-03T000000Z.html"


def test_a_stopped_stack_says_its_reports_are_gone_and_how_to_make_one(tmp_path: Path, capsys) -> None:
    stopped = Stack(tmp_path / "never-started")
    assert run(stopped, argparse.Namespace(output=None)) == 1
    assert "`make demo` builds a report" in capsys.readouterr().err
