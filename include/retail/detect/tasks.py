"""The detection tasks of the ingest DAGs: which keys a run loads, by the sensor's listing or by upload events.

Each stands down (skips) when uploads are detected the other way (``trigger.stand_down_unless``), so that
exactly one path takes a file; both hand their keys to ``include.retail.ingest.tasks.load_files``.
"""

from __future__ import annotations

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowSkipException

from include.retail.platform import config
from include.retail.platform.connections import bucket, s3_hook


@task
def list_incoming() -> list[str]:
    """The keys the waiting run loads (incoming.keys_to_load); stands down when detection is by events."""
    from include.retail.detect.incoming import keys_to_load
    from include.retail.detect.trigger import Trigger, stand_down_unless

    stand_down_unless(Trigger.SENSOR)
    return keys_to_load(s3_hook(), bucket())


@task
def keys_from_events(triggering_asset_events=None) -> list[str]:
    """The keys a run woken by upload events loads (incoming.keys_woken_by_events); stands down when detection
    is by sensor, and skips when nothing waits."""
    from include.retail.detect.incoming import keys_woken_by_events
    from include.retail.detect.trigger import Trigger, stand_down_unless
    from include.retail.platform.assets import INCOMING_UPLOADS

    stand_down_unless(Trigger.EVENTS)
    events = triggering_asset_events[INCOMING_UPLOADS] if triggering_asset_events else []
    waiting = keys_woken_by_events(s3_hook(), bucket(), events)
    if not waiting:
        # S3's test event when the notification was configured, a folder marker, a repeated event.
        raise AirflowSkipException(f"nothing waits under {config.INCOMING_PREFIX}; nothing to load")
    return waiting
