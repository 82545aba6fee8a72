"""A full local Airflow detecting uploads by S3 events (``make up TRIGGER=events``), on a stack of its own.

Its own package, so that it runs after tests/e2e's sensor-mode services have stopped (two full Airflows
would share the machine's two cores). Stopped at the end; the services' logs are kept in
``test-artifacts/events-logs/``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.stack import Stack
from tests.live_stack import running_stack


@pytest.fixture(scope="package")
def events_stack() -> Iterator[Stack]:
    with running_stack("events", trigger="events") as stack:
        yield stack
