#!/usr/local/bin/python3
"""Entrypoint of the MWAA stand-in: one Airflow component per container, started the way Amazon MWAA starts it.

Mirrors ``python/mwaa/entrypoint.py`` of aws/amazon-mwaa-docker-images (images/airflow/3.3.1) and what MWAA's
sidecar does before it, in MWAA's order:

1. the bundle, from the environment's source bucket in S3: the DagS3Path prefix into ``$AIRFLOW_HOME/dags``,
   ``plugins.zip`` unpacked into ``$AIRFLOW_HOME/plugins``, ``requirements.txt`` into ``requirements/`` and
   ``startup.sh`` into ``startup/`` (MWAA's sidecar has them in place before the entrypoint runs);
2. the configuration MWAA applies (``config/setup_environment.py``, ``config/airflow.py``): its essential settings
   (metadata database, executor, broker, keys, auth, execution API), its opinionated defaults, the environment's
   AirflowConfigurationOptions over those, and ``startup.sh`` sourced in between (``_execute_startup_script``);
3. ``requirements.txt`` installed with pip (``utils/user_requirements.py``, ``safe-pip-install``);
4. the component itself, in place of this process; dags/ is re-synced from S3 every ~30 s, as MWAA does.

Every step prints how long it took (``[mwaa] startup.sh took 41.2 s``). Inputs are environment variables, named
in tests/mwaa/docker-compose.rehearsal.yaml. Where this differs from MWAA, the docstring or comment says so.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

AIRFLOW_HOME = Path(os.environ.get("AIRFLOW_HOME", "/usr/local/airflow"))
DAGS = AIRFLOW_HOME / "dags"
PLUGINS = AIRFLOW_HOME / "plugins"
REQUIREMENTS = AIRFLOW_HOME / "requirements" / "requirements.txt"
STARTUP_SCRIPT = AIRFLOW_HOME / "startup" / "startup.sh"
# Outside dags/, so the DAG processor never sees it: what each synced file's ETag was.
DAGS_SYNC_STATE = AIRFLOW_HOME / ".mwaa_dags_sync.json"
SHELL_ENVIRONMENT = AIRFLOW_HOME / ".mwaa_environment"
STATE = Path("/tmp/mwaa")
STARTED = STATE / "started.json"  # written just before the component replaces this process (healthcheck.py)
ENVIRONMENT_JSON = STATE / "environment.json"
UNHEALTHY = STATE / "container_unhealthy"  # MWAA's marker of a container that failed to start
CUSTOMER_ENV = STATE / "customer_env_vars.json"

# MWAA's limits: startup.sh gets 5 minutes less the 5 s it has to stop on SIGTERM; requirements.txt 9 minutes.
STARTUP_SCRIPT_PATIENCE = 5.0
STARTUP_SCRIPT_TIMEOUT = 5 * 60 - STARTUP_SCRIPT_PATIENCE
REQUIREMENTS_TIMEOUT = 9 * 60
DAGS_SYNC_INTERVAL = float(os.environ.get("MWAA_DAGS_SYNC_INTERVAL", "30"))

# What `pip install` may not change and what requirements.txt's `-c URL` maps to (no URL outside the package
# registries is reachable here): the files MWAA's Dockerfile.base keeps in ~/.local/etc.
AIRFLOW_CONSTRAINTS_FILE = os.environ.get(
    "AIRFLOW_CONSTRAINTS_FILE", str(AIRFLOW_HOME / ".local" / "etc" / "airflow_constraints.txt")
)
MWAA_ESSENTIAL_CONSTRAINTS_FILE = os.environ.get(
    "MWAA_ESSENTIAL_CONSTRAINTS_FILE", str(AIRFLOW_HOME / ".local" / "etc" / "mwaa_essential_constraints.txt")
)
AIRFLOW_CONSTRAINTS_URL = re.compile(
    r"^https?://raw\.githubusercontent\.com/apache/airflow/constraints-(?P<airflow>[^/]+)/"
    r"constraints-(?P<python>\d+\.\d+)\.txt$"
)
CONSTRAINT_OPTION = re.compile(r"^(?P<option>-c|--constraint)(?:\s*=\s*|\s+)(?P<value>\S.*)$")
# user_requirements.py's test for "the file names its constraints" (a commented-out one counts, on purpose).
HAS_CONSTRAINTS = re.compile(r"-c |--constraint ")
REQUIREMENTS_GUIDE = (
    "https://docs.aws.amazon.com/mwaa/latest/userguide/working-dags-dependencies.html"
    "#working-dags-dependencies-test-create"
)

# Variables a startup script may not change (setup_environment.py's _is_protected_os_environ): MWAA puts the
# container's value back. Any MWAA__* variable is protected too.
PROTECTED_VARIABLES = frozenset(
    {
        "AIRFLOW_ENV_ID",
        "AIRFLOW_ENV_NAME",
        "AIRFLOW_HOME",
        "AIRFLOW_TASK_REVISION_ID",
        "AIRFLOW_VERSION",
        "AIRFLOW__AWS_MWAA__REDIRECT_URL",
        "JWT_PUBLIC_KEY",
        "AIRFLOW__WEBSERVER__BASE_URL",
        "AIRFLOW__API__BASE_URL",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "CUSTOMER_ACCOUNT_ID",
        "ECS_AGENT_URI",
        "ECS_CONTAINER_METADATA_URI",
        "ECS_CONTAINER_METADATA_URI_V4",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_EXECUTION_ENV",
        "PYTHONPATH",
        "PYTHONUNBUFFERED",
        "WATCHTOWER_VERSION",
        "USE_NON_CRITICAL_LOGGING",
        "AIRFLOW__CORE__DATABASE_ACCESS_ISOLATION",
    }
)
# The only configuration options MWAA passes to migrate-db (_MIGRATE_DB_SAFE_CONFIGS).
MIGRATE_DB_SAFE_CONFIGS = frozenset({"AIRFLOW__CORE__DEFAULT_POOL_TASK_SLOT_COUNT"})
# Set by bash itself, not by a startup script: left out of what the log says the script exported.
SHELL_NOISE = frozenset({"_", "SHLVL", "PWD", "OLDPWD"})
# MWAA's default celery.worker_autoscale per environment class (the user guide's table); mw1.small by default.
WORKER_AUTOSCALE = {
    "mw1.micro": "3,0",
    "mw1.small": "5,0",
    "mw1.medium": "10,0",
    "mw1.large": "20,0",
    "mw1.xlarge": "40,0",
    "mw1.2xlarge": "80,0",
}


@dataclass(frozen=True)
class Component:
    mwaa_name: str  # MWAA_AIRFLOW_COMPONENT, as MWAA names the container that runs it
    airflow_args: tuple[str, ...]
    resyncs_dags: bool  # MWAA keeps dags/ in step with S3 where DAGs are parsed or run


# MWAA runs scheduler, dag-processor and triggerer as three processes of one "scheduler" container; the rehearsal
# gives each a container, all three with MWAA_AIRFLOW_COMPONENT=scheduler, as a startup script sees on MWAA.
# Airflow 3's api-server is what MWAA calls its "webserver".
COMPONENTS = {
    "scheduler": Component("scheduler", ("scheduler",), resyncs_dags=True),
    "dag-processor": Component("scheduler", ("dag-processor",), resyncs_dags=True),
    "triggerer": Component("scheduler", ("triggerer",), resyncs_dags=True),
    "api-server": Component("webserver", ("api-server",), resyncs_dags=False),
    "webserver": Component("webserver", ("api-server",), resyncs_dags=False),
    "worker": Component("worker", ("celery", "worker"), resyncs_dags=True),
    "migrate-db": Component("migrate-db", ("db", "migrate"), resyncs_dags=False),
}
USAGE = f"""usage: mwaa-entrypoint COMMAND

