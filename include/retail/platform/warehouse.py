"""The warehouse's DDL and grants (``include/sql/``), and the logins of its job roles, applied idempotently.

The same step runs everywhere, through the owner's connection (``retail_warehouse_admin``): as the first
task of every ingest run, and as ``python -m include.retail.platform.warehouse`` (the docker-compose init service).
That is how a private RDS instance gets its schema and logins without anybody reaching it by hand.

The scripts run only when they changed since they were last applied (their digest is kept as the comment of
schema ``silver``): re-running ``create index``, ``alter table`` would otherwise wait, at every ingest run, for
any load still inside its transaction on those tables.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import psycopg
from psycopg import sql

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"

# Serialises concurrent applications (two runs starting together) on one database.
_DDL_LOCK_KEY = 0x7265_7461_696C  # "retail"

# The group role behind each job's Airflow connection (include/sql/001_roles.sql).
LOADER_ROLE = "retail_loader"
TRANSFORMER_ROLE = "retail_transformer"


def ddl_files(sql_dir: Path = SQL_DIR) -> list[Path]:
    """The DDL scripts, in the order they apply (their names sort in dependency order)."""
    return sorted(sql_dir.glob("*.sql"))


def ddl_digest(sql_dir: Path = SQL_DIR) -> str:
    """What the applied DDL is recorded as: a digest of the scripts' names and contents."""
    digest = hashlib.sha256()
    for script in ddl_files(sql_dir):
        digest.update(script.name.encode() + b"\0" + script.read_bytes() + b"\0")
    return f"retail DDL {digest.hexdigest()[:16]}"


def apply_ddl(conn: psycopg.Connection, sql_dir: Path = SQL_DIR, *, force: bool = False) -> list[str]:
    """Run every script in one transaction (each is written to be re-run), unless the warehouse already has
    these very scripts applied (``force``: run them anyway). Returns the names applied, none when skipped."""
    recorded = ddl_digest(sql_dir)
    applied = []
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("select pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
        cur.execute(
            "select obj_description(oid, 'pg_namespace') from pg_namespace where nspname in ('bronze', 'silver')"
        )
        if not force and [row[0] for row in cur.fetchall()] == [recorded, recorded]:
            return []
        for script in ddl_files(sql_dir):
            cur.execute(script.read_text())
            applied.append(script.name)
        for schema in ("bronze", "silver"):
            cur.execute(sql.SQL("comment on schema {} is {}").format(sql.Identifier(schema), sql.Literal(recorded)))
    return applied


def password_verifier(conn: psycopg.Connection, role: str, password: str) -> str:
    """The SCRAM-SHA-256 verifier of ``role``'s password, computed here by libpq.

    CREATE/ALTER ROLE carries it instead of the password, so that the plain password never reaches the
    server's statement log.
    """
    return conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()


def provision_logins(conn: psycopg.Connection, logins: dict[str, tuple[str, str]]) -> None:
    """Let each job log in as its connection says: ``{group_role: (login, password)}``.

    The login is the group role itself (the usual case) or a user created here and granted the group.
    """
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("select pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
        for group, (login, password) in logins.items():
            verifier = sql.Literal(password_verifier(conn, login, password))
            exists = cur.execute("select 1 from pg_catalog.pg_roles where rolname = %s", (login,)).fetchone()
            verb = "alter" if exists else "create"
            cur.execute(sql.SQL(verb + " role {} login password {}").format(sql.Identifier(login), verifier))
            if login != group:
                cur.execute(sql.SQL("grant {} to {}").format(sql.Identifier(group), sql.Identifier(login)))


def prepare_warehouse() -> list[str]:
    """Apply the DDL and the job logins through the Airflow connections. Returns the scripts applied."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from airflow.sdk import BaseHook

    from include.retail.platform import config

    job_connections = {LOADER_ROLE: config.WAREHOUSE_CONN_ID, TRANSFORMER_ROLE: config.WAREHOUSE_TRANSFORM_CONN_ID}
    logins = {}
    for group, conn_id in job_connections.items():
        connection = BaseHook.get_connection(conn_id)
        logins[group] = (connection.login, connection.password)
    conn = PostgresHook(postgres_conn_id=config.WAREHOUSE_ADMIN_CONN_ID).get_conn()
    conn.autocommit = True
    with conn:
        applied = apply_ddl(conn)
        provision_logins(conn, logins)
    return applied


if __name__ == "__main__":
    print("applied:", ", ".join(prepare_warehouse()))
