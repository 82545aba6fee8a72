"""The upload sensor of ``retail_ingest`` (detection by ``sensor``, include/retail/detect/trigger.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException

from include.retail.platform import config
from include.retail.platform.alerts import alert_on_first_retry

# Any key under incoming/ but a folder marker (`incoming/`, `incoming/2026/`: what the S3 console's
# "Create folder" writes). fnmatch's `*` crosses slashes, so files in sub-folders match too.
INCOMING_FILES_PATTERN = config.INCOMING_PREFIX + "*[!/]"


class IncomingFilesSensor(S3KeySensor):
    """S3KeySensor for files under incoming/, without the two traps of the pinned versions:

    - no ``check_fn``: with one, the triggerer cannot decide, so it wakes a worker at every poke to run it
      (for ever, while a folder marker sits in incoming/); the wildcard leaves markers out instead;
    - only the wait's timeout is a skip: ``soft_fail`` would also turn every error raised in the trigger
      (access denied, an endpoint down) into a skip (apache/airflow#71255), and ``@continuous`` would start
      the next wait at once, failing silently for ever. Errors fail the task, which is retried with backoff
      and alerts.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            bucket_key=INCOMING_FILES_PATTERN,
            wildcard_match=True,
            deferrable=True,
            soft_fail=False,
            **kwargs,
        )

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context):
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except AirflowSensorTimeout as timeout:  # the base class's name for the deferral's timeout
            raise AirflowSkipException(f"no file arrived under {config.INCOMING_PREFIX} within the wait") from timeout

    def execute_complete(self, context, event: dict[str, Any]) -> None:
        # Without check_fn the trigger only ends with "success" or "error"; the base class raises on errors.
        super().execute_complete(context, event)
        self.log.info("a file waits under %s", config.INCOMING_PREFIX)


# The sensor's retries: a fault of S3 or of the credentials is retried with backoff for about an hour and a
# half (30 s doubling up to 10 min, 12 times) before the run fails; the first failed try alerts at once.
SENSOR_RETRY_ARGS = {
    "retries": 12,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "on_retry_callback": alert_on_first_retry,
}
