"""The stack's S3 and SNS: a moto server over HTTP on a port of the stack, its resources, and the alert inbox."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from devstack.aws import (
    TOPIC,
    UPLOADS_QUEUE,
    provision,
    provision_upload_events,
    read_alerts,
    remove_upload_events,
)
from devstack.processes import alive, read_pid, spawn, stop_recorded_group
from devstack.state import StackState, free_port, port_open

REGION = "eu-west-1"
MOTO_ACCOUNT = "123456789012"
# moto accepts any credentials; these are its documented placeholders, not a secret.
MOTO_KEY_ID = MOTO_SECRET = "testing"


class MotoServer:
    """One moto server process, its pid and log under the stack's ``home``."""

    def __init__(self, home: Path, state: StackState) -> None:
        self.home = home
        self.state = state

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.state.moto_port}"

    @property
    def topic_arn(self) -> str:
        return f"arn:aws:sns:{REGION}:{MOTO_ACCOUNT}:{TOPIC}"

    @property
    def uploads_queue_url(self) -> str:
        """The queue the bucket notifies of uploads when detection is by events (as moto names its URLs)."""
        return f"{self.url}/{MOTO_ACCOUNT}/{UPLOADS_QUEUE}"

    @property
    def pid_file(self) -> Path:
        return self.home / "moto.pid"

    def aws_connection(self) -> dict:
        """The Airflow AWS connection that reaches this server (its ``endpoint_url`` in the extra)."""
        return {
            "conn_type": "aws",
            "login": MOTO_KEY_ID,
            "password": MOTO_SECRET,
            "extra": {"endpoint_url": self.url, "region_name": REGION},
        }

    def client(self, service: str):
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=MOTO_KEY_ID,
            aws_secret_access_key=MOTO_SECRET,
        )

    def running(self) -> bool:
        return read_pid(self.pid_file) is not None and port_open(self.state.moto_port)

    def start(self, timeout: float = 30) -> None:
        if self.running():
            return
        if port_open(self.state.moto_port):  # someone else took the port: choose another, remember it
            self.state.moto_port = free_port()
            self.state.save(self.home)
        pid = spawn(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.state.moto_port)],
            self.home / "moto.log",
        )
        self.pid_file.write_text(str(pid))
        deadline = time.monotonic() + timeout
        while not port_open(self.state.moto_port):
            if not alive(pid) or time.monotonic() > deadline:
                raise RuntimeError(f"the moto server did not start; see {self.home / 'moto.log'}")
            time.sleep(0.1)

    def stop(self) -> None:
        stop_recorded_group(self.pid_file)

    def provision(self) -> None:
        """The bucket, the topic and its SQS inbox, and when the stack detects uploads by events, the upload
        queue the bucket notifies (otherwise no notification). Idempotent: moto keeps them in memory only."""
        s3, sqs = self.client("s3"), self.client("sqs")
        provision(s3, self.client("sns"), sqs)
        if self.state.trigger == "events":
            provision_upload_events(s3, sqs)
        else:
            remove_upload_events(s3)

    def read_alerts(self) -> list[dict]:
        """Take every alert waiting in the SQS inbox: ``{"subject", "message"}`` each."""
        return read_alerts(self.client("sqs"))
