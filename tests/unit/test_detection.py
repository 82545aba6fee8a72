"""S3 event messages to keys (include/retail/detect/events.py): what the events DAG loads from each message."""

from __future__ import annotations

import json
from types import SimpleNamespace
from urllib.parse import quote_plus

import pytest

from include.retail.detect.events import keys_from_asset_events, keys_from_message_body
from include.retail.detect.sensor import INCOMING_FILES_PATTERN


def s3_event(*keys: str, event_name: str = "ObjectCreated:Put") -> str:
    """A body as S3 sends it: each key URL-encoded (spaces as `+`)."""
    records = [
        {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventName": event_name,
            "s3": {"bucket": {"name": "retail-landing"}, "object": {"key": quote_plus(key), "size": 1}},
        }
        for key in keys
    ]
    return json.dumps({"Records": records})


@pytest.mark.parametrize(
    "key",
    [
        "incoming/online_retail.xlsx",
        "incoming/Online Retail 2011 (copy).xlsx",  # spaces arrive as `+`, brackets percent-encoded
        "incoming/a+b=c&d.csv",  # a literal `+` arrives as %2B
        "incoming/ventes_été_2011.xlsx",  # UTF-8, percent-encoded
        "incoming/2011/12/online_retail.csv",
    ],
)
def test_a_key_is_decoded_as_s3_encoded_it(key: str) -> None:
    assert keys_from_message_body(s3_event(key)) == [key]


def test_every_record_of_a_message_counts_in_order() -> None:
    keys = ["incoming/b.csv", "incoming/a.csv"]
    assert keys_from_message_body(s3_event(*keys, event_name="ObjectCreated:CompleteMultipartUpload")) == keys


def test_the_test_event_markers_other_prefixes_and_removals_give_nothing() -> None:
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "retail-landing"})
    assert keys_from_message_body(test_event) == []
    assert keys_from_message_body(s3_event("incoming/")) == []
    assert keys_from_message_body(s3_event("incoming/2011/")) == []
    assert keys_from_message_body(s3_event("processed/online_retail.xlsx")) == []
    assert keys_from_message_body(s3_event("incomingx/online_retail.xlsx")) == []
    assert keys_from_message_body(s3_event("incoming/a.csv", event_name="ObjectRemoved:Delete")) == []


def test_a_message_through_an_sns_topic_is_unwrapped() -> None:
    envelope = json.dumps({"Type": "Notification", "Message": s3_event("incoming/a.csv")})
    assert keys_from_message_body(envelope) == ["incoming/a.csv"]


@pytest.mark.parametrize("body", ["not json", "[1, 2]", json.dumps({"hello": "world"}), ""])
def test_a_message_that_is_no_s3_event_gives_nothing(body: str) -> None:
    assert keys_from_message_body(body) == []


def test_keys_of_the_asset_events_of_a_run_come_once_each_in_arrival_order() -> None:
    def asset_event(*bodies: str) -> SimpleNamespace:
        return SimpleNamespace(
            extra={"from_trigger": True, "payload": {"message_batch": [{"Body": body} for body in bodies]}}
        )

    events = [
        asset_event(s3_event("incoming/b.csv"), s3_event("incoming/a.csv")),
        asset_event(json.dumps({"Event": "s3:TestEvent"})),
        asset_event(s3_event("incoming/b.csv", "incoming/c.csv")),  # SQS delivers at least once
        SimpleNamespace(extra={}),  # an event not from the watcher (e.g. created by hand in the UI)
    ]
    assert keys_from_asset_events(events) == ["incoming/b.csv", "incoming/a.csv", "incoming/c.csv"]


@pytest.mark.parametrize(
    ("key", "matches"),
    [
        ("incoming/online_retail.xlsx", True),
        ("incoming/2011/online_retail.xlsx", True),
        ("incoming/", False),
        ("incoming/2011/", False),
        ("processed/online_retail.xlsx", False),
    ],
)
def test_the_sensor_pattern_leaves_out_folder_markers(key: str, matches: bool) -> None:
    from fnmatch import fnmatch

    assert fnmatch(key, INCOMING_FILES_PATTERN) is matches
