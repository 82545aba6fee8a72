"""Start and stop background processes of the stack, each in its own process group."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path


def spawn(argv: list[str], log_file: Path, env: dict[str, str] | None = None) -> int:
    """Start ``argv`` detached, in a new session (its own process group), logging to ``log_file``."""
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    # Reap it when it ends, so that a long-lived caller (the tests) is left with no zombie.
    threading.Thread(target=process.wait, daemon=True).start()
    return process.pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a child of ours that exited but was not reaped yet is gone all the same
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name is in parentheses and may hold spaces: split after its closing one.
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue
        if int(group) == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def stop_group(pid: int, timeout: float = 10) -> None:
    """SIGTERM the whole process group, then SIGKILL whatever of it is left after ``timeout`` seconds.

    The group, not the leader: Airflow's scheduler and api-server leave workers behind when only the
    leader goes, and the scheduler may ignore SIGTERM for a while.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not group_members(pid):
                return
            time.sleep(0.1)


def read_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if that process is alive."""
    try:
        pid = int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if alive(pid) else None


def recorded_group(pid_file: Path) -> int | None:
    """The process group whose leader's pid ``pid_file`` records, while any member of it lives, leader or not: a
    leader that died (a killed scheduler) leaves its children (LocalExecutor workers) in its group."""
    try:
        pgid = int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pgid if group_members(pgid) else None


def stop_recorded_group(pid_file: Path, timeout: float = 10) -> None:
    """Stop whatever is left of the group ``pid_file`` records (``stop_group``), then forget it."""
    pgid = recorded_group(pid_file)
    if pgid is not None:
        stop_group(pgid, timeout=timeout)
    pid_file.unlink(missing_ok=True)