COMMAND: {", ".join(COMPONENTS)} (an Airflow component, started as MWAA starts it),
         sync-dags (re-sync dags/ from S3 every MWAA_DAGS_SYNC_INTERVAL seconds; started by the components)"""


class StartError(RuntimeError):
    """Stops the container, as MWAA's entrypoint stops on a fatal error."""


def say(message: str) -> None:
    print(f"[mwaa] {message}", flush=True)


@contextmanager
def timed(step: str) -> Iterator[None]:
    """Print how long ``step`` took: the issue asks what each part of a cold start costs."""
    started = time.monotonic()
    try:
        yield
    finally:
        say(f"{step} took {time.monotonic() - started:.1f} s")


# -- the bundle, from S3 ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where the environment's files are, as the MwaaEnvironment resource says (SourceBucketArn, *S3Path)."""

    bucket: str
    dags_prefix: str
    requirements: tuple[str, str | None] | None  # (key, object version or None for the latest)
    plugins: tuple[str, str | None] | None
    startup_script: tuple[str, str | None] | None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Source:
        bucket = environ.get("MWAA_SOURCE_BUCKET", "").strip()
        if not bucket:
            raise StartError("MWAA_SOURCE_BUCKET is not set: the environment's bucket (its name or its ARN)")
        bucket = bucket.removeprefix("arn:aws:s3:::")
        dags = environ.get("MWAA_DAGS_S3_PATH", "dags").strip().strip("/")

        def versioned(name: str) -> tuple[str, str | None] | None:
            key = environ.get(f"MWAA_{name}_S3_PATH", "").strip().lstrip("/")
            version = environ.get(f"MWAA_{name}_S3_OBJECT_VERSION", "").strip() or None
            return (key, version) if key else None

        return cls(
            bucket=bucket,
            dags_prefix=f"{dags}/",
            requirements=versioned("REQUIREMENTS"),
            plugins=versioned("PLUGINS"),
            startup_script=versioned("STARTUP_SCRIPT"),
        )


