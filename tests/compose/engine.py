"""The Docker engine the compose test talks to: the one already running, or one this test starts and stops.

CI machines have Debian's ``docker.io`` installed but no engine running, and nothing may be left running after
a test session; a developer's engine (Docker Desktop, a system service) must never be stopped by a test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from devstack.processes import alive, spawn, stop_group

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = REPO_ROOT / ".devstack"
INSTALL_HINT = "install one: `apt-get install docker.io` (Debian, as root) or Docker Desktop"
START_TIMEOUT = 60
STOP_TIMEOUT = 30


def engine_answers(timeout: float = 20) -> bool:
    """Whether ``docker info`` reaches an engine (``DOCKER_HOST`` and the CLI's context are honoured)."""
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=timeout, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _children(pid: int) -> list[int]:
    """Live direct children of ``pid``: dockerd starts its containerd in a session of its own."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError, ValueError):
            continue
        if int(ppid) == pid and state != "Z":
            children.append(int(stat.parent.name))
    return children


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class StartedEngine:
    """A ``dockerd`` this test started in its own session; its pid in ``.devstack/dockerd.pid`` for ``.ci/run``."""

    def __init__(self, dockerd: str, *, state_dir: Path = STATE_DIR, extra_args: tuple[str, ...] = ()) -> None:
        self.dockerd = dockerd
        self.extra_args = extra_args
        self.log_file = state_dir / "dockerd.log"
        self.pid_file = state_dir / "dockerd.pid"
        self.pid: int | None = None
        self.helpers: list[int] = []

    def start(self) -> None:
        """Start dockerd and wait until ``docker info`` answers; stop it again and raise with its log if not."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.write_text("")  # this start's log only: its tail explains a failed start
        self.pid = spawn([self.dockerd, *self.extra_args], self.log_file)
        self.pid_file.write_text(str(self.pid))
        deadline = time.monotonic() + START_TIMEOUT
        while not engine_answers(timeout=5):
            if not alive(self.pid) or time.monotonic() > deadline:
                state = "exited" if not alive(self.pid) else f"did not answer within {START_TIMEOUT} s"
                self.stop()
                raise RuntimeError(f"dockerd {state}; last lines of {self.log_file}:\n{_tail(self.log_file)}")
            time.sleep(1)
        # The containerd dockerd supervises runs in a session of its own, out of reach of dockerd's group.
        self.helpers = _children(self.pid)

    def stop(self) -> None:
        """SIGTERM dockerd's session (SIGKILL after STOP_TIMEOUT s), then whatever containerd it left behind."""
        if self.pid is not None:
            self.helpers = sorted({*self.helpers, *_children(self.pid)})
            stop_group(self.pid, timeout=STOP_TIMEOUT)
        for helper in self.helpers:
            if alive(helper):
                stop_group(helper, timeout=STOP_TIMEOUT)
        self.pid_file.unlink(missing_ok=True)
        self.pid = None


@contextmanager
def docker_engine() -> Iterator[StartedEngine | None]:
    """Yield ``None`` when an engine already answers (never stopped here), else one started and stopped here.

    Skips the test, saying why and how to get an engine, when none answers and none can be started.
    """
    if shutil.which("docker") is None:
        pytest.skip(f"the Docker CLI is not installed, so no engine can be reached; {INSTALL_HINT}")
    if engine_answers():
        yield None
        return
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        reason = "dockerd is not installed" if dockerd is None else "this is not root, and only root starts dockerd"
        pytest.skip(f"no Docker engine answers `docker info` and none can be started ({reason}); {INSTALL_HINT}")
    engine = StartedEngine(dockerd)
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()
