"""A throwaway PostgreSQL cluster run from the system's binaries, for the embedded stack and the tests.

The cluster lives in a directory the project owns. PostgreSQL refuses to run as root, so when we are
root every server command goes through ``runuser -u postgres`` and the directory is handed to that user.
A checkout that user cannot enter (root's home, a ``mktemp -d``) keeps the cluster in that user's home
instead (``cluster_root``).
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SERVER_USER = "postgres"
SUPERUSER = "postgres"

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found. Install them with "
    "`apt-get install postgresql` (Debian/Ubuntu) or `brew install postgresql@15` (macOS), "
    "set PG_BINDIR to their folder, or run the project with docker-compose instead."
)


class PostgresNotAvailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


class ServerCommandFailed(subprocess.CalledProcessError):
    """A server command (initdb, pg_ctl) failed: its message carries the command's own error output."""

    def __str__(self) -> str:
        output = " ".join((self.stderr or self.stdout or "").split())
        program = self.cmd[self.cmd.index("--") + 1] if self.cmd[0] == "runuser" else self.cmd[0]
        return f"`{Path(program).name}` failed: {output[-1500:]}"


def cluster_root(home: Path) -> Path:
    """Where the stack under ``home`` keeps its cluster: ``home/postgres``, unless we are root and the server
    user cannot enter ``home`` (a checkout in /root or a private temporary folder): then a folder of that user's
    own home, named after ``home``, so that the same checkout finds the same cluster every time."""
    inside = home / "postgres"
    if os.geteuid() != 0 or (inside / "data" / "PG_VERSION").exists() or _server_user_can_enter(home):
        return inside
    try:
        server_home = Path(pwd.getpwnam(SERVER_USER).pw_dir)
    except KeyError:
        return inside  # no server user at all: initdb's own error will say so
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]
    return server_home / "retail-devstack" / digest


def _server_user_can_enter(folder: Path) -> bool:
    """Whether the server user may reach ``folder`` (every parent searchable); as root, through runuser."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = ["runuser", "-u", SERVER_USER, "--", "test", "-x", str(folder.resolve())]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def find_bindir() -> Path:
    """Return the folder holding initdb and pg_ctl: $PG_BINDIR, Debian's layout, or PATH."""
    candidates: list[str] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(os.environ["PG_BINDIR"])
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    for folder in candidates:
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    raise PostgresNotAvailable(INSTALL_HINT)


def _version_key(path: str) -> int:
    version = Path(path).parent.name
    return int(version) if version.isdigit() else 0


@dataclass
class PostgresCluster:
    """One cluster: ``data_dir`` for its files, listening on 127.0.0.1:``port`` only."""

    root: Path
    port: int
    superuser_password: str

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def _as_server_user(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            argv = ["runuser", "-u", SERVER_USER, "--", *argv]
        result = subprocess.run(argv, check=False, capture_output=True, text=True, **kwargs)
        if result.returncode:
            raise ServerCommandFailed(result.returncode, argv, result.stdout, result.stderr)
        return result

    def _prepare_root(self) -> None:
        if os.geteuid() == 0 and not self.root.parent.exists():
            # The server user's own folder (cluster_root): it must be able to enter it.
            self.root.parent.mkdir(parents=True)
            shutil.chown(self.root.parent, SERVER_USER, SERVER_USER)
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, SERVER_USER, SERVER_USER)
            self.root.chmod(0o700)

    def remove(self) -> None:
        """Stop the cluster and delete its folder (``make clean``)."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the cluster with password authentication for TCP on loopback, no Unix socket."""
        if self.initialised():
            return
        bindir = find_bindir()
        self._prepare_root()
        password_file = self.root / "initdb.pw"
        password_file.write_text(self.superuser_password + "\n")
        if os.geteuid() == 0:
            shutil.chown(password_file, SERVER_USER, SERVER_USER)
        password_file.chmod(0o600)
        try:
            self._as_server_user(
                [
                    str(bindir / "initdb"),
                    "--pgdata",
                    str(self.data_dir),
                    "--username",
                    SUPERUSER,
                    "--pwfile",
                    str(password_file),
                    "--auth",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C.UTF-8",
                ]
            )
        finally:
            password_file.unlink(missing_ok=True)
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": "''",
            # A development cluster: small, and quick to write to. Durability settings stay on.
            "shared_buffers": "'256MB'",
            "max_wal_size": "'2GB'",
            "checkpoint_timeout": "'15min'",
            "log_min_messages": "warning",
        }
        with (self.data_dir / "postgresql.auto.conf").open("a") as conf:
            for name, value in settings.items():
                conf.write(f"{name} = {value}\n")

    def is_running(self) -> bool:
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            return False
        return True

    def start(self, timeout: float = 60) -> None:
        self.init()
        if self.is_running():
            return
        bindir = find_bindir()
        self._as_server_user(
            [
                str(bindir / "pg_ctl"),
                "start",
                "--pgdata",
                str(self.data_dir),
                "--log",
                str(self.log_file),
                "--options",
                f"-p {self.port}",
                "--wait",
                "--timeout",
                str(int(timeout)),
            ]
        )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if not self.is_running():
            return
        bindir = find_bindir()
        self._as_server_user(
            [str(bindir / "pg_ctl"), "stop", "--pgdata", str(self.data_dir), "--mode", "fast", "--wait"]
        )

    def url(self, user: str = SUPERUSER, password: str | None = None, database: str = "postgres") -> str:
        from urllib.parse import quote

        secret = self.superuser_password if password is None else password
        return f"postgresql://{quote(user, safe='')}:{quote(secret, safe='')}@127.0.0.1:{self.port}/{database}"


