"""Engine, stand-in images, then one compose project for the module; torn down whatever happens.

Order matters: the engine must answer before the stand-ins can be built, and the project must be down (and
checked gone) before an engine this session started is stopped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.compose.compose_stack import ComposeStack
from tests.compose.engine import StartedEngine

_timings: list[str] = []


@pytest.fixture(scope="module")
def compose_stack(request: pytest.FixtureRequest, docker: StartedEngine | None) -> Iterator[ComposeStack]:
    """A prepared, not yet started, project; on a failure its containers and logs are kept in the artifacts."""
    from tests.compose.standins import OVERRIDE_FILE, ensure_images

    stack = ComposeStack(OVERRIDE_FILE)

    def prepare() -> None:
        stack.timed("stand-in images", ensure_images)
        stack.prepare()

    try:
        with stack.kept_until_down(request, prepare):
            yield stack
    finally:
        _timings[:] = [stack.timings_table()]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The timings, shown even when output is captured: what the compose test costs CI is part of its result."""
    if _timings:
        terminalreporter.write_sep("-", "docker-compose test timings (test-artifacts/compose/timings.txt)")
        terminalreporter.write(_timings[0])
