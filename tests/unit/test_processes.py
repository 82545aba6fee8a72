"""The embedded stack stops whole process groups, also when their leader is already gone (issue 22): a killed
scheduler's LocalExecutor workers, which ignore SIGTERM, survived `make up` and `make down`."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from devstack.processes import alive, group_members, recorded_group, spawn, stop_recorded_group

# A leader that starts a worker ignoring SIGTERM (as Airflow's executor workers may) and waits.
LEADER = (
    "import signal, subprocess, sys, time\n"
    "worker = subprocess.Popen([sys.executable, '-c', "
    "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)'])\n"
    "print(worker.pid, flush=True)\n"
    "time.sleep(300)\n"
)
# The same with a worker that ends on SIGTERM.
POLITE_LEADER = LEADER.replace("signal.signal(signal.SIGTERM, signal.SIG_IGN); ", "")


def test_a_group_whose_leader_was_killed_is_stopped_whole(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    pid_file = tmp_path / "service.pid"
    leader = spawn([sys.executable, "-c", LEADER], log)
    pid_file.write_text(str(leader))
    deadline = time.monotonic() + 30
    while not log.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = int(log.read_text().split()[0])
    assert os.getpgid(worker) == leader

    os.kill(leader, signal.SIGKILL)  # the scheduler killed: its worker lives on in its group
    deadline = time.monotonic() + 10
    while alive(leader) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(leader)
    assert alive(worker)
    assert recorded_group(pid_file) == leader

    stop_recorded_group(pid_file, timeout=1)  # SIGTERM is ignored: SIGKILL after the timeout

    assert not alive(worker)
    assert group_members(leader) == []
    assert not pid_file.exists()
    assert recorded_group(pid_file) is None
    stop_recorded_group(pid_file)  # nothing left: harmless


def test_make_down_stops_what_a_killed_scheduler_left(tmp_path: Path) -> None:
    """AirflowServices.stop, what `make down` (and `make up` before starting a dead service) runs."""
    from devstack.airflow_services import AirflowServices
    from devstack.state import StackState

    services = AirflowServices(tmp_path, StackState(), dict)
    log = tmp_path / "scheduler.log"
    leader = spawn([sys.executable, "-c", POLITE_LEADER], log)
    services.pid_file("scheduler").write_text(str(leader))
    deadline = time.monotonic() + 30
    while not log.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = int(log.read_text().split()[0])
    os.kill(leader, signal.SIGKILL)

    services.stop()

    assert not alive(worker)
    assert not services.pid_file("scheduler").exists()
