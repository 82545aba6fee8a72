"""Every version of every upload is loaded or accounted for: a key uploaded again while its first version loads.

Real parts only: the session's PostgreSQL and moto server, the DAGs run by ``dag.test()``. The second upload is a
real PutObject on moto, made from inside the first version's load (a wrapper around ``load.load_into_bronze``,
which runs after the download and before the move). The data bucket is versioned, as infra/ and the embedded
stack make it; a bucket without versioning is created for the ETag-conditional path.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from devstack.aws import BUCKET
from devstack.sample import HEADER, write_workbook
from include.retail.ingest import load
from include.retail.platform import config

pytestmark = pytest.mark.integration

UNVERSIONED_BUCKET = "retail-landing-unversioned"
REAL_LOAD = load.load_into_bronze


def rows(count: int, invoice_start: int) -> list[list]:
    start = datetime(2011, 3, 1, 9, 0)
    return [
        [invoice_start + n, "85123A", f"ITEM {n}", 1 + n % 5, start + timedelta(minutes=n), 2.55, 17850.0, "France"]
        for n in range(count)
    ]


def workbook(folder: Path, name: str, count: int, invoice_start: int) -> bytes:
    return write_workbook(folder / name, {"Online Retail": [HEADER, *rows(count, invoice_start)]}).read_bytes()


def sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def ledger_of(stack, key: str) -> list[tuple]:
    """(status, rows_loaded, SHA-256, S3 VersionId) of each ledger row of ``key``, in order."""
    with psycopg.connect(stack.warehouse_url(), autocommit=True) as conn:
        return conn.execute(
            "select status, rows_loaded, source_version, source_s3_version_id from bronze.load_ledger "
            "where source_key = %s order by finished_at",
            (key,),
        ).fetchall()


def bronze_rows_by_version(stack, key: str) -> dict[str, int]:
    """Rows in bronze of ``key``, per SHA-256 of the file they came from."""
    with psycopg.connect(stack.warehouse_url(), autocommit=True) as conn:
        return dict(
            conn.execute(
                "select source_version, count(*) from bronze.retail_transactions where source_key = %s group by 1",
                (key,),
            ).fetchall()
        )


def current_rows(stack, key: str) -> int:
    with psycopg.connect(stack.warehouse_url(), autocommit=True) as conn:
        return conn.execute(
            "select count(*) from bronze.retail_transactions_current where source_key = %s", (key,)
        ).fetchone()[0]


def body_of(s3, bucket: str, key: str, version_id: str | None = None) -> bytes:
    version = {"VersionId": version_id} if version_id else {}
    return s3.get_object(Bucket=bucket, Key=key, **version)["Body"].read()


def versions_of(s3, bucket: str, key: str) -> tuple[list[dict], list[dict]]:
    """The versions and the delete markers of exactly ``key``, newest first."""
    listing = s3.list_object_versions(Bucket=bucket, Prefix=key)
    versions = [entry for entry in listing.get("Versions", []) if entry["Key"] == key]
    markers = [entry for entry in listing.get("DeleteMarkers", []) if entry["Key"] == key]
    return versions, markers


def uploaded_again_during_the_load(monkeypatch, s3, bucket: str, key: str, body: bytes) -> list[dict]:
    """Put ``body`` under ``key`` (a real PutObject) once, while the first load runs; returns its answer(s)."""
    uploads: list[dict] = []

    def load_while_uploaded_again(*args, **kwargs):
        if not uploads:
            uploads.append(s3.put_object(Bucket=bucket, Key=key, Body=body))
        return REAL_LOAD(*args, **kwargs)

    monkeypatch.setattr(load, "load_into_bronze", load_while_uploaded_again)
    return uploads


def failed_tasks_of(run, key: str) -> list[dict]:
    return [alert for alert in run.alerts if alert["subject"].startswith("[retail] FAILED") and key in alert["subject"]]


def test_a_newer_version_uploaded_during_the_load_stays_for_the_next_run_which_loads_it(
    tmp_path, stack, s3, run_ingest, monkeypatch
) -> None:
    key, processed = "incoming/uploaded_again.xlsx", "processed/uploaded_again.xlsx"
    first = workbook(tmp_path, "first.xlsx", 5, 710000)
    second = workbook(tmp_path, "second.xlsx", 7, 710100)
    first_version = s3.put_object(Bucket=BUCKET, Key=key, Body=first)["VersionId"]
    uploads = uploaded_again_during_the_load(monkeypatch, s3, BUCKET, key, second)

    run = run_ingest(key)

    assert run.state == "success"
    (upload,) = uploads
    second_version = upload["VersionId"]
    assert second_version != first_version
    # The ledger and bronze hold version 1; processed/ holds its very bytes.
    assert ledger_of(stack, key) == [("loaded", 5, sha256(first), first_version)]
    assert bronze_rows_by_version(stack, key) == {sha256(first): 5}
    assert sha256(body_of(s3, BUCKET, processed)) == sha256(first)
    # Version 2 is still current under incoming/: only version 1 was removed, and no delete marker hides it.
    versions, markers = versions_of(s3, BUCKET, key)
    assert [entry["VersionId"] for entry in versions] == [second_version]
    assert markers == []
    assert s3.head_object(Bucket=BUCKET, Key=key)["VersionId"] == second_version
    assert sha256(body_of(s3, BUCKET, key)) == sha256(second)

    # The next waiting run lists incoming/ and loads version 2, which supersedes version 1.
    monkeypatch.setattr(load, "load_into_bronze", REAL_LOAD)
    again = run_ingest(None)

    assert not failed_tasks_of(again, key)
    assert ledger_of(stack, key) == [
        ("loaded", 5, sha256(first), first_version),
        ("loaded", 7, sha256(second), second_version),
    ]
    assert bronze_rows_by_version(stack, key) == {sha256(first): 5, sha256(second): 7}
    assert current_rows(stack, key) == 7
    assert versions_of(s3, BUCKET, key) == ([], [])
    # Both versions are accounted for under processed/, each the bytes loaded.
    filed, _ = versions_of(s3, BUCKET, processed)
    assert [sha256(body_of(s3, BUCKET, processed, entry["VersionId"])) for entry in filed] == [
        sha256(second),
        sha256(first),
    ]


def test_the_same_content_uploaded_again_during_the_load_is_recorded_a_duplicate_by_the_next_run(
    tmp_path, stack, s3, run_ingest, monkeypatch
) -> None:
    key = "incoming/same_again.xlsx"
    body = workbook(tmp_path, "same.xlsx", 4, 710200)
    first_version = s3.put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"]
    uploads = uploaded_again_during_the_load(monkeypatch, s3, BUCKET, key, body)

    run = run_ingest(key)

    assert run.state == "success"
    (upload,) = uploads
    assert ledger_of(stack, key) == [("loaded", 4, sha256(body), first_version)]
    assert [entry["VersionId"] for entry in versions_of(s3, BUCKET, key)[0]] == [upload["VersionId"]]

    monkeypatch.setattr(load, "load_into_bronze", REAL_LOAD)
    again = run_ingest(key)

    assert again.state == "success"
    assert ledger_of(stack, key) == [
        ("loaded", 4, sha256(body), first_version),
        ("duplicate", 0, sha256(body), upload["VersionId"]),
    ]
    assert bronze_rows_by_version(stack, key) == {sha256(body): 4}  # nothing doubled
    assert versions_of(s3, BUCKET, key) == ([], [])


@pytest.fixture
def unversioned_bucket(stack, s3, monkeypatch) -> str:
    """A second bucket in moto, never versioned, made the pipeline's bucket (the Variable) for the test."""
    if UNVERSIONED_BUCKET not in {entry["Name"] for entry in s3.list_buckets().get("Buckets", [])}:
        region = s3.meta.region_name
        location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=UNVERSIONED_BUCKET, **location)
    assert s3.get_bucket_versioning(Bucket=UNVERSIONED_BUCKET).get("Status") is None
    monkeypatch.setenv(f"AIRFLOW_VAR_{config.BUCKET_VARIABLE.upper()}", UNVERSIONED_BUCKET)
    return UNVERSIONED_BUCKET


