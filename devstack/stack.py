"""The embedded default stack: PostgreSQL, a moto server for S3 and SNS, and Airflow's own home.

Everything lives under one state directory (``.devstack/`` for ``make``, a temporary one in tests),
runs on 127.0.0.1 on free ports chosen once and remembered (devstack/state.py), and is reached the way AWS
would be: through Airflow connections and Variables, which ``Stack.environment()`` spells out as
``AIRFLOW_*`` variables named after include/retail/platform/config.py. ``up`` and ``down`` can be called any number
of times. Each part is a module of its own; ``Stack`` puts them together.
"""

from __future__ import annotations

import json
from pathlib import Path

from devstack import REPO_ROOT
from devstack.airflow_services import AirflowServices
from devstack.aws import BUCKET
from devstack.moto_server import MotoServer
from devstack.postgres import SUPERUSER, PostgresCluster, cluster_root
from devstack.state import StackState
from devstack.warehouse import OWNER_ROLE, Warehouse
from include.retail.platform import config
from include.retail.platform.warehouse import LOADER_ROLE, TRANSFORMER_ROLE

DEFAULT_HOME = REPO_ROOT / ".devstack"


def connection_variable(conn_id: str) -> str:
    """The environment variable Airflow reads connection ``conn_id`` from."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def variable_variable(key: str) -> str:
    """The environment variable Airflow reads Variable ``key`` from."""
    return f"AIRFLOW_VAR_{key.upper()}"


class Stack:
    def __init__(self, home: Path = DEFAULT_HOME, *, api_port: int | None = None) -> None:
        """``api_port`` pins the Airflow UI/API port (tests pass a free one); it is remembered."""
        self.home = home.resolve()
        self.state = StackState.load_or_create(self.home)
        if api_port is not None and api_port != self.state.api_port:
            self.state.api_port = api_port
            self.state.save(self.home)
        self.postgres = PostgresCluster(
            cluster_root(self.home), self.state.postgres_port, self.state.superuser_password
        )
        self.warehouse = Warehouse(self.postgres, self.state)
        self.moto = MotoServer(self.home, self.state)
        self.airflow = AirflowServices(self.home, self.state, self.environment)

    # -- addresses -----------------------------------------------------------------------------

    @property
    def airflow_home(self) -> Path:
        return self.airflow.home

    @property
    def airflow_db(self) -> Path:
        return self.airflow.db

    @property
    def moto_url(self) -> str:
        return self.moto.url

    @property
    def api_url(self) -> str:
        return self.airflow.api_url

    def warehouse_url(self, role: str = SUPERUSER) -> str:
        return self.warehouse.url(role)

    def environment(self) -> dict[str, str]:
        """The Airflow configuration, connections and Variables that point at this stack."""
        return {
            **self.airflow.settings(),
            **self.warehouse.dbt_profile_environment(),
            connection_variable(config.AWS_CONN_ID): json.dumps(self.moto.aws_connection()),
            connection_variable(config.WAREHOUSE_CONN_ID): self.warehouse.url(LOADER_ROLE),
            connection_variable(config.WAREHOUSE_ADMIN_CONN_ID): self.warehouse.url(OWNER_ROLE),
            connection_variable(config.WAREHOUSE_TRANSFORM_CONN_ID): self.warehouse.url(TRANSFORMER_ROLE),
            variable_variable(config.BUCKET_VARIABLE): BUCKET,
            variable_variable(config.ALERTS_TOPIC_VARIABLE): self.moto.topic_arn,
            variable_variable(config.TRIGGER_VARIABLE): self.state.trigger,
            **(
                {variable_variable(config.UPLOADS_QUEUE_VARIABLE): self.moto.uploads_queue_url}
                if self.state.trigger == "events"
                else {}
            ),
        }

    def boto3_client(self, service: str):
        return self.moto.client(service)

    # -- lifecycle -----------------------------------------------------------------------------

    def up(self) -> None:
        """PostgreSQL with the warehouse, moto with the bucket and topic, Airflow's metadata DB (no service)."""
        self.postgres.start()
        self.warehouse.prepare()
        self.moto.start()
        self.moto.provision()
        self.airflow.migrate()
        self.airflow.fail_orphaned_runs()

    def use_trigger(self, trigger: str) -> None:
        """Detect uploads by ``sensor`` or ``events`` from the next ``up`` on (remembered in the state)."""
        if trigger != self.state.trigger:
            self.state.trigger = trigger
            self.state.save(self.home)

    def down(self) -> None:
        self.airflow.stop()
        self.moto.stop()
        self.postgres.stop()

    def status(self) -> dict[str, bool]:
        return {"postgres": self.postgres.is_running(), "moto": self.moto.running(), **self.airflow.status()}

    def start_airflow(self, timeout: float = 120) -> None:
        """``up``, then the Airflow services; return once the API answers."""
        self.up()
        self.airflow.start(timeout)

    def airflow_running(self) -> bool:
        return self.airflow.running()

    def api(self):
        """A REST API client of this stack's Airflow, logged in as the local admin."""
        return self.airflow.api()

    def run_airflow(self, args: list[str], *, quiet: bool = False, log: Path | None = None) -> int:
        return self.airflow.run(args, quiet=quiet, log=log)

    def reset_warehouse(self, *, bronze: bool = True) -> None:
        self.warehouse.reset(bronze=bronze)

    def read_alerts(self) -> list[dict]:
        return self.moto.read_alerts()
