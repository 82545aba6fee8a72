"""A full local Airflow (api-server, scheduler, dag-processor, triggerer) on an embedded stack of its own.

Separate from the session's stack, on free ports, so that the scheduler's always-waiting ingest run never
meets the other tests' ``dag.test()`` runs; stopped (and checked stopped) by the last test of the module.
The services' logs are kept in ``test-artifacts/e2e-logs/``.
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
def artifacts() -> Path:
    """Where the e2e tests leave what explains a run: screenshots and the services' logs (git-ignored)."""
    return ARTIFACTS


@pytest.fixture(scope="package")
def live_stack() -> Iterator[Stack]:
    home = Path(tempfile.mkdtemp(prefix="retail-e2e-"))
    home.chmod(0o755)  # the postgres server user must reach the cluster directory inside
    stack = Stack(home, api_port=free_port())
    try:
        stack.start_airflow()
        yield stack
    finally:
        stack.down()
        # Keep the services' logs beside the screenshots: a failed run is explained by them.
        shutil.copytree(home / "logs", ARTIFACTS / "e2e-logs", dirs_exist_ok=True)
        shutil.rmtree(home, ignore_errors=True)