def s3_client():  # -> botocore client; boto3 is imported here so that --help works without it
    """S3 as the execution role sees it; boto3 honours AWS_ENDPOINT_URL (the moto server in the rehearsal)."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(retries={"max_attempts": 10, "mode": "standard"}))


def _write_atomically(target: Path, data: bytes, mode: int = 0o644) -> None:
    """A reader (the DAG processor) sees the old file or the new one, never half of one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.mwaa-partial")
    temporary.write_bytes(data)
    temporary.chmod(mode)
    os.replace(temporary, target)


def fetch_object(s3, bucket: str, key: str, version: str | None, target: Path, what: str, mode: int = 0o644) -> None:
    """One of the environment's versioned files; a missing one stops the start, as MWAA refuses such an update."""
    from botocore.exceptions import ClientError

    arguments = {"Bucket": bucket, "Key": key} | ({"VersionId": version} if version else {})
    try:
        body = s3.get_object(**arguments)["Body"].read()
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "NoSuchVersion", "404", "NoSuchBucket", "InvalidArgument"):
            shown = f"s3://{bucket}/{key}" + (f" (version {version})" if version else "")
            raise StartError(
                f"{shown} does not exist ({code}): the environment's {what} names it, and MWAA refuses to "
                "create or update an environment whose files are missing"
            ) from error
        raise
    _write_atomically(target, body, mode)
    say(f"{what}: s3://{bucket}/{key} -> {target} ({len(body)} bytes{f', version {version}' if version else ''})")


def _inside(folder: Path, relative: str) -> Path | None:
    target = (folder / relative).resolve()
    return target if target.is_relative_to(folder.resolve()) else None


def sync_dags(s3, bucket: str, prefix: str, folder: Path = DAGS, state: Path = DAGS_SYNC_STATE) -> tuple[int, int]:
    """Mirror s3://bucket/prefix into ``folder``: new and changed objects written, removed ones deleted.

    Returns (written, deleted). Only files an earlier sync wrote are deleted, so that what Airflow writes in the
    folder itself (__pycache__) is left alone. An object's ETag and size say whether it changed.
    """
    known: dict[str, str] = json.loads(state.read_text()) if state.is_file() else {}
    remote: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            relative = entry["Key"][len(prefix) :]
            if relative and not entry["Key"].endswith("/") and _inside(folder, relative):
                remote[relative] = f"{entry['ETag']}:{entry['Size']}"
    written = 0
    for relative, tag in sorted(remote.items()):
        target = folder / relative
        if known.get(relative) != tag or not target.is_file():
            _write_atomically(target, s3.get_object(Bucket=bucket, Key=prefix + relative)["Body"].read())
            written += 1
    deleted = 0
    for relative in sorted(set(known) - set(remote)):
        target = folder / relative
        target.unlink(missing_ok=True)
        deleted += 1
        for parent in target.parents:
            if parent == folder or not parent.is_relative_to(folder):
                break
            try:
                parent.rmdir()  # only when empty
            except OSError:
                break
    _write_atomically(state, json.dumps(remote, indent=0).encode())
    return written, deleted


def unpack_plugins(archive: Path, folder: Path = PLUGINS) -> int:
    """plugins.zip's contents, in place of the folder's (zipfile drops absolute and `..` paths)."""
    for path in sorted(folder.glob("**/*"), reverse=True):
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink()
    with zipfile.ZipFile(archive) as plugins:
        plugins.extractall(folder)
        return sum(1 for info in plugins.infolist() if not info.is_dir())


