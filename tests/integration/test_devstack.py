"""The embedded stack's promises: starting twice is harmless, stopping leaves no process behind."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from devstack.airflow_services import AIRFLOW_SERVICES
from devstack.processes import alive, read_pid, spawn, stop_group
from devstack.stack import Stack
from devstack.warehouse import DATABASE, OWNER_ROLE
from include.retail.platform.warehouse import LOADER_ROLE, provision_logins

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
    assert url.startswith(f"postgresql://{OWNER_ROLE}:")
    with psycopg.connect(url) as conn:
        assert conn.execute("select count(*) from bronze.load_ledger").fetchone() == (0,)

    own_stack.down()
    own_stack.down()
    assert own_stack.status() == {"postgres": False, "moto": False, **AIRFLOW_STOPPED}
    assert not alive(postgres_pid)
    assert not alive(moto_pid)
    assert processes_mentioning(str(own_stack.home)) == []


def test_the_admin_connection_owns_the_warehouse_but_is_no_superuser(stack: Stack) -> None:
    """The connection every task's environment holds can apply the DDL, and cannot run shell commands."""
    from include.retail.platform.warehouse import apply_ddl

    admin_url = stack.environment()["AIRFLOW_CONN_RETAIL_WAREHOUSE_ADMIN"]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        role, superuser, createrole, owner = conn.execute(
            """
            select current_user, rolsuper, rolcreaterole, pg_get_userbyid(datdba)
            from pg_roles, pg_database where rolname = current_user and datname = current_database()
            """
        ).fetchone()
        assert (role, superuser, createrole, owner) == (OWNER_ROLE, False, True, OWNER_ROLE)
        assert apply_ddl(conn) == []  # already applied: nothing runs, nothing waits behind a load's locks
        assert "010_bronze.sql" in apply_ddl(conn, force=True)  # again, through the owner: every script re-runs
        conn.execute("create temporary table shell (line text)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("copy shell from program 'id'")


def test_role_passwords_reach_postgresql_only_as_scram_verifiers(stack: Stack) -> None:
    """CREATE/ALTER ROLE carry the verifier libpq computes: the server's statement log never sees a password."""
    login, password = "retail_test_login", "Plain-" + secrets.token_hex(12)
    with psycopg.connect(stack.warehouse_url(), autocommit=True) as conn:
        conn.execute("set log_statement = 'all'")
        try:
            provision_logins(conn, {LOADER_ROLE: (login, password)})  # creates the login
            provision_logins(conn, {LOADER_ROLE: (login, password)})  # alters it
            (stored,) = conn.execute("select rolpassword from pg_authid where rolname = %s", (login,)).fetchone()
            with psycopg.connect(stack.postgres.url(login, password, DATABASE)) as job:
                assert job.execute("select current_user").fetchone() == (login,)
        finally:
            conn.execute(f"drop role if exists {login}")
    assert stored.startswith("SCRAM-SHA-256$")
    server_log = stack.postgres.log_file.read_text(errors="replace")
    assert f"create role {login}" in server_log.replace('"', "")  # the statements were logged
    assert f"alter role {login}" in server_log.replace('"', "")
    assert password not in server_log


def test_the_task_log_servers_listen_on_loopback_at_ports_of_the_stack(stack: Stack) -> None:
    env = stack.environment()
    ports = {stack.state.worker_log_port, stack.state.trigger_log_port}
    assert {env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"], env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"]} == {
        str(port) for port in ports
    }
    assert len(ports) == 2
    assert not ports & {8793, 8794}
    # The scheduler and the triggerer do not start Airflow's own log servers, which listen on every interface.
    assert "--skip-serve-logs" in stack.airflow.service_command("scheduler")
    assert "--skip-serve-logs" in stack.airflow.service_command("triggerer")

    for service, port in (
        ("worker-log-server", stack.state.worker_log_port),
        ("trigger-log-server", stack.state.trigger_log_port),
    ):
        log = stack.home / f"test-{service}.log"
        pid = spawn(stack.airflow.service_command(service), log, env={**os.environ, **env})
        try:
            deadline = time.monotonic() + 60
            listening: set[str] = set()
            while not listening and time.monotonic() < deadline:
                assert alive(pid), log.read_text()[-2000:]
                listening = {
                    connection.laddr.ip
                    for connection in psutil.Process(pid).net_connections(kind="inet")
                    if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port
                }
                time.sleep(0.2)
            assert listening == {"127.0.0.1"}, log.read_text()[-2000:]
        finally:
            stop_group(pid)


