"""Run one measurement in a fresh process, as the benchmarks do, so that its peak memory is its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from devstack import REPO_ROOT


def measure_in_child(module: str, child: str, home: Path) -> dict:
    """Run ``python -m module --child child --home home``: the JSON of its last output line, plus its peak
    resident memory (``ru_maxrss`` from wait4) as ``peak_mb``."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--child", child, "--home", str(home)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,  # where `-m bench...` finds the package
    )
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{module} --child {child} failed")
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_mb"] = usage.ru_maxrss / 1024
    return result
