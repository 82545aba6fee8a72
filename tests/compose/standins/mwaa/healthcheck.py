#!/usr/local/bin/python3
"""Docker health check of an MWAA stand-in container: is its Airflow component up?

MWAA's own (healthcheck.py of aws/amazon-mwaa-docker-images) fails on the ``/tmp/mwaa/container_unhealthy``
marker and otherwise looks for the component's process. This does the same, and more where it is cheap: the
component must have been started by the entrypoint (``/tmp/mwaa/started.json``, written once startup.sh and
requirements.txt are done, so a cold start counts as "starting"), its process alive, and then
- api-server: ``/api/v2/monitor/health`` answers;
- scheduler: its health endpoint answers (enabled by the entrypoint for this check);
- dag-processor, triggerer: this host's job has heartbeaten in the metadata database within a minute (what
  ``airflow jobs check --local`` asks, without the 15 s of CPU its start costs on a 2-core machine);
- worker: the process only (MWAA turns Celery's remote control off, so no ping answers).
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.request
from pathlib import Path

STATE = Path("/tmp/mwaa")
STARTED = STATE / "started.json"
ENVIRONMENT_JSON = STATE / "environment.json"
UNHEALTHY = STATE / "container_unhealthy"
HTTP_CHECKS = {
    "api-server": "http://127.0.0.1:8080/api/v2/monitor/health",
    "webserver": "http://127.0.0.1:8080/api/v2/monitor/health",
    "scheduler": "http://127.0.0.1:8974/health",
}
JOB_CHECKS = {"dag-processor": "DagProcessorJob", "triggerer": "TriggererJob"}
HEARTBEAT_LIMIT_SECONDS = 60


def last_heartbeat_age(job_type: str) -> float | None:
    """Seconds since this host's running ``job_type`` job last heartbeat (None: no such job).

    Airflow names the host with socket.getfqdn() ([core] hostname_callable's default), as here.
    """
    import psycopg2  # Airflow's own driver for the metadata database, in the image

    url = json.loads(ENVIRONMENT_JSON.read_text())["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    connection = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://", 1), connect_timeout=5)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT extract(epoch FROM now() - max(latest_heartbeat)) FROM job"
                " WHERE job_type = %s AND hostname = %s AND state = 'running'",
                (job_type, socket.getfqdn()),
            )
            (age,) = cursor.fetchone()
    finally:
        connection.close()
    return None if age is None else float(age)


def check() -> str | None:
    """None when healthy, else why not."""
    if UNHEALTHY.exists():
        return f"{UNHEALTHY} found: the entrypoint failed to start the component"
    if not STARTED.exists():
        return "still starting (startup.sh, requirements.txt): the component has not been started yet"
    started = json.loads(STARTED.read_text())
    component, pid = started["component"], int(started["pid"])
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return f"the {component} process ({pid}) is gone"
    # Airflow and Celery retitle their processes (setproctitle); the HTTP checks prove more than a title.
    if component not in HTTP_CHECKS and not ("airflow" in command or "celery" in command):
        return f"process {pid} is not Airflow's {component}: {command!r}"
    if component in HTTP_CHECKS:
        try:
            with urllib.request.urlopen(HTTP_CHECKS[component], timeout=10) as response:
                if response.status != 200:
                    return f"{HTTP_CHECKS[component]} answered {response.status}"
        except OSError as error:
            return f"{HTTP_CHECKS[component]}: {error}"
    elif component in JOB_CHECKS:
        try:
            age = last_heartbeat_age(JOB_CHECKS[component])
        except Exception as error:  # the database unreachable is unhealthy, not a crash of the check
            return f"the metadata database: {error}"
        if age is None or age > HEARTBEAT_LIMIT_SECONDS:
            seen = "no running job" if age is None else f"last heartbeat {age:.0f} s ago"
            return f"{JOB_CHECKS[component]} on {socket.getfqdn()}: {seen}"
    return None


def main() -> int:
    problem = check()
    print(problem or "healthy")
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main())
