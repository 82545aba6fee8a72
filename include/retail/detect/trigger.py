"""How uploads under incoming/ are detected: the setting that chooses between the sensor and S3's events.

Two ways, one chosen by the setting ``retail_trigger`` (an Airflow Variable, or ``AIRFLOW_VAR_RETAIL_TRIGGER``):

- ``sensor`` (the default): ``retail_ingest`` runs ``@continuous`` and its deferrable S3 sensor lists
  incoming/ from the triggerer every 5 s;
- ``events``: the bucket notifies an SQS queue on every ``s3:ObjectCreated:*`` under incoming/, an
  ``AssetWatcher`` in the triggerer long-polls that queue, and each message wakes ``retail_ingest_events``.

The sensor is in ``sensor.py``, the event messages and their watcher in ``events.py`` (apart, so that the events
DAG does not import S3 at parse time).
The setting is read when the DAG files are parsed (it decides each DAG's schedule), so that the path not
chosen has no schedule at all, and at run time by the tasks (a run that started before a switch stands
down), so that exactly one path takes a file.
"""

from __future__ import annotations

from enum import StrEnum

from airflow.sdk import Variable
from airflow.sdk.exceptions import AirflowSkipException

from include.retail.platform import config


class Trigger(StrEnum):
    SENSOR = "sensor"
    EVENTS = "events"


def chosen_trigger() -> Trigger:
    """The setting ``retail_trigger``; ``sensor`` when unset. An unknown value is an error naming the choices."""
    value = Variable.get(config.TRIGGER_VARIABLE, default=None) or Trigger.SENSOR
    try:
        return Trigger(value.strip().lower())
    except ValueError:
        choices = ", ".join(trigger.value for trigger in Trigger)
        raise ValueError(f"the setting {config.TRIGGER_VARIABLE} is {value!r}; expected one of: {choices}") from None


def stand_down_unless(trigger: Trigger) -> None:
    """Skip the calling task when uploads are detected the other way: a run that began before the setting
    changed must not take files the chosen path takes too."""
    chosen = chosen_trigger()
    if chosen is not trigger:
        raise AirflowSkipException(
            f"uploads are detected by {chosen.value} ({config.TRIGGER_VARIABLE}={chosen.value}); "
            f"this {trigger.value} run stands down"
        )
