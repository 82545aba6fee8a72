"""The embedded default stack: PostgreSQL, a moto server for S3 and SNS, and Airflow's own home.

Everything lives under one state directory (``.devstack/`` for ``make``, a temporary one in tests),
runs on 127.0.0.1 on free ports chosen once and remembered, and is reached the way AWS would be:
through Airflow connections and Variables, which ``Stack.environment()`` spells out as ``AIRFLOW_*``
variables. ``up`` and ``down`` can be called any number of times.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from devstack.aws import BUCKET, TOPIC, provision, read_alerts
from devstack.postgres import PostgresCluster, provision_owner
from devstack.processes import alive, read_pid, spawn, stop_group
from devstack.stale_runs import OrphanedRun, fail_orphaned_runs
from include.retail.warehouse import LOADER_ROLE, TRANSFORMER_ROLE, apply_ddl, provision_logins, scram_sha_256

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HOME = REPO_ROOT / ".devstack"

DATABASE = "retail"
REGION = "eu-west-1"
UI_PORT = 8080
ADMIN_USER = "admin"
# The warehouse's owner, as on RDS (whose master user may create roles and databases but is no superuser):
# it owns the database and applies include/sql. The cluster's superuser only creates it.
OWNER_ROLE = "retail_admin"
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
MOTO_ACCOUNT = "123456789012"
# moto accepts any credentials; these are its documented placeholders, not a secret.
MOTO_KEY_ID = MOTO_SECRET = "testing"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _password() -> str:
    return secrets.token_urlsafe(18)


def _jwt_secret() -> str:
    """64 random bytes: PyJWT warns on a shorter HMAC key for the SHA-512 the API signs with."""
    return secrets.token_urlsafe(64)


def _ui_port() -> int:
    """8080, as users expect, unless something else listens there."""
    return UI_PORT if not port_open(UI_PORT) else free_port()


@dataclass
class StackState:
    """What must stay the same across restarts: ports and generated passwords."""

    postgres_port: int = field(default_factory=free_port)
    moto_port: int = field(default_factory=free_port)
    superuser_password: str = field(default_factory=_password)
    owner_password: str = field(default_factory=_password)
    loader_password: str = field(default_factory=_password)
    transformer_password: str = field(default_factory=_password)
    api_port: int = field(default_factory=_ui_port)
    admin_password: str = field(default_factory=_password)
    jwt_secret: str = field(default_factory=_jwt_secret)
    worker_log_port: int = field(default_factory=free_port)
    trigger_log_port: int = field(default_factory=free_port)

    @classmethod
    def load_or_create(cls, path: Path) -> StackState:
        """Read the state, filling in (and saving) whatever an older version of it lacks."""
        known = json.loads(path.read_text()) if path.exists() else {}
        state = cls(**{name: value for name, value in known.items() if name in cls.__dataclass_fields__})
        if state.__dict__ != known:
            state.save(path)
        return state

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(self.__dict__, indent=2))


class Stack:
    def __init__(self, home: Path = DEFAULT_HOME, *, api_port: int | None = None) -> None:
        """``api_port`` pins the Airflow UI/API port (tests pass a free one); it is remembered."""
        self.home = home.resolve()
        self.state = StackState.load_or_create(self.home / "state.json")
        if api_port is not None and api_port != self.state.api_port:
            self.state.api_port = api_port
            self.state.save(self.home / "state.json")
        self.postgres = PostgresCluster(self.home / "postgres", self.state.postgres_port, self.state.superuser_password)

    # -- addresses -----------------------------------------------------------------------------

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.state.moto_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.state.api_port}"

    @property
    def topic_arn(self) -> str:
        return f"arn:aws:sns:{REGION}:{MOTO_ACCOUNT}:{TOPIC}"

    def role_passwords(self) -> dict[str, str]:
        return {LOADER_ROLE: self.state.loader_password, TRANSFORMER_ROLE: self.state.transformer_password}

    def warehouse_url(self, role: str = "postgres") -> str:
        """libpq URL of the warehouse database: as the cluster's superuser by default, as the database's owner
        (``retail_admin``), or as one of the job roles."""
        if role == OWNER_ROLE:
            return self.postgres.url(OWNER_ROLE, self.state.owner_password, DATABASE)
        if role in self.role_passwords():
            return self.postgres.url(role, self.role_passwords()[role], DATABASE)
        return self.postgres.url(database=DATABASE)

    def aws_connection(self) -> dict:
        return {
            "conn_type": "aws",
            "login": MOTO_KEY_ID,
            "password": MOTO_SECRET,
            "extra": {"endpoint_url": self.moto_url, "region_name": REGION},
        }

    def environment(self) -> dict[str, str]:
        """The Airflow configuration, connections and Variables that point at this stack."""
        return {
            "AIRFLOW_HOME": str(self.airflow_home),
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
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.airflow_home / 'airflow.db'}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            # The task log servers listen on loopback (devstack/log_server.py), at ports of this stack.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.state.worker_log_port),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.state.trigger_log_port),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "devstack.log_server.loopback_hostname",
            "AIRFLOW__API__PORT": str(self.state.api_port),
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": self.state.jwt_secret,
            # SimpleAuthManager with one local admin, whose password the stack generated (see start_airflow).
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.airflow_home / "passwords.json"),
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "AIRFLOW__COSMOS__CACHE_DIR": str(self.home / "cosmos-cache"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(self.aws_connection()),
            "AIRFLOW_CONN_RETAIL_WAREHOUSE": self.warehouse_url(LOADER_ROLE),
            "AIRFLOW_CONN_RETAIL_WAREHOUSE_ADMIN": self.warehouse_url(OWNER_ROLE),
            "AIRFLOW_CONN_RETAIL_WAREHOUSE_TRANSFORM": self.warehouse_url(TRANSFORMER_ROLE),
            # dbt outside Airflow (make docs, make dbt-build) reads its profile from these.
            "DBT_PROFILES_DIR": str(REPO_ROOT / "include" / "dbt"),
            "RETAIL_DBT_HOST": "127.0.0.1",
            "RETAIL_DBT_PORT": str(self.state.postgres_port),
            "RETAIL_DBT_USER": TRANSFORMER_ROLE,
            "RETAIL_DBT_PASSWORD": self.state.transformer_password,
            "RETAIL_DBT_DATABASE": DATABASE,
            "AIRFLOW_VAR_RETAIL_BUCKET": BUCKET,
            "AIRFLOW_VAR_RETAIL_ALERTS_TOPIC_ARN": self.topic_arn,
        }

    def boto3_client(self, service: str):
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.moto_url,
            region_name=REGION,
            aws_access_key_id=MOTO_KEY_ID,
            aws_secret_access_key=MOTO_SECRET,
        )

    # -- lifecycle -----------------------------------------------------------------------------

    def up(self) -> None:
        self.postgres.start()
        self._prepare_warehouse()
        self._start_moto()
        self._prepare_aws()
        self._migrate_airflow()
        self.fail_orphaned_runs()

    def down(self) -> None:
        self.stop_airflow()
        self._stop_moto()
        self.postgres.stop()

    def status(self) -> dict[str, bool]:
        return {
            "postgres": self.postgres.is_running(),
            "moto": self._moto_running(),
            **{f"airflow {service}": read_pid(self._pid_file(service)) is not None for service in AIRFLOW_SERVICES},
        }

    # -- the Airflow services ------------------------------------------------------------------

    @property
    def airflow_db(self) -> Path:
        return self.airflow_home / "airflow.db"

    def fail_orphaned_runs(self, **kwargs) -> list[OrphanedRun]:
        """Fail the runs a killed `airflow dags test` left running (devstack/stale_runs.py), saying so."""
        failed = fail_orphaned_runs(self.airflow_db, **kwargs)
        for run in failed:
            print(f"Marked failed: {run.describe()}", file=sys.stderr)
        return failed

    def _pid_file(self, service: str) -> Path:
        return self.home / f"airflow-{service}.pid"

    def _service_command(self, service: str) -> list[str]:
        if service == "worker-log-server":
            return [sys.executable, "-m", "devstack.log_server", "--port", str(self.state.worker_log_port)]
        if service == "trigger-log-server":
            return [sys.executable, "-m", "devstack.log_server", "--port", str(self.state.trigger_log_port)]
        airflow = str(Path(sys.executable).parent / "airflow")
        if service in ("scheduler", "triggerer"):
            return [airflow, service, "--skip-serve-logs"]
        return [airflow, service]

    def start_airflow(self, timeout: float = 120) -> None:
        """Start the api-server, scheduler, dag-processor, triggerer and log servers; return once the API answers."""
        self.up()
        passwords = self.airflow_home / "passwords.json"
        passwords.touch(mode=0o600)
        passwords.write_text(json.dumps({ADMIN_USER: self.state.admin_password}))
        # Serialise the DAGs now, so the UI shows them at once rather than after the first parse loop.
        self.run_airflow(["dags", "reserialize"], quiet=True)
        logs = self.home / "logs"
        logs.mkdir(exist_ok=True)
        self._choose_log_ports()
        env = {**os.environ, **self.environment()}
        for service in AIRFLOW_SERVICES:
            if read_pid(self._pid_file(service)) is None:
                if service == "api-server" and port_open(self.state.api_port):
                    raise RuntimeError(f"port {self.state.api_port} is taken; stop what listens there first")
                pid = spawn(self._service_command(service), logs / f"airflow-{service}.log", env=env)
                self._pid_file(service).write_text(str(pid))
        deadline = time.monotonic() + timeout
        while not self._api_healthy():
            if read_pid(self._pid_file("api-server")) is None or time.monotonic() > deadline:
                raise RuntimeError(f"the Airflow api-server did not come up; see {logs / 'airflow-api-server.log'}")
            time.sleep(0.5)

    def _choose_log_ports(self) -> None:
        """Keep the remembered log server ports unless something else took one (as moto's port)."""
        changed = False
        for name, service in (("worker_log_port", "worker-log-server"), ("trigger_log_port", "trigger-log-server")):
            if read_pid(self._pid_file(service)) is None and port_open(getattr(self.state, name)):
                setattr(self.state, name, free_port())
                changed = True
        if changed:
            self.state.save(self.home / "state.json")

    def stop_airflow(self) -> None:
        for service in reversed(AIRFLOW_SERVICES):
            pid = read_pid(self._pid_file(service))
            if pid is not None:
                stop_group(pid, timeout=15)
            self._pid_file(service).unlink(missing_ok=True)

    def api(self):
        """A REST API client of this stack's Airflow, logged in as the local admin."""
        from devstack.airflow_api import AirflowApi

        return AirflowApi(self.api_url, ADMIN_USER, self.state.admin_password)

    def airflow_running(self) -> bool:
        return any(read_pid(self._pid_file(service)) is not None for service in AIRFLOW_SERVICES)

    def _api_healthy(self) -> bool:
        import httpx

        try:
            return httpx.get(f"{self.api_url}/api/v2/monitor/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    # -- PostgreSQL ------------------------------------------------------------------------------

    def _prepare_warehouse(self) -> None:
        """The superuser creates the owner role and gives it the database; the owner applies the DDL, as on RDS."""
        provision_owner(self.postgres.url(), DATABASE, OWNER_ROLE, scram_sha_256(self.state.owner_password))
        with psycopg.connect(self.warehouse_url(OWNER_ROLE)) as conn:
            apply_ddl(conn)
            provision_logins(conn, {role: (role, password) for role, password in self.role_passwords().items()})

    def reset_warehouse(self, *, bronze: bool = True) -> None:
        """Drop what dbt built and, with ``bronze``, empty bronze and the ledger; then re-apply the DDL."""
        with psycopg.connect(self.warehouse_url()) as conn:
            if bronze:
                conn.execute("truncate bronze.retail_transactions, bronze.rejected_rows, bronze.load_ledger")
            conn.execute("drop schema if exists silver cascade")
            conn.execute("drop schema if exists gold cascade")
            apply_ddl(conn)

    # -- moto ----------------------------------------------------------------------------------

    @property
    def _moto_pid_file(self) -> Path:
        return self.home / "moto.pid"

    def _moto_running(self) -> bool:
        return read_pid(self._moto_pid_file) is not None and port_open(self.state.moto_port)

    def _start_moto(self, timeout: float = 30) -> None:
        if self._moto_running():
            return
        if port_open(self.state.moto_port):  # someone else took the port: choose another, remember it
            self.state.moto_port = free_port()
            self.state.save(self.home / "state.json")
        pid = spawn(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.state.moto_port)],
            self.home / "moto.log",
        )
        self._moto_pid_file.write_text(str(pid))
        deadline = time.monotonic() + timeout
        while not port_open(self.state.moto_port):
            if not alive(pid) or time.monotonic() > deadline:
                raise RuntimeError(f"the moto server did not start; see {self.home / 'moto.log'}")
            time.sleep(0.1)

    def _stop_moto(self) -> None:
        pid = read_pid(self._moto_pid_file)
        if pid is not None:
            stop_group(pid)
        self._moto_pid_file.unlink(missing_ok=True)

    def _prepare_aws(self) -> None:
        provision(self.boto3_client("s3"), self.boto3_client("sns"), self.boto3_client("sqs"))

    def read_alerts(self) -> list[dict]:
        """Take every alert waiting in the SQS inbox: ``{"subject", "message"}`` each."""
        return read_alerts(self.boto3_client("sqs"))

    # -- Airflow -------------------------------------------------------------------------------

    def _migrate_airflow(self) -> None:
        """Create Airflow's SQLite metadata DB once (about 7 s); later calls cost nothing."""
        stamp = self.airflow_home / ".migrated"
        if stamp.exists():
            return
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        self.run_airflow(["db", "migrate"], quiet=True)
        stamp.touch()

    def run_airflow(self, args: list[str], *, quiet: bool = False, log: Path | None = None) -> int:
        """Run the ``airflow`` CLI of this virtualenv against this stack.

        The command runs in a process group of its own, stopped whole if the caller is interrupted (Ctrl-C,
        SIGTERM): an ``airflow dags test`` left behind would keep its run going with nobody watching.
        """
        command = [str(Path(sys.executable).parent / "airflow"), *args]
        env = {**os.environ, **self.environment()}
        with contextlib.ExitStack() as stack:
            if log is not None:
                stdout, stderr = stack.enter_context(log.open("ab")), subprocess.STDOUT
            else:
                stdout = stderr = subprocess.DEVNULL if quiet else None
            process = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr, start_new_session=True)
            try:
                returncode = process.wait()
            except BaseException:
                stop_group(process.pid, timeout=10)
                process.wait()
                raise
        if returncode and quiet:
            raise RuntimeError(f"`airflow {' '.join(args)}` failed with exit code {returncode}")
        return returncode