def provision_owner(superuser_url: str, database: str, owner: str, password: str) -> None:
    """Create ``owner`` as RDS creates its master user (LOGIN, CREATEROLE, CREATEDB, no superuser) and make
    it own ``database``: the superuser is needed for this and for nothing else.

    A database made before the owner role existed has the superuser's schemas, tables and job roles in it:
    they are handed over, so that the owner can re-apply the DDL and set the job roles' passwords. The embedded
    stack and docker-compose's init service (``python -m devstack.postgres``) both create the owner here.
    The password travels as its SCRAM verifier, never in clear text.
    """
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from include.retail.platform.warehouse import password_verifier

    role = sql.Identifier(owner)
    with psycopg.connect(superuser_url, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_catalog.pg_roles where rolname = %s", (owner,)).fetchone()
        verb = "alter" if exists else "create"
        conn.execute(
            sql.SQL(verb + " role {} login createrole createdb nosuperuser password {}").format(
                role, sql.Literal(password_verifier(conn, owner, password))
            )
        )
        if conn.execute("select 1 from pg_database where datname = %s", (database,)).fetchone():
            conn.execute(sql.SQL("alter database {} owner to {}").format(sql.Identifier(database), role))
        else:
            conn.execute(sql.SQL("create database {} owner {}").format(sql.Identifier(database), role))
        # Job roles the superuser created: from PostgreSQL 16 on, CREATEROLE alone no longer lets the owner
        # alter them (it gets the admin option only on the roles it creates itself).
        for (job_role,) in conn.execute(
            """
            select rolname from pg_catalog.pg_roles
            where current_setting('server_version_num')::int >= 160000
                and starts_with(rolname, 'retail_') and rolname <> %s and not rolsuper
                and not pg_has_role(%s, oid, 'member with admin option')
            """,
            (owner, owner),
        ).fetchall():
            conn.execute(sql.SQL("grant {} to {} with admin option").format(sql.Identifier(job_role), role))
    with psycopg.connect(make_conninfo(superuser_url, dbname=database), autocommit=True) as conn:
        superuser_objects = conn.execute(
            """
            select 'schema', nspname, null from pg_catalog.pg_namespace
            where nspowner = to_regrole(current_user)
                and not starts_with(nspname, 'pg_') and nspname <> 'information_schema'
            union all
            select case relkind when 'v' then 'view' when 'm' then 'materialized view'
                when 'S' then 'sequence' else 'table' end, nspname, relname
            from pg_catalog.pg_class join pg_catalog.pg_namespace on pg_namespace.oid = relnamespace
            where relowner = to_regrole(current_user) and relkind in ('r', 'p', 'v', 'm', 'S')
                and not starts_with(nspname, 'pg_') and nspname <> 'information_schema'
            """
        ).fetchall()
        for kind, schema, name in superuser_objects:
            target = sql.Identifier(schema) if name is None else sql.Identifier(schema, name)
            conn.execute(sql.SQL("alter " + kind + " {} owner to {}").format(target, role))


def main() -> None:
    """What docker-compose's init service runs: the warehouse's owner, from the Airflow admin connection."""
    import argparse

    from airflow.sdk import BaseHook

    from include.retail.platform import config

    parser = argparse.ArgumentParser(
        prog="python -m devstack.postgres",
        description="Create the warehouse's owner role and database as RDS creates its master user. The owner, its "
        f"password and the database are those of the Airflow connection {config.WAREHOUSE_ADMIN_CONN_ID}.",
    )
    parser.add_argument("--superuser-url", required=True, help="libpq URL of the server's superuser")
    args = parser.parse_args()
    admin = BaseHook.get_connection(config.WAREHOUSE_ADMIN_CONN_ID)
    provision_owner(args.superuser_url, admin.schema, admin.login, admin.password)
    print(f"{admin.login} owns the database {admin.schema}")


if __name__ == "__main__":
    main()
