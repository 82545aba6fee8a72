"""A full local Airflow detecting uploads by S3 events (``make up TRIGGER=events``), on a stack of its own.

Its own package, so that it runs after tests/e2e's sensor-mode services have stopped (two full Airflows
would share the machine's two cores). Stopped at the end; the services' logs are kept in
``test-artifacts/events-logs/``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import REPO_ROOT
from devstack.stack import Stack
from devstack.state import free_port

ARTIFACTS = REPO_ROOT / "test-artifacts"


@pytest.fixture(scope="package")
def events_stack() -> Iterator[Stack]:
    home = Path(tempfile.mkdtemp(prefix="retail-events-"))
    home.chmod(0o755)  # the postgres server user must reach the cluster directory inside
    stack = Stack(home, api_port=free_port())
    stack.use_trigger("events")
    try:
        stack.start_airflow()
        yield stack
    finally:
        stack.down()
        shutil.copytree(home / "logs", ARTIFACTS / "events-logs", dirs_exist_ok=True)
        shutil.rmtree(home, ignore_errors=True)