def test_without_versioning_a_changed_object_is_not_deleted_and_the_bytes_loaded_are_filed(
    tmp_path, stack, s3, run_ingest, monkeypatch, unversioned_bucket: str
) -> None:
    bucket = unversioned_bucket
    key, processed = "incoming/replaced.xlsx", "processed/replaced.xlsx"
    first = workbook(tmp_path, "first.xlsx", 5, 710300)
    second = workbook(tmp_path, "second.xlsx", 6, 710400)
    first_etag = s3.put_object(Bucket=bucket, Key=key, Body=first)["ETag"].strip('"')
    uploads = uploaded_again_during_the_load(monkeypatch, s3, bucket, key, second)

    run = run_ingest(key)

    assert run.state == "success"
    (upload,) = uploads
    assert upload["ETag"].strip('"') != first_etag
    assert ledger_of(stack, key) == [("loaded", 5, sha256(first), None)]
    with psycopg.connect(stack.warehouse_url(), autocommit=True) as conn:
        (etag,) = conn.execute("select source_etag from bronze.load_ledger where source_key = %s", (key,)).fetchone()
    assert etag == first_etag
    # The ETag changed between the download and the move: the newer object is not deleted, and processed/
    # holds the bytes loaded, not the newer ones.
    assert sha256(body_of(s3, bucket, key)) == sha256(second)
    assert sha256(body_of(s3, bucket, processed)) == sha256(first)

    monkeypatch.setattr(load, "load_into_bronze", REAL_LOAD)
    again = run_ingest(key)

    assert again.state == "success"
    assert ledger_of(stack, key) == [("loaded", 5, sha256(first), None), ("loaded", 6, sha256(second), None)]
    assert bronze_rows_by_version(stack, key) == {sha256(first): 5, sha256(second): 6}
    assert current_rows(stack, key) == 6
    # Unchanged this time: the conditional copy and delete go through.
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=key)
    assert sha256(body_of(s3, bucket, processed)) == sha256(second)
