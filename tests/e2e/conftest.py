"""A full local Airflow (api-server, scheduler, dag-processor, triggerer) on an embedded stack of its own.

Separate from the session's stack, on free ports, so that the scheduler's always-waiting ingest run never
meets the other tests' ``dag.test()`` runs; stopped (and checked stopped) by the last test of the module.
The services' logs are kept in ``test-artifacts/e2e-logs/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import Stack
from tests.live_stack import ARTIFACTS, running_stack


@pytest.fixture(scope="package")
def artifacts() -> Path:
    """Where the e2e tests leave what explains a run: screenshots and the services' logs (git-ignored)."""
    return ARTIFACTS


@pytest.fixture(scope="package")
def live_stack() -> Iterator[Stack]:
    with running_stack("e2e") as stack:
        yield stack