def test_a_demo_whose_postgresql_cannot_start_ends_with_one_line_not_a_traceback(own_stack: Stack) -> None:
    with socket.socket() as squatter:  # something else holds the stack's PostgreSQL port
        squatter.bind(("127.0.0.1", own_stack.state.postgres_port))
        squatter.listen()
        demo = subprocess.run(
            [sys.executable, "-m", "devstack", "--home", str(own_stack.home), "demo"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert demo.returncode == 1, demo.stdout + demo.stderr
    assert "Traceback" not in demo.stdout + demo.stderr
    assert "  status         not uploaded" in demo.stdout
    [line] = demo.stderr.strip().splitlines()
    assert line.startswith(
        f"demo: the pipeline did not complete: PostgreSQL did not start on 127.0.0.1:{own_stack.state.postgres_port}"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the cluster to the postgres server user")
def test_a_checkout_the_server_user_cannot_enter_keeps_its_cluster_where_it_can(tmp_path: Path) -> None:
    """Root's checkout in a private folder (/root/..., any mktemp -d): initdb used to die with a traceback."""
    private = Path(tempfile.mkdtemp(prefix="retail-private-"))  # mode 0700, owned by root
    stack = Stack(private / ".devstack")
    try:
        assert not stack.postgres.root.is_relative_to(private)
        assert stack.postgres.root.parent.name == "retail-devstack"
        stack.postgres.start()
        with psycopg.connect(stack.postgres.url()) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        # The same checkout finds the same cluster again.
        assert Stack(private / ".devstack").postgres.root == stack.postgres.root
        clean = subprocess.run(
            [sys.executable, "-m", "devstack", "--home", str(stack.home), "clean"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert clean.returncode == 0, clean.stderr
        assert not stack.postgres.root.exists()
    finally:
        stack.postgres.remove()
        shutil.rmtree(private, ignore_errors=True)


def test_a_failed_initdb_says_what_initdb_said(own_stack: Stack) -> None:
    (own_stack.postgres.data_dir / "something").mkdir(parents=True)  # not empty, not a cluster
    if os.geteuid() == 0:
        shutil.chown(own_stack.postgres.root, "postgres", "postgres")

    with pytest.raises(subprocess.CalledProcessError) as failed:
        own_stack.postgres.start()

    assert str(failed.value).startswith("`initdb` failed: ")
    assert "exists but is not empty" in str(failed.value)


def test_make_dbt_runs_dbt_against_the_warehouse_and_reset_empties_it(own_stack: Stack) -> None:
    def devstack(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "devstack", "--home", str(own_stack.home), *args]
        return subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)

    listed = devstack("dbt", "--", "ls", "--resource-type", "model", "--output", "name")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert {"transactions", "monthly_sales_summary"} <= set(listed.stdout.split())
    debug = devstack("dbt", "--", "debug")
    assert debug.returncode == 0, debug.stdout  # the profile reaches the warehouse as the transform role
    assert (own_stack.home / "dbt-target").is_dir()

    own_stack.up()
    own_stack.boto3_client("s3").put_object(Bucket="retail-landing", Key="incoming/leftover.csv", Body=b"x")
    reset = devstack("reset")
    assert reset.returncode == 0, reset.stderr
    assert own_stack.boto3_client("s3").list_objects_v2(Bucket="retail-landing").get("KeyCount") == 0
    with psycopg.connect(own_stack.warehouse_url()) as conn:
        assert conn.execute("select count(*) from bronze.load_ledger").fetchone() == (0,)
