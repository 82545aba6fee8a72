"""Engine, stand-in images, then one compose project for the module; torn down whatever happens.

Order matters: the engine must answer before the stand-ins can be built, and the project must be down (and
checked gone) before an engine this session started is stopped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.compose.compose_stack import ComposeStack
from tests.compose.engine import StartedEngine, docker_engine

_timings: list[str] = []


@pytest.fixture(scope="session")
def docker() -> Iterator[StartedEngine | None]:
    """The engine: the running one (``None``), or one started now and stopped at the end of the session."""
    with docker_engine() as engine:
        yield engine


@pytest.fixture(scope="module")
def compose_stack(request: pytest.FixtureRequest, docker: StartedEngine | None) -> Iterator[ComposeStack]:
    """A prepared, not yet started, project; on a failure its containers and logs are kept in the artifacts."""
    from tests.compose.standins import OVERRIDE_FILE, ensure_images

    started = time.monotonic()
    failed_before = request.session.testsfailed
    stack = ComposeStack(OVERRIDE_FILE)
    setup_failed = True
    try:
        stack.timed("stand-in images", ensure_images)
        stack.prepare()
        setup_failed = False
        yield stack
    finally:
        try:
            if setup_failed or request.session.testsfailed > failed_before:
                stack.collect_diagnostics()
            stack.down()
        finally:
            stack.record("total", time.monotonic() - started)
            _timings[:] = [stack.timings_table()]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The timings, shown even when output is captured: what the compose test costs CI is part of its result."""
    if _timings:
        terminalreporter.write_sep("-", "docker-compose test timings (test-artifacts/compose/timings.txt)")
        terminalreporter.write(_timings[0])
