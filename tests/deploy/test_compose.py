"""docker-compose.yaml: valid Compose, and consistent with the code, the image and .env.example.

No Docker engine is needed: the file is read as Compose reads it (YAML anchors and merges, then ``${VAR}``
interpolation from .env.example), and each service's settings are checked against what the DAGs read
(include/retail/platform/config.py), the paths in the repository and the other services.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from devstack import aws as devstack_aws
from include.retail.platform import config, warehouse

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
INIT = "airflow-init"
CELERY = "celery"
# The components of Airflow's own docker-compose for 3.x, and the command each runs.
COMPONENTS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|_KEY|TOKEN)$")
PURE_REFERENCE = re.compile(r"\$\{\w+(?::\?[^}]*|:-)?\}")  # ${VAR}, ${VAR:?message} or an empty default


# -- reading the file as Compose does -----------------------------------------------------------------------


class MissingVariable(LookupError):
    pass


_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|(?P<named>[A-Za-z_]\w*))"
)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation, strict: an unset variable without a default is an error, not an empty string."""

    def replace(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        op, arg, value = match["op"], match["arg"], env.get(name)
        # With a colon, an empty value counts as unset.
        usable = bool(value) if op and op.startswith(":") else value is not None
        if op in (":-", "-"):
            return value if usable else arg
        if op in (":+", "+"):
            return arg if usable else ""
        if op in (":?", "?"):
            if not usable:
                raise MissingVariable(f"{name}: {arg}")
            return value
        if value is None:
            raise MissingVariable(f"{name} is not set in .env.example and has no default")
        return value

    return _REFERENCE.sub(replace, text)


def resolve(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    return node


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"{path.name}:{number}: not NAME=value: {line}"
        assert re.fullmatch(r"[A-Za-z_]\w*", name), f"{path.name}:{number}: not a variable name: {name}"
        values[name] = value.strip().strip("\"'")
    return values


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {name: "" if value is None else str(value) for name, value in env.items()}


def command_text(service: dict) -> str:
    command = service.get("command") or ""
    return command if isinstance(command, str) else " ".join(command)


def depends_on(service: dict) -> dict[str, dict]:
    deps = service.get("depends_on") or {}
    return {name: {"condition": "service_started"} for name in deps} if isinstance(deps, list) else deps


def bind_mounts(service: dict) -> dict[str, str]:
    """Container path -> repository path of the service's bind mounts (named volumes left out)."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts[volume["target"]] = volume["source"]
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/", "~")):
            mounts[target] = source
    return mounts


def parse_connection(value: str) -> dict[str, Any]:
    """An AIRFLOW_CONN_* value, URI or JSON, as the fields Airflow reads."""
    if value.lstrip().startswith("{"):
        conn = json.loads(value)
        extra = conn.get("extra") or {}
        return {**conn, "extra": json.loads(extra) if isinstance(extra, str) else extra}
    url = urlsplit(value)
    return {
        "conn_type": url.scheme,
        "host": url.hostname,
        "port": url.port,
        "login": url.username,
        "password": url.password,
        "schema": url.path.lstrip("/"),
        "extra": {},
    }


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())  # anchors and `<<` merges are resolved here


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def services(raw: dict, env_example: dict[str, str]) -> dict[str, dict]:
    return resolve(raw, env_example)["services"]


@pytest.fixture(scope="module")
def airflow_services(services: dict[str, dict]) -> dict[str, dict]:
    """The services that run the project's Airflow image (built from ./Dockerfile)."""
    return {name: service for name, service in services.items() if "build" in service}


def long_running(airflow_services: dict[str, dict]) -> dict[str, dict]:
    return {name: service for name, service in airflow_services.items() if service.get("restart")}


# -- the tests -----------------------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification() -> None:
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_official_components_run_from_the_project_image(airflow_services: dict[str, dict]) -> None:
    for name, command in COMPONENTS.items():
        assert name in airflow_services, f"{name} is missing or does not run the project's image"
        assert re.search(rf"(^|\s|exec airflow ){command}(\s|$)", command_text(airflow_services[name])), name
    assert INIT in airflow_services
    for name, service in airflow_services.items():
        assert service["build"] in (".", {"context": "."}), name
        assert service["user"].endswith(":0"), f"{name}: the official image runs with group 0"


def test_every_airflow_service_gets_the_connections_and_variables_the_dags_read(
    airflow_services: dict[str, dict],
) -> None:
    names = vars(config)
    conn_ids = {value for name, value in names.items() if name.endswith("_CONN_ID")}
    # A Variable is optional when config.py gives it a default (DEFAULT_<stem> beside <stem>_VARIABLE).
    variables = {
        value
        for name, value in names.items()
        if name.endswith("_VARIABLE") and f"DEFAULT_{name.removesuffix('_VARIABLE')}" not in names
    }
    assert config.AWS_CONN_ID in conn_ids, "locally aws_default carries the moto endpoint, so it must be set"
    assert conn_ids
    assert variables
    for service_name, service in airflow_services.items():
        env = environment(service)
        for conn_id in conn_ids:
            value = env.get(f"AIRFLOW_CONN_{conn_id.upper()}")
            assert value, f"{service_name}: connection {conn_id} is not set"
            conn = parse_connection(value)
            assert conn["conn_type"], f"{service_name}: {conn_id} has no type: {value}"
            assert conn.get("host") or conn["extra"], f"{service_name}: {conn_id} says where to nowhere: {value}"
        for variable in variables:
            assert env.get(f"AIRFLOW_VAR_{variable.upper()}"), f"{service_name}: Variable {variable} is not set"


def test_connections_point_at_the_local_stand_ins(services: dict[str, dict], airflow_services: dict[str, dict]) -> None:
    env = environment(airflow_services[INIT])
    # S3 and SNS: the moto server, at the version the tests pin, in the region of the topic's ARN.
    aws = parse_connection(env[f"AIRFLOW_CONN_{config.AWS_CONN_ID.upper()}"])
    endpoint = urlsplit(aws["extra"]["endpoint_url"])
    moto = services[endpoint.hostname]
    moto_pin = re.search(r"^moto\[server\]==(\S+)", (REPO / "requirements" / "dev.in").read_text(), re.M)[1]
    assert moto["image"] == f"motoserver/moto:{moto_pin}"
    assert endpoint.port == 5000
    topic_arn = env[f"AIRFLOW_VAR_{config.ALERTS_TOPIC_VARIABLE.upper()}"]
    assert re.fullmatch(rf"arn:aws:sns:{aws['extra']['region_name']}:\d{{12}}:{devstack_aws.TOPIC}", topic_arn)
    # The warehouse: one PostgreSQL service. Its superuser is known to the init service only, which has it
    # create the owner (as RDS creates its master user); the admin connection is that owner, no superuser;
    # each job has its own login.
    admin = parse_connection(env[f"AIRFLOW_CONN_{config.WAREHOUSE_ADMIN_CONN_ID.upper()}"])
    server = services[admin["host"]]
    server_env = environment(server)
    assert server["image"].startswith("postgres:")
    superuser = urlsplit(env["WAREHOUSE_SUPERUSER_URL"])
    assert (superuser.hostname, superuser.port) == (admin["host"], admin["port"] or 5432)
    assert (superuser.username, superuser.password) == (server_env["POSTGRES_USER"], server_env["POSTGRES_PASSWORD"])
    assert admin["login"] != superuser.username
    assert admin["password"] != superuser.password
    for name, service in airflow_services.items():
        if name != INIT:
            assert "WAREHOUSE_SUPERUSER_URL" not in environment(service), f"{name} must not know the superuser"
    assert re.search(r"python -m devstack\.postgres --superuser-url", command_text(airflow_services[INIT]))
    jobs = {
        warehouse.LOADER_ROLE: config.WAREHOUSE_CONN_ID,
        warehouse.TRANSFORMER_ROLE: config.WAREHOUSE_TRANSFORM_CONN_ID,
    }
    logins = {admin["login"]}
    for role, conn_id in jobs.items():
        conn = parse_connection(env[f"AIRFLOW_CONN_{conn_id.upper()}"])
        assert conn["conn_type"] in ("postgres", "postgresql")
        assert (conn["host"], conn["port"] or 5432) == (admin["host"], admin["port"] or 5432)
        assert conn["schema"] == admin["schema"]
        assert conn["login"] == role, f"{conn_id} logs in as {conn['login']}, expected the {role} role"
        assert conn["password"]
        assert conn["password"] != admin["password"]
        logins.add(conn["login"])
    assert len(logins) == 3, "the owner, the loader and the transformer must be three different logins"


def test_every_mounted_host_path_exists(raw: dict, services: dict[str, dict]) -> None:
    declared = set(raw.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith((".", "/", "~")):
                path = (REPO / source).resolve()
                assert path.exists(), f"{name}: mounts {source}, which is not in the repository"
                assert path.is_relative_to(REPO), f"{name}: mounts {source}, outside the repository"
            else:
                assert source in declared, f"{name}: named volume {source} is not declared"
        if "build" in service:
            context = service["build"] if isinstance(service["build"], str) else service["build"]["context"]
            assert (REPO / context / "Dockerfile").is_file()


def test_working_tree_is_mounted_for_live_editing(airflow_services: dict[str, dict]) -> None:
    for name, service in airflow_services.items():
        mounts = {Path(source).as_posix().lstrip("./"): target for target, source in bind_mounts(service).items()}
        for folder in ("dags", "include", "plugins"):
            assert mounts.get(folder) == f"/opt/airflow/{folder}", f"{name}: ./{folder} is not live-mounted"
        # The DAGs import `include.retail`: the folder holding the mounted include/ must be on sys.path.
        pythonpath = environment(service).get("PYTHONPATH", "").split(":")
        assert str(Path(mounts["include"]).parent) in pythonpath, f"{name}: include is not importable"


def test_init_prepares_everything_with_the_existing_modules(airflow_services: dict[str, dict]) -> None:
    init = airflow_services[INIT]
    script = command_text(init)
    assert "airflow db migrate" in script
    assert re.search(r"python -m devstack\.aws --endpoint-url http://moto:5000\b", script)
    assert "python -m include.retail.platform.warehouse" in script
    assert "python -m include.retail.transform.dbt_project parse" in script, (
        "init rebuilds the mounted project's manifest"
    )
    # Every `python -m` module resolves, through the service's mounts and PYTHONPATH, to a repository file.
    mounts = bind_mounts(init)
    pythonpath = environment(init)["PYTHONPATH"].split(":")
    for module in re.findall(r"python -m ([\w.]+)", script):
        relative = module.replace(".", "/") + ".py"
        found = False
        for root in pythonpath:
            container_path = f"{root}/{relative}"
            for target, source in mounts.items():
                if container_path.startswith(target + "/"):
                    found |= (REPO / source / container_path.removeprefix(target + "/")).is_file()
        assert found, f"init runs `python -m {module}`, which its mounts do not provide"
    assert "__main__" in (REPO / "include" / "retail" / "platform" / "warehouse.py").read_text()
    assert callable(devstack_aws.main)
    assert not init.get("restart"), "a one-off service must not be restarted"
    assert not init.get("profiles"), "init must run with every profile"


def test_embedded_scripts_are_valid(services: dict[str, dict]) -> None:
    """The bash (and Python) the services run parse, after Compose's interpolation ($$ -> $)."""
    for name, service in services.items():
        command = service.get("command")
        scripts = []
        if isinstance(command, list) and command[:2] == ["bash", "-c"]:
            scripts.append(command[2])
        test = (service.get("healthcheck") or {}).get("test")
        if isinstance(test, list) and test[0] == "CMD-SHELL":
            scripts.append(test[1])
        for script in scripts:
            checked = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True, check=False)
            assert checked.returncode == 0, f"{name}: {checked.stderr}"
            for python in re.findall(r"<<'EOF'\n(.*?)\nEOF\n", script, re.S):
                compile(python, f"{name}: heredoc", "exec")
                for variable in re.findall(r"os\.environ\[\"(\w+)\"\]", python):
                    assert variable in environment(service), f"{name}: its script reads {variable}, which is unset"


def test_services_wait_for_healthy_dependencies(services: dict[str, dict]) -> None:
    for name, service in services.items():
        for dependency, spec in depends_on(service).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            if spec.get("condition") == "service_healthy":
                check = services[dependency].get("healthcheck") or {}
                assert check.get("test"), f"{name} waits for {dependency} to be healthy, which has no healthcheck"
                assert not check.get("disable"), f"{dependency}'s healthcheck is disabled"


def test_init_is_waited_for(airflow_services: dict[str, dict]) -> None:
    running = long_running(airflow_services)
    assert set(COMPONENTS) <= set(running)
    for name, service in running.items():
        assert depends_on(service).get(INIT, {}).get("condition") == "service_completed_successfully", name


def test_celery_profile_holds_the_broker_and_the_workers_only(
    services: dict[str, dict], airflow_services: dict[str, dict]
) -> None:
    celery = {name for name, service in services.items() if CELERY in service.get("profiles", [])}
    for name in celery:
        assert services[name]["profiles"] == [CELERY], f"{name} belongs to other profiles too"
    broker = urlsplit(environment(airflow_services[INIT])["AIRFLOW__CELERY__BROKER_URL"]).hostname
    workers = {name for name, service in airflow_services.items() if "celery worker" in command_text(service)}
    assert workers
    assert celery == {broker, *workers}
    # The default set must come up without the profile: its dependencies on celery services are optional.
    for name, service in services.items():
        if not service.get("profiles"):
            for dependency, spec in depends_on(service).items():
                if dependency in celery:
                    assert spec.get("required") is False, f"{name} needs {dependency}, which only the profile starts"


def test_one_variable_switches_every_service_to_celery(raw: dict, env_example: dict[str, str]) -> None:
    assert CELERY not in env_example.get("COMPOSE_PROFILES", "").split(","), "the celery profile is opt-in"
    settings = {"LocalExecutor": env_example, "CeleryExecutor": {**env_example, "AIRFLOW_EXECUTOR": "CeleryExecutor"}}
    for executor, env in settings.items():
        resolved = resolve(raw, env)["services"]
        executors = {
            environment(service)["AIRFLOW__CORE__EXECUTOR"] for service in resolved.values() if "build" in service
        }
        assert executors == {executor}


def test_components_share_secrets_and_addresses(services: dict[str, dict], airflow_services: dict[str, dict]) -> None:
    shared = (
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__API__BASE_URL",
        "AIRFLOW__CORE__EXECUTOR",
    )
    for name in shared:
        values = {environment(service).get(name) for service in airflow_services.values()}
        assert None not in values, f"{name} is not set for every Airflow service"
        assert len(values) == 1, f"{name} differs between services: {values}"
    env = environment(airflow_services[INIT])
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert env["AIRFLOW__API__SECRET_KEY"]
    # Workers reach the execution API at the API server's service name and container port.
    execution = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert "api-server" in command_text(services[execution.hostname])
    api_port = services[execution.hostname]["ports"][0].rsplit(":", 2)
    assert (execution.port, execution.path) == (int(api_port[-1]), "/execution/")
    # Links in alerts and the UI use the address published on the host.
    assert urlsplit(env["AIRFLOW__API__BASE_URL"]).port == int(api_port[-2])
    metadata = urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert environment(services[metadata.hostname])["POSTGRES_PASSWORD"] == metadata.password


def test_scheduler_health_check_server_is_on_where_probed(airflow_services: dict[str, dict]) -> None:
    for name, service in airflow_services.items():
        if ":8974/health" in json.dumps(service.get("healthcheck", {})):
            assert environment(service)["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"].lower() == "true", name


def test_ports_are_published_on_localhost_only(services: dict[str, dict]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_no_secret_is_written_in_the_compose_file(raw: dict) -> None:
    """Secrets are ${VAR} references to .env (no default), also inside connection URIs and JSON."""
    sections = [service for service in raw["services"].values()] + [
        value for key, value in raw.items() if key.startswith("x-") and isinstance(value, dict)
    ]
    for section in sections:
        for name, value in environment(section).items():
            if SECRET_NAME.search(name):
                assert PURE_REFERENCE.fullmatch(value), f"{name} holds a literal or a default: {value}"
            if value.lstrip().startswith("{"):
                password = json.loads(value).get("password")
            else:
                userinfo = re.match(r"^[a-z][a-z0-9+.]*://([^@/]*)@", value)
                password = userinfo[1].partition(":")[2] if userinfo else None
            if password:
                assert PURE_REFERENCE.fullmatch(password), f"{name} writes a password into the file: {password}"


def test_env_example_is_the_only_env_file_committed(env_example: dict[str, str], raw: dict) -> None:
    ignored = {line.strip() for line in (REPO / ".gitignore").read_text().splitlines()}
    assert ".env" in ignored, ".env holds local secrets and must be git-ignored"
    # Every setting in .env.example is used, so the example documents the file and nothing stale.
    text = COMPOSE_FILE.read_text()
    referenced = {m["braced"] or m["named"] for m in _REFERENCE.finditer(text) if not m["escaped"]}
    unused = {name for name in env_example if name not in referenced and not name.startswith("COMPOSE_")}
    assert not unused, f".env.example sets variables docker-compose.yaml never reads: {unused}"
