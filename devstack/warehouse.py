"""The stack's warehouse: the database ``retail`` on the stack's PostgreSQL cluster, owned as on RDS.

The cluster's superuser only creates the owner role (LOGIN, CREATEROLE, CREATEDB, no superuser, as RDS's
master user); the owner applies include/sql and sets the job roles' logins, as the pipeline does on RDS.
"""

from __future__ import annotations

import psycopg

from devstack.postgres import SUPERUSER, PostgresCluster, provision_owner
from devstack.state import StackState
from include.retail.platform.warehouse import LOADER_ROLE, TRANSFORMER_ROLE, apply_ddl, provision_logins
from include.retail.transform.dbt_project import DBT_PROJECT_DIR

DATABASE = "retail"
OWNER_ROLE = "retail_admin"


class Warehouse:
    def __init__(self, cluster: PostgresCluster, state: StackState) -> None:
        self.cluster = cluster
        self.state = state

    def job_passwords(self) -> dict[str, str]:
        """Each job role's password: the role is its own login."""
        return {LOADER_ROLE: self.state.loader_password, TRANSFORMER_ROLE: self.state.transformer_password}

    def url(self, role: str = SUPERUSER) -> str:
        """libpq URL of the warehouse database: as the cluster's superuser by default, as the database's owner
        (``retail_admin``), or as one of the job roles."""
        if role == OWNER_ROLE:
            return self.cluster.url(OWNER_ROLE, self.state.owner_password, DATABASE)
        if role in self.job_passwords():
            return self.cluster.url(role, self.job_passwords()[role], DATABASE)
        return self.cluster.url(database=DATABASE)

    def prepare(self) -> None:
        """The superuser creates the owner role and gives it the database; the owner applies the DDL, as on RDS."""
        provision_owner(self.cluster.url(), DATABASE, OWNER_ROLE, self.state.owner_password)
        with psycopg.connect(self.url(OWNER_ROLE)) as conn:
            apply_ddl(conn)
            provision_logins(conn, {role: (role, password) for role, password in self.job_passwords().items()})

    def reset(self, *, bronze: bool = True) -> None:
        """Drop what dbt built and, with ``bronze``, empty bronze and the ledger; then re-apply the DDL."""
        with psycopg.connect(self.url()) as conn:
            if bronze:
                conn.execute("truncate bronze.retail_transactions, bronze.rejected_rows, bronze.load_ledger")
            conn.execute("drop schema if exists silver cascade")
            conn.execute("drop schema if exists gold cascade")
            apply_ddl(conn)

    def dbt_profile_environment(self) -> dict[str, str]:
        """What dbt outside Airflow (make docs) reads its profile from (the project's profiles.yml)."""
        return {
            "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
            "RETAIL_DBT_HOST": "127.0.0.1",
            "RETAIL_DBT_PORT": str(self.state.postgres_port),
            "RETAIL_DBT_USER": TRANSFORMER_ROLE,
            "RETAIL_DBT_PASSWORD": self.state.transformer_password,
            "RETAIL_DBT_DATABASE": DATABASE,
        }