def fetch_bundle(source: Source) -> None:
    """What MWAA's sidecar puts in place before the entrypoint runs; each step timed."""
    s3 = s3_client()
    with timed("fetching dags/"):
        written, deleted = sync_dags(s3, source.bucket, source.dags_prefix)
        say(f"dags/: s3://{source.bucket}/{source.dags_prefix} -> {DAGS} ({written} written, {deleted} deleted)")
    if source.plugins:
        with timed("fetching and unpacking plugins.zip"):
            archive = AIRFLOW_HOME / ".mwaa_plugins.zip"
            fetch_object(s3, source.bucket, *source.plugins, archive, "PluginsS3Path")
            try:
                say(f"plugins.zip: {unpack_plugins(archive)} files unpacked into {PLUGINS}")
            except zipfile.BadZipFile as error:
                raise StartError(f"plugins.zip is not a zip archive ({error}): MWAA refuses it too") from error
    if source.requirements:
        fetch_object(s3, source.bucket, *source.requirements, REQUIREMENTS, "RequirementsS3Path")
    if source.startup_script:
        fetch_object(s3, source.bucket, *source.startup_script, STARTUP_SCRIPT, "StartupScriptS3Path", 0o755)


def sync_dags_forever(environ: Mapping[str, str]) -> None:
    """MWAA's periodic sync of dags/: a dags-only upload reaches running components without a restart."""
    source = Source.from_environment(environ)
    s3 = s3_client()
    while True:
        time.sleep(DAGS_SYNC_INTERVAL)
        try:
            written, deleted = sync_dags(s3, source.bucket, source.dags_prefix)
        except Exception as error:  # a moto hiccup must not end the sync: the next round tries again
            say(f"dags/ sync from s3://{source.bucket}/{source.dags_prefix} failed, retrying: {error!r}")
            continue
        if written or deleted:
            say(f"dags/ re-synced from s3://{source.bucket}/{source.dags_prefix}: {written} written, {deleted} deleted")


# -- what MWAA configures -----------------------------------------------------------------------------------------


def _json_field(environ: Mapping[str, str], name: str, field: str) -> str | None:
    raw = environ.get(name)
    if not raw:
        return None
    try:
        return str(json.loads(raw)[field])
    except (ValueError, KeyError, TypeError):
        say(f"WARNING: {name} is not JSON with a {field!r} field; ignored (value not printed)")
        return None


def metadata_db_url(environ: Mapping[str, str]) -> str:
    """config/database.py: MWAA__DB__POSTGRES_* and the MWAA__DB__CREDENTIALS secret, with sslmode=prefer."""
    missing = [
        name
        for name in ("MWAA__DB__POSTGRES_HOST", "MWAA__DB__POSTGRES_PORT", "MWAA__DB__POSTGRES_DB")
        if not environ.get(name)
    ]
    user = _json_field(environ, "MWAA__DB__CREDENTIALS", "username") or environ.get("MWAA__DB__POSTGRES_USER")
    password = _json_field(environ, "MWAA__DB__CREDENTIALS", "password") or environ.get("MWAA__DB__POSTGRES_PASSWORD")
    if missing or not (user and password):
        raise StartError(
            "the metadata database is not configured: set MWAA__DB__POSTGRES_HOST, _PORT, _DB and "
            f'MWAA__DB__CREDENTIALS ({{"username": ..., "password": ...}}); missing: {missing or "credentials"}'
        )
    host, port, database = (environ[f"MWAA__DB__POSTGRES_{name}"] for name in ("HOST", "PORT", "DB"))
    # Quoted, unlike MWAA's string: a generated password may hold characters a URL cannot.
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return f"postgresql+psycopg2://{credentials}@{host}:{port}/{database}?sslmode=prefer"


