"""The ingest DAG's sensor."""

from __future__ import annotations

from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor


class IncomingFilesSensor(S3KeySensor):
    """Wait (deferred, in the triggerer) for objects under ``incoming/``, unless the run names its file.

    A run triggered with the ``key`` param has nothing to wait for: it goes straight to loading that key,
    which fails clearly if the object is missing, and is skipped if a waiting run has already filed it.
    """

    def execute(self, context) -> None:
        requested = (context["params"] or {}).get("key")
        if requested:
            self.log.info("This run names its file, %s: not waiting.", requested)
            return
        super().execute(context)
