"""The stack's Airflow: its home and settings, the services ``make up`` runs, and its CLI.

Each service runs in a process group of its own with its pid in ``<home>/airflow-<service>.pid`` and its log
in ``<home>/logs/``. The connections and Variables the tasks read come from the stack (``environment``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from devstack import REPO_ROOT
from devstack.processes import read_pid, spawn, stop_group, stop_recorded_group
from devstack.stale_runs import OrphanedRun, fail_orphaned_runs
from devstack.state import StackState, free_port, port_open
from include.retail.transform.dbt_project import cosmos_docs_setting

ADMIN_USER = "admin"
# The Airflow services `make up` runs, each in a process group of its own: `airflow <name>`, and the two task
# log servers on loopback (devstack/log_server.py) in place of those the scheduler and triggerer would start.
AIRFLOW_SERVICES = (
    "api-server",
    "scheduler",
    "dag-processor",
    "triggerer",
    "worker-log-server",
    "trigger-log-server",
)


class AirflowServices:
    """Airflow on the stack: ``environment`` gives the full environment (settings, connections, Variables)
    that its processes run with."""

    def __init__(self, home: Path, state: StackState, environment: Callable[[], dict[str, str]]) -> None:
        self.stack_home = home
        self.state = state
        self.environment = environment

    @property
    def home(self) -> Path:
        return self.stack_home / "airflow"

    @property
    def db(self) -> Path:
        return self.home / "airflow.db"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.state.api_port}"

    def settings(self) -> dict[str, str]:
        """Airflow's configuration for this stack, as ``AIRFLOW__*`` variables (and what its tasks need beside)."""
        return {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # A small machine: a few task slots, one API worker, a short wait for new DAG files.
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            # Uploads are picked up with no other action: the DAGs start unpaused.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            # The task log servers listen on loopback (devstack/log_server.py), at ports of this stack.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.state.worker_log_port),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.state.trigger_log_port),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "devstack.log_server.loopback_hostname",
            "AIRFLOW__API__PORT": str(self.state.api_port),
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": self.state.jwt_secret,
            # SimpleAuthManager with one local admin, whose password the stack generated (see start).
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "AIRFLOW__COSMOS__CACHE_DIR": str(self.stack_home / "cosmos-cache"),
            # Cosmos's plugin serves the dbt docs `dbt_project parse` builds (Browse > dbt docs in the UI).
            "AIRFLOW__COSMOS__DBT_DOCS_PROJECTS": cosmos_docs_setting(),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        }

    # -- the metadata DB -----------------------------------------------------------------------

    def migrate(self) -> None:
        """Create Airflow's SQLite metadata DB once (about 7 s); later calls cost nothing."""
        stamp = self.home / ".migrated"
        if stamp.exists():
            return
        self.home.mkdir(parents=True, exist_ok=True)
        self.run(["db", "migrate"], quiet=True)
        stamp.touch()

    def fail_orphaned_runs(self) -> list[OrphanedRun]:
        """Fail the runs a killed `airflow dags test` left running (devstack/stale_runs.py), saying so."""
        failed = fail_orphaned_runs(self.db)
        for run in failed:
            print(f"Marked failed: {run.describe()}", file=sys.stderr)
        return failed

    # -- the services --------------------------------------------------------------------------

    def pid_file(self, service: str) -> Path:
        return self.stack_home / f"airflow-{service}.pid"

    def service_command(self, service: str) -> list[str]:
        if service == "worker-log-server":
            return [sys.executable, "-m", "devstack.log_server", "--port", str(self.state.worker_log_port)]
        if service == "trigger-log-server":
            return [sys.executable, "-m", "devstack.log_server", "--port", str(self.state.trigger_log_port)]
        airflow = str(Path(sys.executable).parent / "airflow")
        if service in ("scheduler", "triggerer"):
            return [airflow, service, "--skip-serve-logs"]
        return [airflow, service]

    def start(self, timeout: float = 120) -> None:
        """Start the api-server, scheduler, dag-processor, triggerer and log servers; return once the API answers."""
        passwords = self.home / "passwords.json"
        passwords.touch(mode=0o600)
        passwords.write_text(json.dumps({ADMIN_USER: self.state.admin_password}))
        # Serialise the DAGs now, so the UI shows them at once rather than after the first parse loop.
        self.run(["dags", "reserialize"], quiet=True)
        logs = self.stack_home / "logs"
        logs.mkdir(exist_ok=True)
        self._choose_log_ports()
        env = {**os.environ, **self.environment()}
        for service in AIRFLOW_SERVICES:
            if read_pid(self.pid_file(service)) is None:
                # A service whose leader died may have left its group's workers behind: stop them first.
                stop_recorded_group(self.pid_file(service))
                if service == "api-server" and port_open(self.state.api_port):
                    raise RuntimeError(f"port {self.state.api_port} is taken; stop what listens there first")
                pid = spawn(self.service_command(service), logs / f"airflow-{service}.log", env=env)
                self.pid_file(service).write_text(str(pid))
        deadline = time.monotonic() + timeout
        while not self._api_healthy():
            if read_pid(self.pid_file("api-server")) is None or time.monotonic() > deadline:
                raise RuntimeError(f"the Airflow api-server did not come up; see {logs / 'airflow-api-server.log'}")
            time.sleep(0.5)

    def _choose_log_ports(self) -> None:
        """Keep the remembered log server ports unless something else took one (as moto's port)."""
        changed = False
        for name, service in (("worker_log_port", "worker-log-server"), ("trigger_log_port", "trigger-log-server")):
            if read_pid(self.pid_file(service)) is None and port_open(getattr(self.state, name)):
                setattr(self.state, name, free_port())
                changed = True
        if changed:
            self.state.save(self.stack_home)

    def stop(self) -> None:
        for service in reversed(AIRFLOW_SERVICES):
            stop_recorded_group(self.pid_file(service), timeout=15)

    def status(self) -> dict[str, bool]:
        return {f"airflow {service}": read_pid(self.pid_file(service)) is not None for service in AIRFLOW_SERVICES}

    def running(self) -> bool:
        return any(self.status().values())

    def api(self):
        """A REST API client of this Airflow, logged in as the local admin."""
        from devstack.airflow_api import AirflowApi

        return AirflowApi(self.api_url, ADMIN_USER, self.state.admin_password)

    def _api_healthy(self) -> bool:
        import httpx

        try:
            return httpx.get(f"{self.api_url}/api/v2/monitor/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    # -- the CLI -------------------------------------------------------------------------------

    def run(self, args: list[str], *, quiet: bool = False, log: Path | None = None) -> int:
        """Run the ``airflow`` CLI of this virtualenv against this stack.

        The command runs in a process group of its own, stopped whole if the caller is interrupted (Ctrl-C,
        SIGTERM): an ``airflow dags test`` left behind would keep its run going with nobody watching.
        """
        command = [str(Path(sys.executable).parent / "airflow"), *args]
        env = {**os.environ, **self.environment()}
        with contextlib.ExitStack() as stack:
            if log is not None:
                stdout, stderr = stack.enter_context(log.open("ab")), subprocess.STDOUT
            elif quiet:  # kept, to show what the command said if it fails
                stdout, stderr = stack.enter_context(tempfile.TemporaryFile()), subprocess.STDOUT
            else:
                stdout = stderr = None
            process = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr, start_new_session=True)
            try:
                returncode = process.wait()
            except BaseException:
                stop_group(process.pid, timeout=10)
                process.wait()
                raise
            if returncode and quiet:
                stdout.seek(0)
                said = stdout.read().decode(errors="replace").strip().splitlines()[-15:]
                raise RuntimeError(
                    f"`airflow {' '.join(args)}` failed with exit code {returncode}; it said:\n" + "\n".join(said)
                )
        return returncode
