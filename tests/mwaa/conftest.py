"""The engine, then one rehearsal project for the module; torn down (``down -v``, checked empty) whatever happens.

Order matters as in tests/compose: the engine must answer before anything is built, and the project must be down
(and checked gone) before an engine this session started is stopped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.compose.engine import StartedEngine
from tests.mwaa.rehearsal_stack import Rehearsal

_timings: list[str] = []


@pytest.fixture(scope="module")
def rehearsal(request: pytest.FixtureRequest, docker: StartedEngine | None) -> Iterator[Rehearsal]:
    """A prepared, not yet started, rehearsal; on a failure ``ps`` and every service's log go to the artifacts."""
    project = Rehearsal()
    try:
        with project.kept_until_down(request, project.prepare):
            yield project
    finally:
        _timings[:] = [project.timings_table()]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The timings, shown even when output is captured: what the rehearsal costs CI is part of its result."""
    if _timings:
        terminalreporter.write_sep("-", "MWAA rehearsal timings (test-artifacts/mwaa/timings.txt)")
        terminalreporter.write(_timings[0])
