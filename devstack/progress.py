"""Progress a user can watch: short stage lines with elapsed seconds, for the demo and other long commands.

``airflow dags test`` writes everything (Airflow's own chatter, every task's log, dbt's output) to one log
file. ``LogFollower`` reads that file as it grows and prints only what tells a user where the run is: each
task as it starts, the stages the pipeline's own modules log at INFO (include/retail: file read, rows typed,
COPY progress, filed), dbt's result for each model and test as it finishes, and errors with the task they
happened in.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from include.retail.platform.text import printable

# Colours (SGR sequences) as dbt and the log renderer write them: taken out. Any other control character left,
# a file's value among them (``ESC[2J`` clears the screen, CR rewrites the line), is shown escaped.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# structlog's console lines: "<timestamp> [<level>] <message> [<logger>] key=value ..."
_LINE = re.compile(r"^\S+ \[(?P<level>\w+)\s*\] (?P<message>.*?)\s+\[(?P<logger>[\w.]+)\]")
_TASK_STARTS = re.compile(r"\[DAG TEST\] starting task_id=(?P<task>\S+) map_index=(?P<index>-?\d+)")
# dbt's per-node result, as Cosmos's producer relays it: "12 of 159 PASS not_null_... ..... [PASS in 0.21s]"
_DBT_RESULT = re.compile(
    r"(?P<n>\d+) of (?P<total>\d+) (?P<status>OK created|PASS|FAIL|ERROR|WARN|SKIP)\w* "
    r"(?P<what>.*?) \.*\s*\[(?P<detail>[^\]]*)\]"
)
_OWN_LOGGERS = "include.retail."


class Clock:
    """Seconds since the command started, as the prefix of each stage line."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def stage(self, text: str, out: TextIO | None = None) -> None:
        """Print ``text`` as one line; a control character in it (from a file's name or value) shown escaped."""
        print(f"  [{time.perf_counter() - self.started:6.1f}s] {printable(text)}", file=out or sys.stdout, flush=True)


def summarise(line: str, state: dict) -> str | None:
    """The stage line for one log line, or None when it tells a user nothing. ``state`` remembers the task
    that is running, to name it beside an error. What it returns is printable: a rejected value's control
    characters are shown escaped, never sent to the terminal."""
    text = _stage_line(_ANSI.sub("", line.rstrip("\r\n")), state)
    return None if text is None else printable(text)


def _stage_line(line: str, state: dict) -> str | None:
    if started := _TASK_STARTS.search(line):
        task = started["task"] + (f"[{started['index']}]" if started["index"] != "-1" else "")
        state["task"] = task
        return None if task.startswith("dbt.") else f"task {task}"
    if result := _DBT_RESULT.search(line):
        what = " ".join(result["what"].split()).removeprefix("sql ")
        return f"dbt {result['n']:>3}/{result['total']} {result['status'].split()[0]:5} {what} ({result['detail']})"
    parsed = _LINE.match(line)
    if not parsed:
        return None
    if parsed["level"] in ("error", "critical"):
        return f"ERROR in {state.get('task', 'the run')}: {parsed['message'][:300]}"
    if parsed["level"] == "info" and parsed["logger"].startswith(_OWN_LOGGERS):
        return parsed["message"][:300]
    return None


class LogFollower:
    """While in use, print the stage lines of what is appended to ``log`` (from its current end on)."""

    def __init__(self, log: Path, clock: Clock, out: TextIO | None = None) -> None:
        self.log = log
        self.clock = clock
        self.out = out
        self.state: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._offset = log.stat().st_size if log.exists() else 0

    def __enter__(self) -> LogFollower:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _follow(self) -> None:
        pending = ""
        while True:
            stopping = self._stop.is_set()
            if self.log.exists():
                # newline="": a CR inside a logged value stays in its line, to be shown escaped, not as a break.
                with self.log.open(errors="replace", newline="") as handle:
                    handle.seek(self._offset)
                    chunk = handle.read()
                    self._offset = handle.tell()
                pending += chunk
                *complete, pending = pending.split("\n")
                for line in complete:
                    if (text := summarise(line, self.state)) is not None:
                        self.clock.stage(text, self.out)
            if stopping:
                return
            self._stop.wait(0.2)
