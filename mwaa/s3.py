"""The MWAA bucket: the bundle synced into it (unchanged files keep their S3 version), and buckets emptied."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from mwaa import DeployError
from mwaa.bundle import VERSIONED_FILES, bundle_files

DAGS_PREFIX = "dags/"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _put_if_changed(s3, bucket: str, key: str, path: Path, *, may_exist: bool = True) -> tuple[str | None, bool]:
    """Upload unless the object already holds these bytes. Returns (version id, uploaded).

    The content hash travels as object metadata: ETags are not content hashes under SSE-KMS, and an
    unchanged file must keep its version, or each deploy would update the MWAA environment for nothing.
    """
    from botocore.exceptions import ClientError

    digest = _sha256(path)
    if may_exist:
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
        else:
            if head.get("Metadata", {}).get("sha256") == digest:
                return head.get("VersionId"), False
    response = s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), Metadata={"sha256": digest})
    return response.get("VersionId"), True


def upload_bundle(s3, bucket: str, bundle_dir: Path, *, log: Callable[[str], None] = print) -> dict[str, str]:
    """Sync the bundle into the MWAA bucket. Returns the S3 version id of each root file.

    dags/ is mirrored (new and changed files uploaded, keys no longer in the bundle deleted, the latter
    after the former so no DAG is ever missing its code); the root files are uploaded when changed.
    """
    dags = bundle_dir / "dags"
    local = {DAGS_PREFIX + path.relative_to(dags).as_posix(): path for path in bundle_files(dags)}
    if not local:
        raise DeployError(f"{dags} is empty: build the bundle first")
    remote = {
        entry["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=DAGS_PREFIX)
        for entry in page.get("Contents", [])
    }
    uploaded = [
        key for key, path in local.items() if _put_if_changed(s3, bucket, key, path, may_exist=key in remote)[1]
    ]
    stale = sorted(key for key in remote - local.keys() if not key.endswith("/"))
    for start in range(0, len(stale), 1000):
        batch = [{"Key": key} for key in stale[start : start + 1000]]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
    log(f"s3://{bucket}/{DAGS_PREFIX}: {len(local)} files, {len(uploaded)} uploaded, {len(stale)} deleted")

    versions = {}
    for name in VERSIONED_FILES:
        version, changed = _put_if_changed(s3, bucket, name, bundle_dir / name)
        if not version or version == "null":
            raise DeployError(f"s3://{bucket} is not versioned: MWAA reads {name} by its S3 object version")
        versions[name] = version
        log(f"s3://{bucket}/{name}: {'uploaded' if changed else 'unchanged'}, version {version}")
    return versions


def empty_bucket(s3, bucket: str, *, log: Callable[[str], None] = print) -> int:
    """Delete every object version and delete marker, so that the bucket itself can be deleted."""
    from botocore.exceptions import ClientError

    deleted = 0
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            entries = [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
            objects = [{"Key": entry["Key"], "VersionId": entry["VersionId"]} for entry in entries]
            for start in range(0, len(objects), 1000):
                batch = {"Objects": objects[start : start + 1000], "Quiet": True}
                response = s3.delete_objects(Bucket=bucket, Delete=batch)
                if response.get("Errors"):
                    raise DeployError(f"s3://{bucket}: could not delete {response['Errors'][:3]}")
            deleted += len(objects)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "NoSuchBucket":
            return 0
        raise
    log(f"s3://{bucket}: deleted {deleted} object versions and delete markers")
    return deleted
