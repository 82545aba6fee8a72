"""Where an object goes once handled: processed/, quarantine/ (with its report) or failed/, by the same path
it had under incoming/; how a key already filed by an earlier run is told from one that never existed; and how
an upload is read and filed by its version, so that the archive holds exactly what was loaded.

The same key may be uploaded again while its first version loads. So an upload is read in one GET, whose answer
names the version read, and the move copies and deletes that version only; a newer one stays under incoming/,
where the next run (sensor or events: both list incoming/) loads it.

- Versioned bucket (infra/ and the embedded stack make it so): CopyObject of that VersionId, then DeleteObject
  of that VersionId, which removes it for good instead of hiding the newer version under a delete marker.
- Unversioned (or suspended: its "null" version is overwritten in place, so it names no version): CopyObject
  only while the ETag is the one read (CopySourceIfMatch), checked by the copy's SHA-256; when the object changed,
  the bytes read are filed from the local copy. Then DeleteObject only while the ETag is the one read: a newer
  object is left, with a warning, for the next run.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from botocore.exceptions import ClientError

from include.retail.ingest.ledger import SourceFile
from include.retail.ingest.scratch import file_sha256
from include.retail.platform import config

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

log = logging.getLogger(__name__)

_DOWNLOAD_CHUNK = 1 << 20


@dataclass(frozen=True)
class Upload:
    """One version of an upload: ``source`` names it (key, VersionId, ETag, SHA-256 of its bytes), and
    ``local_copy`` holds those bytes while the scratch folder lives, to be filed when S3 no longer has them."""

    source: SourceFile
    local_copy: Path | None = None

    @property
    def key(self) -> str:
        return self.source.key


def filed_key(key: str, prefix: str) -> str:
    """Where an object goes once handled: its path under incoming/, re-rooted at ``prefix``."""
    relative = key.removeprefix(config.INCOMING_PREFIX)
    return prefix + relative


def fetch(s3: S3Hook, bucket: str, key: str, local: Path) -> Upload:
    """Download the current version of ``key`` to ``local`` in one GET: the version its answer names is the
    one whose bytes these are (a HEAD, then a download, could see two versions)."""
    answer = s3.get_conn().get_object(Bucket=bucket, Key=key)
    with answer["Body"] as body, local.open("wb") as copy:
        shutil.copyfileobj(body, copy, _DOWNLOAD_CHUNK)
    source = SourceFile(
        key=key,
        sha256=file_sha256(local),
        etag=answer.get("ETag", "").strip('"') or None,
        size=local.stat().st_size,
        s3_version_id=version_id_of(answer),
    )
    return Upload(source, local)


def version_id_of(answer: dict) -> str | None:
    """The S3 VersionId in a GET or HEAD answer; None where the bucket keeps no versions. A suspended bucket's
    "null" version is overwritten in place by the next upload, so it names no version either."""
    version_id = answer.get("VersionId")
    return None if version_id in (None, "", "null") else version_id


def move(s3: S3Hook, bucket: str, upload: Upload, destination: str) -> bool:
    """File exactly the version read under ``destination``, then delete that version only (module docstring).

    Returns whether ``destination`` holds it: False only when the object changed and no local copy is left
    (after a task's last try), and then nothing was filed and the newer object stays under incoming/."""
    filed = _copy_version(s3, bucket, upload.source, destination)
    if not filed and upload.local_copy is not None:
        _put_local_copy(s3, bucket, upload.source, upload.local_copy, destination)
        filed = True
    elif not filed:
        log.warning(
            "%s: changed since it was read (ETag %s) and the bytes read are gone: %s does not hold them",
            upload.key,
            upload.source.etag,
            destination,
        )
    _delete_version(s3, bucket, upload.source)
    return filed


def _copy_version(s3: S3Hook, bucket: str, source: SourceFile, destination: str) -> bool:
    """CopyObject of the version read: by its VersionId, and only while its ETag is the one read. False when the
    copy is not those bytes: S3 refused (412), or S3's SHA-256 of the copy is another (a store that ignored
    the condition). A stand-in hash (``etag:…``, an unread file) is no digest to check; the condition stands alone."""
    condition = {"CopySourceIfMatch": f'"{source.etag}"'} if source.etag else {}
    try:
        answer = s3.copy_object(
            source.key,
            destination,
            bucket,
            bucket,
            source_version_id=source.s3_version_id,
            ChecksumAlgorithm="SHA256",
            **condition,
        )
    except ClientError as error:
        if _status(error) == 412:
            return False
        raise
    copied = ((answer or {}).get("CopyObjectResult") or {}).get("ChecksumSHA256")
    expected = _sha256_checksum(source.sha256)
    return copied is None or expected is None or copied == expected


def _put_local_copy(s3: S3Hook, bucket: str, source: SourceFile, local_copy: Path, destination: str) -> None:
    """PutObject of the bytes read, with their SHA-256 for S3 to verify: the object changed since it was read."""
    log.warning(
        "%s: changed since it was read (ETag %s); filing the bytes read, from the local copy, to %s",
        source.key,
        source.etag,
        destination,
    )
    with local_copy.open("rb") as body:
        s3.get_conn().put_object(
            Bucket=bucket, Key=destination, Body=body, ChecksumSHA256=_sha256_checksum(source.sha256)
        )


def _delete_version(s3: S3Hook, bucket: str, source: SourceFile) -> None:
    """Delete the version read: by its VersionId, else only while its ETag is the one read (a conditional
    DeleteObject), so that a newer upload of the key stays under incoming/ for the next run."""
    client = s3.get_conn()
    if source.s3_version_id:
        client.delete_object(Bucket=bucket, Key=source.key, VersionId=source.s3_version_id)
        return
    condition = {"IfMatch": f'"{source.etag}"'} if source.etag else {}
    try:
        client.delete_object(Bucket=bucket, Key=source.key, **condition)
    except ClientError as error:
        if _status(error) == 412:
            log.warning(
                "%s: a newer object replaced the one read (ETag %s) before it was removed; it stays under %s "
                "for the next run",
                source.key,
                source.etag,
                config.INCOMING_PREFIX,
            )
        elif _status(error) != 404:  # gone already: nothing to remove
            raise


def _status(error: ClientError) -> int | None:
    return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _sha256_checksum(sha256: str) -> str | None:
    """A hex SHA-256 as S3 writes checksums (base64 of the digest); None for a stand-in that is no digest."""
    try:
        digest = bytes.fromhex(sha256)
    except ValueError:
        return None
    return base64.b64encode(digest).decode() if len(digest) == 32 else None


def quarantine(s3: S3Hook, bucket: str, upload: Upload, report: dict) -> str:
    destination = filed_key(upload.key, config.QUARANTINE_PREFIX)
    s3.load_string(
        json.dumps(report, indent=2, default=str),
        key=destination + config.REPORT_SUFFIX,
        bucket_name=bucket,
        replace=True,
    )
    move(s3, bucket, upload, destination)
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