def essential_config(environ: Mapping[str, str], executor: str) -> dict[str, str]:
    """config/airflow.py's get_essential_airflow_config: what neither a startup script nor a configuration
    option can change. Left out: CloudWatch logging and metrics, the FAB/IAM login, SQS transport options."""
    database = metadata_db_url(environ)
    config = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database}
    match executor.lower():
        case "localexecutor":
            config["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
        case "celeryexecutor":
            broker = environ.get("MWAA_REHEARSAL_CELERY_BROKER_URL")
            if not broker:
                raise StartError("CeleryExecutor needs a broker: set MWAA_REHEARSAL_CELERY_BROKER_URL (MWAA uses SQS)")
            config |= {
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CELERY__BROKER_URL": broker,
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{database}",
                "AIRFLOW__CELERY__WORKER_ENABLE_REMOTE_CONTROL": "False",
            }
        case _:
            raise StartError(f"MWAA__CORE__EXECUTOR_TYPE={executor} is not supported (CeleryExecutor, LocalExecutor)")
    config |= {"AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__MULTI_TEAM": "False"}
    api_server = environ.get("MWAA__CORE__API_SERVER_URL")
    if api_server:
        scheme = "" if "://" in api_server else "https://"
        config["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"{scheme}{api_server}/execution"
    fernet_key = _json_field(environ, "MWAA__CORE__FERNET_KEY", "FernetKey")
    if fernet_key:
        config["AIRFLOW__CORE__FERNET_KEY"] = fernet_key
    secret_key = _json_field(environ, "MWAA__WEBSERVER__SECRET", "secret_key")
    if secret_key:
        config["AIRFLOW__API__SECRET_KEY"] = secret_key
    if environ.get("MWAA__CORE__FERNET_KEY"):
        # MWAA signs Airflow 3's JWTs with the raw value of its Fernet key secret.
        config["AIRFLOW__API_AUTH__JWT_SECRET"] = environ["MWAA__CORE__FERNET_KEY"]
    user = environ.get("MWAA_REHEARSAL_ADMIN_USERNAME", "admin")
    config |= {
        "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
        "AIRFLOW__API_AUTH__JWT_ALGORITHM": "HS256",
        "AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME": "86400",
        "AIRFLOW__TRIGGERER__QUEUES_ENABLED": "False",
        # Rehearsal: SimpleAuthManager with one admin whose password the API server writes (MWAA: IAM login).
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(AIRFLOW_HOME / "simple_auth_manager_passwords.json"),
        # Rehearsal: the scheduler's health endpoint, for the container's health check (MWAA checks processes).
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
    }
    return config


def opinionated_config(environ: Mapping[str, str]) -> dict[str, str]:
    """get_opinionated_airflow_config: MWAA's defaults, which configuration options and startup.sh may change."""
    lookup = json.dumps({"connections_lookup_pattern": "^(?!aws_default$).*$"})
    environment_class = environ.get("MWAA_ENVIRONMENT_CLASS", "mw1.small")
    return {
        "AIRFLOW__CORE__EXECUTE_TASKS_NEW_PYTHON_INTERPRETER": "True",
        "AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES": "proxy,proxies",
        "AIRFLOW__API__SERVER_TYPE": "gunicorn",
        "AIRFLOW__API__WORKER_REFRESH_INTERVAL": "43200",
        "AIRFLOW__API__WORKER_REFRESH_BATCH_SIZE": "1",
        "AIRFLOW__SCHEDULER__SCHEDULE_AFTER_TASK_EXECUTION": "False",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "1800.0",
        "AIRFLOW__SECRETS__BACKEND_KWARGS": lookup,
        "AIRFLOW__WORKERS__SECRETS_BACKEND_KWARGS": lookup,
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
        # The service's per-class default (MWAA sets it outside the image).
        "AIRFLOW__CELERY__WORKER_AUTOSCALE": WORKER_AUTOSCALE.get(environment_class, WORKER_AUTOSCALE["mw1.small"]),
    }


def essential_environ(component: Component) -> dict[str, str]:
    """config/environ.py's get_essential_environ."""
    version = os.environ.get("AIRFLOW_VERSION", "3.3.1")
    return {
        "AWS_EXECUTION_ENV": f"Amazon_MWAA_{version.replace('.', '')}",
        "MWAA_AIRFLOW_COMPONENT": component.mwaa_name,
        "MWAA_COMMAND": component.mwaa_name,
    }


def opinionated_environ() -> dict[str, str]:
    """get_opinionated_environ: among others, aws_default as the execution role (no credentials in it)."""
    return {
        "AIRFLOW_CONN_AWS_DEFAULT": "aws://",
        "CLASSPATH": str(Path.home() / "dags" / "classpath" / "*"),
        "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
    }


def user_config(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment's AirflowConfigurationOptions: as AIRFLOW__SECTION__KEY variables of the container (how the
    rehearsal passes them), and MWAA's own MWAA__CORE__CUSTOM_AIRFLOW_CONFIGS JSON, which wins."""
    config = {name: value for name, value in environ.items() if name.startswith("AIRFLOW__")}
    custom = environ.get("MWAA__CORE__CUSTOM_AIRFLOW_CONFIGS")
    if custom:
        try:
            config |= {str(name): str(value) for name, value in json.loads(custom).items()}
        except (ValueError, AttributeError):
            say("WARNING: MWAA__CORE__CUSTOM_AIRFLOW_CONFIGS is not a JSON object; ignored (value not printed)")
    return config


def protected(environ: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in environ.items() if name.startswith("MWAA__") or name in PROTECTED_VARIABLES}


# -- startup.sh ---------------------------------------------------------------------------------------------------


def run_logged(
    command: list[str], environ: Mapping[str, str], prefix: str, timeout: float, patience: float = 5.0
) -> int | None:
    """Run ``command`` with its output in the log, line by line under ``prefix``; stop its whole process group
    after ``timeout`` s (SIGTERM, then SIGKILL after ``patience`` s). Returns the exit code, None when stopped."""
    process = subprocess.Popen(
        command,
        env=dict(environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def relay() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            print(f"[{prefix}] {raw.decode(errors='replace').rstrip()}", flush=True)

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    try:
        returncode: int | None = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        say(f"{prefix}: still running after {timeout:.0f} s, MWAA's limit: stopping it")
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=patience)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        returncode = None
    reader.join(timeout=5)
    return returncode


def run_startup_script(environ: Mapping[str, str]) -> dict[str, str]:
    """_execute_startup_script: startup.sh *sourced* by bash, then the environment it leaves dumped and returned.

    As on MWAA, an `exit` in the script (or a `set -e` that trips) ends the shell before the dump: MWAA then finds
    no environment file and fails the container's start, and so does this. The script's exit status itself is
    not checked. A script still running after 5 minutes is stopped, with the same result.
    """
    CUSTOMER_ENV.unlink(missing_ok=True)
    dump = f'/usr/bin/env -0 > "{CUSTOMER_ENV}.raw"'
    command = ["/bin/bash", "-c", f'source "$MWAA__CORE__STARTUP_SCRIPT_PATH"\n{dump}']
    say(f"running the startup script {environ['MWAA__CORE__STARTUP_SCRIPT_PATH']} (sourced by bash, as MWAA does)")
    started = time.monotonic()
    returncode = run_logged(command, environ, "startup.sh", STARTUP_SCRIPT_TIMEOUT, STARTUP_SCRIPT_PATIENCE)
    say(f"startup.sh took {time.monotonic() - started:.1f} s")
    raw = Path(f"{CUSTOMER_ENV}.raw")
    if returncode is None or not raw.is_file():
        why = "was stopped at MWAA's 5-minute limit" if returncode is None else f"ended the shell (exit {returncode})"
        raise StartError(
            f"startup.sh {why} before its end, so no environment was left to pass on to Airflow: MWAA fails the "
            "container's start the same way (an `exit` in a sourced script, or `set -e` tripping, does this)"
        )
    customer = dict(item.split("=", 1) for item in raw.read_text().split("\0") if "=" in item)
    raw.unlink()
    CUSTOMER_ENV.write_text(json.dumps(customer))
    CUSTOMER_ENV.chmod(0o600)
    return customer


def report_exports(before: Mapping[str, str], customer: Mapping[str, str], final: Mapping[str, str]) -> None:
    """Which variables the script set that Airflow gets, and which MWAA put back (names only: values may be secret)."""
    changed = sorted(name for name, value in customer.items() if before.get(name) != value and name not in SHELL_NOISE)
    kept = [name for name in changed if final.get(name) == customer[name]]
    refused = [name for name in changed if final.get(name) != customer[name]]
    unset = sorted(name for name in before if name not in customer and name not in SHELL_NOISE)
    say(f"startup.sh set {len(changed)} variables; passed on to Airflow: {', '.join(kept) or 'none'}")
    if refused:
        say(
            "startup.sh set variables MWAA does not let it change (reserved, MWAA__*, MWAA's essential settings or "
            f"the environment's configuration options), put back: {', '.join(refused)}"
        )
    if unset:
        say(f"startup.sh unset {', '.join(unset)}: MWAA starts Airflow with these set all the same")


def verify_after_startup_script(environ: Mapping[str, str]) -> None:
    """bin/airflow-user/post-startup-script-verification: Python 3.12 and MWAA's Airflow still there (it only warns)."""
    check = """
import importlib.metadata, os, sys
if sys.version_info[:2] != (3, 12):
    print("Validation Error: Python version 3.12 expected")
expected, found = os.environ["AIRFLOW_VERSION"], importlib.metadata.version("apache-airflow")
if found != expected:
    print(f"Validation Error: apache-airflow version {expected} expected, found {found}")
"""
    run_logged(["python3", "-c", check], environ, "post-startup-script-verification", 60)


# -- requirements.txt ---------------------------------------------------------------------------------------------


def map_constraints(text: str) -> tuple[str, list[str], list[str]]:
    """requirements.txt with its constraint URL replaced by the local file of the same content.

    Returns (text, notes, errors). Airflow's constraints URL for this Airflow and Python maps to
    AIRFLOW_CONSTRAINTS_FILE; any other URL is an error here, since nothing outside the registries is reachable
    (on MWAA pip would fetch it: another Airflow version's constraints then conflict with MWAA's essential ones).
    """
    notes: list[str] = []
    errors: list[str] = []
    lines = []
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    airflow = os.environ.get("AIRFLOW_VERSION", "3.3.1")
    for number, line in enumerate(text.splitlines(), start=1):
        option = CONSTRAINT_OPTION.match(re.sub(r"(^|\s)#.*$", "", line).strip())
        value = option["value"].strip().strip("\"'") if option else ""
        if not option or not re.match(r"^[a-z][a-z0-9+.-]*://", value, re.IGNORECASE):
            lines.append(line)
            continue
        url = AIRFLOW_CONSTRAINTS_URL.match(value)
        if url and url["airflow"] == airflow and url["python"] == python:
            lines.append(f"{option['option']} {AIRFLOW_CONSTRAINTS_FILE}")
            notes.append(f"line {number}: {value} -> {AIRFLOW_CONSTRAINTS_FILE} (the same file, kept in the image)")
        elif url:
            errors.append(
                f"line {number}: {value} are the constraints of Airflow {url['airflow']} on Python {url['python']}; "
                f"this environment runs Airflow {airflow} on Python {python}, whose constraints are the only ones "
                "available here (MWAA's essential constraints pin apache-airflow=="
                f"{airflow}, so other Airflow constraints conflict with them on MWAA too)"
            )
        else:
            errors.append(f"line {number}: {value} cannot be fetched here (no URL outside the package registries)")
    return "\n".join(lines) + "\n", notes, errors


def install_requirements(component_name: str, environ: Mapping[str, str]) -> None:
    """user_requirements.py + safe-pip-install: ``pip install --user -c <essential constraints> -r requirements.txt``,
    with Airflow's constraints forced when the file names none. A failure is logged and the component starts all
    the same, as on MWAA: its DAGs then fail to import what is missing."""
    requirements = environ.get("MWAA__CORE__REQUIREMENTS_PATH", "")
    say(f"MWAA__CORE__REQUIREMENTS_PATH = {requirements or '(none)'}")
    if not (requirements and Path(requirements).is_file()):
        say("No user requirements to install.")
        return
    text = Path(requirements).read_text(errors="replace")
    extra: list[str] = []
    if not any(HAS_CONSTRAINTS.search(line) for line in text.splitlines()):
        say(f"WARNING: Constraints should be specified for requirements.txt. Please see {REQUIREMENTS_GUIDE}")
        say("Forcing local constraints")
        extra = ["-c", AIRFLOW_CONSTRAINTS_FILE]
    mapped, notes, errors = map_constraints(text)
    for note in notes:
        say(f"requirements.txt {note}")
    started = time.monotonic()
    if errors:
        for error in errors:
            say(f"ERROR: requirements.txt {error}")
        returncode: int | None = 1
    else:
        local = Path(requirements).with_name(".requirements.rehearsal.txt")
        local.write_text(mapped)
        say(f"Installing user requirements from {requirements}...")
        command = [
            "python3", "-m", "pip", "install", "--user", "--no-warn-script-location", "--disable-pip-version-check",
            "-c", MWAA_ESSENTIAL_CONSTRAINTS_FILE, "-r", str(local), *extra,
        ]  # fmt: skip
        returncode = run_logged(command, environ, f"{component_name}_requirements", REQUIREMENTS_TIMEOUT)
    say(f"requirements.txt took {time.monotonic() - started:.1f} s (exit {returncode})")
    if returncode != 0:
        say(
            "ERROR: pip installation exited with a non-zero error code. This could be the result of package "
            "conflict. Notice that MWAA enforces a list of critical packages, e.g. Airflow, Celery, among others, "
            "whose version cannot be overridden by the customer as that can break our setup. Please double check "
            "your requirements.txt file. (The component starts all the same, as on MWAA.)"
        )


# -- the component ------------------------------------------------------------------------------------------------


def export_for_shells(environ: Mapping[str, str]) -> None:
    """_export_env_variables: the environment where `docker exec … bash -l` and the health check find it."""
    STATE.mkdir(parents=True, exist_ok=True)
    exports = sorted((name, value) for name, value in environ.items() if name.isidentifier())
    lines = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in exports)
    _write_atomically(SHELL_ENVIRONMENT, lines.encode(), 0o600)
    _write_atomically(ENVIRONMENT_JSON, json.dumps(dict(environ)).encode(), 0o600)
    hook = f'[ -f "{SHELL_ENVIRONMENT}" ] && . "{SHELL_ENVIRONMENT}"\n'
    for name in (".bashrc", ".bash_profile"):
        profile = Path.home() / name
        if hook not in (profile.read_text() if profile.is_file() else ""):
            with profile.open("a") as out:
                out.write(hook)


def write_admin_password(environ: Mapping[str, str], password: str) -> None:
    """SimpleAuthManager's password file, from MWAA_REHEARSAL_ADMIN_PASSWORD (kept out of every environment)."""
    if not password:
        raise StartError("MWAA_REHEARSAL_ADMIN_PASSWORD is not set: the API server's admin password")
    user = environ.get("MWAA_REHEARSAL_ADMIN_USERNAME", "admin")
    path = Path(environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    _write_atomically(path, json.dumps({user: password}).encode(), 0o600)


def start(name: str) -> None:
    """Steps 1 to 4 of the module docstring for the component ``name``; does not return when it starts."""
    started = time.monotonic()
    component = COMPONENTS[name]
    STATE.mkdir(parents=True, exist_ok=True)
    if STARTED.exists():
        say(
            "WARNING: this container has started before. MWAA never restarts a container in place (an update "
            "replaces them): packages an earlier requirements.txt installed, and the dbt virtualenv, are still "
            "here. Recreate the container (`docker compose up -d --force-recreate`) to rehearse a new bundle."
        )
        STARTED.unlink()
    UNHEALTHY.unlink(missing_ok=True)
    say(f"Warming a container for an Airflow {name} (MWAA_AIRFLOW_COMPONENT={component.mwaa_name}).")
    executor = os.environ.get("MWAA__CORE__EXECUTOR_TYPE", "CeleryExecutor")
    options = user_config(os.environ)
    # The container's own variables, without the configuration options (on MWAA those come in a secret) and
    # without the admin password, which only the API server's password file gets.
    base = {key: value for key, value in os.environ.items() if key not in options}
    admin_password = base.pop("MWAA_REHEARSAL_ADMIN_PASSWORD", "")
    if base.get("MWAA_ENVIRONMENT_NAME"):
        base.setdefault("AIRFLOW_ENV_NAME", base["MWAA_ENVIRONMENT_NAME"])  # MWAA's, for information (protected)
    essential = essential_config(base, executor) | essential_environ(component)
    if name == "migrate-db":
        # MWAA's migrate-db fetches nothing, runs no startup script and installs nothing.
        safe = {key: value for key, value in options.items() if key in MIGRATE_DB_SAFE_CONFIGS}
        environ = {**base, **opinionated_config(base), **opinionated_environ(), **safe, **protected(base), **essential}
        say(f"ready to run `airflow db migrate` after {time.monotonic() - started:.1f} s")
        os.execvpe("airflow", ["airflow", *component.airflow_args], environ)

    source = Source.from_environment(base)
    fetch_bundle(source)
    if source.requirements:
        base["MWAA__CORE__REQUIREMENTS_PATH"] = str(REQUIREMENTS)
    if source.startup_script:
        base["MWAA__CORE__STARTUP_SCRIPT_PATH"] = str(STARTUP_SCRIPT)
    defaults = {**opinionated_config(base), **opinionated_environ()}
    before = {**base, **defaults, **options, **essential}
    if source.startup_script:
        customer = run_startup_script(before)
    else:
        say("MWAA__CORE__STARTUP_SCRIPT_PATH is not provided.")
        customer = {}
    environ = {**base, **defaults, **customer, **options, **protected(base), **essential}
    if customer:
        report_exports(before, customer, environ)
        verify_after_startup_script(environ)
    install_requirements(name, environ)
    if component.mwaa_name == "webserver":
        write_admin_password(environ, admin_password)
    export_for_shells(environ)
    if component.resyncs_dags:
        # A child that outlives the exec below: the component's process becomes its parent.
        subprocess.Popen([sys.executable, __file__, "sync-dags"], env=base, stdin=subprocess.DEVNULL)
    _write_atomically(STARTED, json.dumps({"component": name, "pid": os.getpid()}).encode())
    command = " ".join(component.airflow_args)
    say(f"container ready after {time.monotonic() - started:.1f} s: starting `airflow {command}`")
    os.execvpe("airflow", ["airflow", *component.airflow_args], environ)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(USAGE)
        return 0 if len(argv) == 2 else 2
    command = argv[1]
    try:
        if command == "sync-dags":
            sync_dags_forever(os.environ)
        elif command in COMPONENTS:
            start(command)
        else:
            print(f"Invalid command: {command}.\n{USAGE}", file=sys.stderr)
            return 2
    except StartError as error:
        say(f"ERROR: {error}")
        STATE.mkdir(parents=True, exist_ok=True)
        UNHEALTHY.touch()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
