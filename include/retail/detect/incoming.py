"""Which files under incoming/ a run takes: listed in name order, folder markers left out, at most a run's share."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from include.retail.detect.events import keys_from_asset_events
from include.retail.platform import config

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

log = logging.getLogger(__name__)

# A waiting run takes at most this many files; the next run takes the rest.
MAX_FILES_PER_RUN = 100

# A run woken by upload events takes up to this many (below Airflow's max_map_length, 1024): the events
# that woke it are consumed, so what it leaves waits for the next upload.
MAX_FILES_PER_EVENT_RUN = 1000


def files_waiting(s3_objects: Iterable[dict]) -> list[str]:
    """The keys of the listed objects (S3 metadata dicts), folder markers left out."""
    return [item["Key"] for item in s3_objects if not item["Key"].endswith("/")]


def keys_to_load(s3: S3Hook, bucket: str, *, limit: int = MAX_FILES_PER_RUN) -> list[str]:
    """The files waiting under incoming/ (folder markers left out), in name order, at most ``limit``."""
    waiting = sorted(files_waiting(s3.iter_file_metadata(config.INCOMING_PREFIX, bucket_name=bucket)))
    if len(waiting) > limit:
        log.warning("%d files wait under %s; this run takes the first %d", len(waiting), config.INCOMING_PREFIX, limit)
    return waiting[:limit]


def keys_woken_by_events(s3: S3Hook, bucket: str, events: Iterable[Any]) -> list[str]:
    """The keys a run woken by upload ``events`` loads: those its events announce, and whatever else waits
    under incoming/, so that an event lost or left behind (apache/airflow#56050) never strands a file."""
    announced = keys_from_asset_events(events)
    waiting = keys_to_load(s3, bucket, limit=MAX_FILES_PER_EVENT_RUN)
    missing = [key for key in announced if key not in waiting]
    log.info("announced by %d event(s): %s", len(announced), ", ".join(announced) or "none")
    if missing:
        log.info("already taken (a repeated event, or an earlier run took it): %s", ", ".join(missing))
    if unannounced := [key for key in waiting if key not in announced]:
        log.info("waiting in incoming/ without an event of this run, taken too: %s", ", ".join(unannounced))
    return waiting
