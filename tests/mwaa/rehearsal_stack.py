"""The MWAA rehearsal's compose project: a deployment of infra/retail-pipeline.yaml onto moto and a private "RDS".

The work directory holds a copy of ``docker-compose.rehearsal.yaml``, the ``rehearsal.env`` its MWAA stand-in
containers read (written by ``mwaa.rehearsal`` from the template), and the bundle as ``make mwaa-bundle`` builds it
(edited in place for the dags-only and breaking changes). Nothing of the working tree reaches the containers but
that bundle, through the MWAA bucket. Artifacts (compose log, timings, every service's log on failure) are kept in
``test-artifacts/mwaa/``.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import httpx

from devstack.airflow_api import AirflowApi
from devstack.state import free_port
from mwaa.rehearsal import (
    ENVIRONMENT_NAME,
    Deployment,
    env_file_text,
    provision_aws,
    rehearsal_env,
    render_deployment,
)
from mwaa.rehearsal_database import master_user_sql
from mwaa.s3 import upload_bundle
from mwaa.template import REGION
from tests.compose.compose_stack import ComposeProject

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
COMPOSE_FILE = HERE / "docker-compose.rehearsal.yaml"
ENV_FILE = "rehearsal.env"
ARTIFACTS = REPO_ROOT / "test-artifacts" / "mwaa"
BACKING_SERVICES = ("moto", "rds", "metadata-db", "redis")
AIRFLOW_SERVICES = ("migrate-db", "scheduler", "triggerer", "dag-processor", "api-server", "worker")
ONE_OFF = "migrate-db"
ADMIN_USER = "admin"
AIRFLOW_HOME = "/usr/local/airflow"
# The stand-in's entrypoint says how long the user's startup script took (tests/compose/standins/mwaa).
STARTUP_TIME = re.compile(r"startup\.sh took (\d+(?:\.\d+)?) ?s")
LOG_TAIL = 60


class Rehearsal(ComposeProject):
    """One rehearsal (``retail-mwaa-rehearsal-…``), with ports and passwords of its own."""

    def __init__(self) -> None:
        ports: set[int] = set()
        while len(ports) < 2:
            ports.add(free_port())
        self.moto_port, self.api_port = sorted(ports)
        self.admin_password = secrets.token_urlsafe(18)
        super().__init__(
            [COMPOSE_FILE.name],
            prefix="retail-mwaa-rehearsal",
            artifacts=ARTIFACTS,
            one_off=ONE_OFF,
            label="mwaa",
            # What the compose file interpolates: ports, and the secrets MWAA keeps for itself.
            shell_env={
                "MOTO_PORT": str(self.moto_port),
                "API_PORT": str(self.api_port),
                "RDS_SUPERUSER_PASSWORD": secrets.token_urlsafe(18),
                "MWAA_REHEARSAL_ADMIN_PASSWORD": self.admin_password,
                "METADATA_DB_PASSWORD": secrets.token_urlsafe(18),
                "MWAA_FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
                "MWAA_WEBSERVER_SECRET_KEY": secrets.token_urlsafe(32),
            },
            log_lines=400,
        )
        self.bundle = self.work_dir / "bundle"
        self.deployment: Deployment | None = None
        self.versions: dict[str, str] = {}

    # -- the work directory ------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """The compose file, and an env file without the deployment yet (Compose reads it for every command)."""
        shutil.copyfile(COMPOSE_FILE, self.work_dir / COMPOSE_FILE.name)
        (self.work_dir / ENV_FILE).write_text("# not provisioned yet\n")
        self.work_dir.chmod(0o755)

    def build_bundle(self) -> None:
        """What ``make mwaa-bundle`` runs, into the work directory (the checkout's build/ is left alone)."""
        result = subprocess.run(
            [sys.executable, "-m", "mwaa", "bundle", "--out", str(self.bundle)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"`python -m mwaa bundle` failed:\n{result.stdout}{result.stderr}")
        print(f"[mwaa] {result.stdout.strip()}", flush=True)

    # -- provisioning, as the deploy does it -------------------------------------------------------------------

    def aws(self, service: str):
        return boto3.client(
            service,
            endpoint_url=f"http://127.0.0.1:{self.moto_port}",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name=REGION,
        )

    def provision(self) -> Deployment:
        """The stack's resources in moto from the template, "RDS"'s master user, the bundle uploaded, the env."""
        deployment = render_deployment(environment_name=ENVIRONMENT_NAME)
        provision_aws(self.aws("s3"), self.aws("sns"), self.aws("sqs"), self.aws("secretsmanager"), deployment)
        self.deployment = deployment
        # RDS creates its master user from the template's MasterUsername/MasterUserPassword. The instance is
        # private, as RDS is: its superuser runs the statements inside the container, never through a port.
        self.psql(master_user_sql(deployment.master_user), database="postgres")
        self.upload()
        return deployment

    def upload(self) -> dict[str, str]:
        """Sync the bundle to the MWAA bucket as ``make mwaa-upload`` does, and record the root files' versions in
        the env file, as ``make mwaa-deploy`` hands them to the environment (a changed version restarts it)."""
        assert self.deployment is not None
        lines: list[str] = []
        self.versions = upload_bundle(self.aws("s3"), self.deployment.mwaa_bucket, self.bundle, log=lines.append)
        print("[mwaa] " + "\n[mwaa] ".join(lines), flush=True)
        header = (
            f"Written by tests/mwaa from infra/retail-pipeline.yaml (mwaa.rehearsal), EnvironmentName "
            f"{ENVIRONMENT_NAME}.\nNo AIRFLOW_CONN_* or AIRFLOW_VAR_*: connections and Variables are in moto's "
            "Secrets Manager."
        )
        (self.work_dir / ENV_FILE).write_text(
            env_file_text(rehearsal_env(self.deployment, self.versions), header=header)
        )
        return dict(self.versions)

    # -- reaching the deployment -------------------------------------------------------------------------------

    def psql(self, statements: str, *, database: str = "retail") -> list[list[str]]:
        """Run SQL as the rds server's superuser, inside its container (the instance publishes no port): rows of
        the last statement, tab-separated fields. Raises on any SQL error."""
        result = self.exec(
            "rds",
            *("psql", "-X", "-q", "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1"),
            *("--no-align", "--tuples-only", "--field-separator", "\t", "-f", "-"),
            input=statements,
        )
        return [line.split("\t") for line in result.stdout.splitlines() if line]

    def api(self) -> AirflowApi:
        return AirflowApi(f"http://127.0.0.1:{self.api_port}", ADMIN_USER, self.admin_password, timeout=30)

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", service, capture=True, timeout=120)

    def has_file(self, service: str, path: str, containing: str | None = None) -> bool:
        """Whether ``path`` exists in the running ``service``'s container (and holds ``containing``)."""
        check = ["test", "-e", path] if containing is None else ["grep", "-qF", containing, path]
        return self.exec(service, *check, check=False).returncode == 0

    def startup_seconds(self) -> dict[str, float]:
        """Each Airflow service's ``startup.sh took N s`` (its latest container's log)."""
        found = {}
        for service in AIRFLOW_SERVICES:
            times = STARTUP_TIME.findall(self.logs(service))
            if times:
                found[service] = float(times[-1])
        return found


# -- the REST API ------------------------------------------------------------------------------------------------


def wait_for(what: str, check: Callable[[], object], *, timeout: float, poll: float = 5) -> object:
    """``check()``'s first truthy value; AssertionError naming ``what`` (and the last error) after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            found = check()
        except (httpx.HTTPError, RuntimeError) as error:
            found, last_error = None, f" (last error: {error})"
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s{last_error}")
        time.sleep(poll)


def import_errors(api: AirflowApi) -> list[dict]:
    return api.get("/importErrors", limit=100)["import_errors"]


def task_instance(api: AirflowApi, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict:
    path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
    return api.get(path if map_index < 0 else f"{path}/{map_index}")


def task_log(api: AirflowApi, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
    """A try's log as text (Airflow 3 logs are structured: each event as JSON, exceptions included)."""
    log = api.get(
        f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{max(try_number, 1)}",
        map_index=map_index,
        full_content=True,
    )
    content = log.get("content", [])
    if isinstance(content, str):
        return content
    return "\n".join(_log_line(event) for event in content)


def _log_line(event: object) -> str:
    """One structured log event as a line: time, level, message, and each exception as ``Type: value``."""
    if not isinstance(event, dict) or "event" not in event:
        return event if isinstance(event, str) else json.dumps(event)
    line = " ".join(str(event[key]) for key in ("timestamp", "level", "event") if event.get(key))
    details = event.get("error_detail") or []
    errors = [f"{d.get('exc_type')}: {d.get('exc_value')}" for d in details if isinstance(d, dict)]
    return line + "".join(f"\n    {error}" for error in errors)


def run_report(api: AirflowApi, dag_id: str, run_id: str) -> str:
    """A run's task states, and the log tail of each task instance that failed or waits for a retry."""
    run = api.get(f"/dags/{dag_id}/dagRuns/{run_id}")
    instances = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=1000)["task_instances"]
    lines = [f"{dag_id} run {run_id}: {run['state']}"]
    lines += [f"  {ti['task_id']}[{ti['map_index']}]: {ti['state']} (try {ti['try_number']})" for ti in instances]
    for ti in instances:
        if ti["state"] not in ("failed", "up_for_retry"):
            continue
        try:
            text = task_log(api, dag_id, run_id, ti["task_id"], ti["try_number"], ti["map_index"])
        except httpx.HTTPError as error:
            text = f"(log not readable: {error})"
        lines += [f"--- {ti['task_id']}[{ti['map_index']}] log:", *text.splitlines()[-LOG_TAIL:]]
    return "\n".join(lines)
