"""Where an object goes once handled: processed/, quarantine/ (with its report) or failed/, by the same path
it had under incoming/; and how a key already filed by an earlier run is told from one that never existed."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, NoReturn

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from include.retail.platform import config

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook


def filed_key(key: str, prefix: str) -> str:
    """Where an object goes once handled: its path under incoming/, re-rooted at ``prefix``."""
    relative = key.removeprefix(config.INCOMING_PREFIX)
    return prefix + relative


def move(s3: S3Hook, bucket: str, key: str, destination: str) -> None:
    s3.copy_object(
        source_bucket_key=key, dest_bucket_key=destination, source_bucket_name=bucket, dest_bucket_name=bucket
    )
    s3.delete_objects(bucket=bucket, keys=[key])


def quarantine(s3: S3Hook, bucket: str, key: str, report: dict) -> str:
    destination = filed_key(key, config.QUARANTINE_PREFIX)
    s3.load_string(
        json.dumps(report, indent=2, default=str),
        key=destination + config.REPORT_SUFFIX,
        bucket_name=bucket,
        replace=True,
    )
    move(s3, bucket, key, destination)
    return destination


class AlreadyHandled(AirflowSkipException):
    """The object was filed by an earlier run (a manual run named a file the waiting sensor had taken)."""


def exists(s3: S3Hook, bucket: str, key: str) -> bool:
    """By listing, not HEAD: on AWS the execution role may list the pipeline's prefixes but not read
    ``processed/``, and a HEAD of a missing key without bucket-wide ListBucket answers 403, not 404."""
    return key in s3.list_keys(bucket_name=bucket, prefix=key)


def raise_missing(s3: S3Hook, bucket: str, key: str) -> NoReturn:
    for prefix in (config.PROCESSED_PREFIX, config.QUARANTINE_PREFIX):
        filed = filed_key(key, prefix)
        if exists(s3, bucket, filed):
            raise AlreadyHandled(f"s3://{bucket}/{key} was already handled: it is now at {filed}")
    raise AirflowFailException(f"s3://{bucket}/{key} does not exist; expected an object under {config.INCOMING_PREFIX}")
