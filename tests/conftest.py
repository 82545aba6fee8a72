"""One embedded stack for the whole session, configured before anything imports Airflow.

Airflow reads its configuration when first imported, so the stack's settings (a temporary
AIRFLOW_HOME with SQLite metadata, connections to the test PostgreSQL and moto server, Variables)
are put in the environment here, at collection time. The processes start only when a test asks for
the ``stack`` fixture.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import Stack
from tests.compose.engine import StartedEngine, docker_engine

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RETAIL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
REAL_WORKBOOK = SHARED_DATA / "online_retail.xlsx"
REAL_CSV = SHARED_DATA / "online_retail.csv"

_HOME = Path(tempfile.mkdtemp(prefix="retail-tests-"))
_HOME.chmod(0o755)  # the postgres server user must reach the cluster directory inside
STACK = Stack(_HOME)
os.environ.update(STACK.environment())


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


# A SIGTERM (a CI timeout, `kill`) ends the session like Ctrl-C, so that the stack is still stopped.
signal.signal(signal.SIGTERM, _interrupt)


@pytest.fixture(scope="session")
def stack() -> Stack:
    """The running stack: PostgreSQL with the warehouse schema, moto with bucket and topic, Airflow's DB."""
    STACK.up()
    return STACK


@pytest.fixture(scope="session")
def real_workbook() -> Path:
    if not REAL_WORKBOOK.is_file():
        pytest.skip(f"the real Online Retail workbook is not at {REAL_WORKBOOK} (../shared/data is absent)")
    return REAL_WORKBOOK


@pytest.fixture(scope="session")
def real_csv() -> Path:
    if not REAL_CSV.is_file():
        pytest.skip(f"the real Online Retail CSV is not at {REAL_CSV} (../shared/data is absent)")
    return REAL_CSV


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    STACK.down()
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def docker() -> Iterator[StartedEngine | None]:
    """The Docker engine of the container tests (tests/compose, tests/mwaa): the running one (``None``), or one
    started now and stopped at the end of the session, after every project on it is down."""
    with docker_engine() as engine:
        yield engine
