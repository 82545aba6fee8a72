"""The embedded stack's promises: starting twice is harmless, stopping leaves no process behind."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

from devstack.processes import alive, read_pid
from devstack.stack import AIRFLOW_SERVICES, Stack

pytestmark = pytest.mark.integration

AIRFLOW_STOPPED = {f"airflow {service}": False for service in AIRFLOW_SERVICES}


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return [pid for pid in found if alive(pid)]


@pytest.fixture
def own_stack():
    home = Path(tempfile.mkdtemp(prefix="retail-stack-"))
    home.chmod(0o755)
    stack = Stack(home)
    yield stack
    stack.down()
    shutil.rmtree(home, ignore_errors=True)


def test_up_twice_is_harmless_and_down_leaves_nothing(own_stack: Stack) -> None:
    own_stack.up()
    postgres_pid = int((own_stack.postgres.data_dir / "postmaster.pid").read_text().split()[0])
    moto_pid = read_pid(own_stack.home / "moto.pid")
    own_stack.up()  # the infrastructure only: the Airflow services are `start_airflow`'s (tests/e2e)
    assert own_stack.status() == {"postgres": True, "moto": True, **AIRFLOW_STOPPED}
    assert int((own_stack.postgres.data_dir / "postmaster.pid").read_text().split()[0]) == postgres_pid
    assert read_pid(own_stack.home / "moto.pid") == moto_pid

    url = subprocess.run(
        [sys.executable, "-m", "devstack", "--home", str(own_stack.home), "warehouse-url"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert url.startswith("postgresql://postgres:")
    with psycopg.connect(url) as conn:
        assert conn.execute("select count(*) from bronze.load_ledger").fetchone() == (0,)

    own_stack.down()
    own_stack.down()
    assert own_stack.status() == {"postgres": False, "moto": False, **AIRFLOW_STOPPED}
    assert not alive(postgres_pid)
    assert not alive(moto_pid)
    assert processes_mentioning(str(own_stack.home)) == []
