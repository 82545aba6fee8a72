"""Detection by events: the keys S3's event notifications announce, and the uploads Asset's SQS watcher.

The bucket notifies an SQS queue on every ``s3:ObjectCreated:*`` under incoming/; an ``AssetWatcher`` in the
triggerer long-polls it, and each batch of messages becomes an asset event that wakes ``retail_ingest_events``
(the setting that chooses this path is in ``trigger.py``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus

from airflow.sdk import Variable

from include.retail.detect.trigger import Trigger
from include.retail.platform import config

log = logging.getLogger(__name__)


def keys_from_message_body(body: str) -> list[str]:
    """The keys of the files an S3 event notification announces, decoded, in the order given.

    S3 URL-encodes keys in its events (a space arrives as ``+``, ``é`` as ``%C3%A9``). Left out: the
    ``s3:TestEvent`` S3 sends when the notification is configured, events other than ``ObjectCreated``,
    folder markers, and keys outside incoming/. A body that is not an S3 event (or an SNS envelope of one)
    yields nothing, with a warning: the queue may have been shared by mistake.
    """
    try:
        event = json.loads(body)
        if isinstance(event, dict) and event.get("Type") == "Notification" and "Message" in event:
            event = json.loads(event["Message"])  # delivered through an SNS topic
    except (TypeError, ValueError):
        log.warning("ignored a message that is not JSON: %.200s", body)
        return []
    if not isinstance(event, dict):
        log.warning("ignored a message that is not an S3 event: %.200s", body)
        return []
    if event.get("Event") == "s3:TestEvent":
        return []
    keys = []
    for record in event.get("Records") or []:
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        raw = (((record.get("s3") or {}).get("object") or {}).get("key")) or ""
        key = unquote_plus(raw)
        if key.startswith(config.INCOMING_PREFIX) and not key.endswith("/"):
            keys.append(key)
    if "Records" not in event:
        log.warning("ignored a message that is not an S3 event: %.200s", body)
    return keys


def keys_from_asset_events(events: Iterable[Any]) -> list[str]:
    """The keys announced by the asset events that triggered a run (each carries the SQS messages the
    watcher received, ``extra["payload"]["message_batch"]``), without repeats, in arrival order."""
    keys: dict[str, None] = {}
    for event in events:
        payload = (getattr(event, "extra", None) or {}).get("payload") or {}
        for message in payload.get("message_batch") or []:
            for key in keys_from_message_body(message.get("Body", "")):
                keys.setdefault(key)
    return list(keys)


def watched_uploads():
    """The uploads Asset with its watcher: the triggerer long-polls the queue the bucket notifies, and every
    batch of messages it receives (and deletes) becomes one asset event carrying them.

    Built only when detection is by events: the queue exists only then. Long polling (20 s, SQS's maximum)
    returns as soon as a message arrives, so a file is seen within about a second, for about 4,300
    ReceiveMessage requests a day while idle.
    """
    from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
    from airflow.sdk import Asset, AssetWatcher

    from include.retail.platform.assets import INCOMING_UPLOADS

    queue_url = Variable.get(config.UPLOADS_QUEUE_VARIABLE, default=None)
    if not queue_url:
        raise ValueError(
            f"{config.TRIGGER_VARIABLE} is {Trigger.EVENTS.value} but the setting {config.UPLOADS_QUEUE_VARIABLE} "
            "(the URL of the SQS queue the bucket notifies) is not set"
        )
    trigger = MessageQueueTrigger(
        scheme="sqs",
        sqs_queue=queue_url,
        aws_conn_id=config.AWS_CONN_ID,
        max_messages=10,  # SQS's maximum per request
        wait_time_seconds=20,  # long polling: the request waits for a message, up to SQS's maximum
        waiter_delay=1,  # between two empty long polls
    )
    return Asset(
        name=INCOMING_UPLOADS.name,
        uri=INCOMING_UPLOADS.uri,
        group=INCOMING_UPLOADS.group,
        extra=INCOMING_UPLOADS.extra,
        watchers=[AssetWatcher(name="retail_uploads_queue", trigger=trigger)],
    )
