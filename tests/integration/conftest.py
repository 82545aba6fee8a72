"""Helpers for running the DAGs through Airflow against the session's embedded stack."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from devstack.aws import BUCKET
from devstack.stack import Stack

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"

pytestmark = pytest.mark.integration


@dataclass
class Run:
    state: str
    run_id: str
    alerts: list[dict]


@pytest.fixture(scope="session")
def dags(stack: Stack) -> dict:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    return bag.dags


@pytest.fixture(scope="session")
def run_ingest(stack: Stack, dags: dict) -> Callable[..., Run]:
    """Run ingest with ``dag.test()``: ``retail_ingest_file`` for one key, else the waiting ``retail_ingest``.

    Returns the run's state and alerts."""

    def run(key: str | None = None) -> Run:
        stack.read_alerts()  # only this run's alerts count
        dag_run = dags["retail_ingest_file"].test(run_conf={"key": key}) if key else dags["retail_ingest"].test()
        return Run(state=str(dag_run.state), run_id=dag_run.run_id, alerts=stack.read_alerts())

    return run


@pytest.fixture(scope="session")
def run_transform(stack: Stack, dags: dict) -> Callable[[], Run]:
    """Run retail_transform with ``dag.test()``, as the Asset event would; return its state and alerts."""

    def run() -> Run:
        stack.read_alerts()
        dag_run = dags["retail_transform"].test()
        return Run(state=str(dag_run.state), run_id=dag_run.run_id, alerts=stack.read_alerts())

    return run


@pytest.fixture(scope="session")
def reset_warehouse(stack: Stack) -> Callable[[], None]:
    """Empty bronze and drop what dbt built, for tests that need the warehouse to hold only their data."""

    def reset() -> None:
        stack.reset_warehouse()

    return reset


@pytest.fixture(scope="session")
def s3(stack: Stack):
    return stack.boto3_client("s3")


@pytest.fixture(scope="session")
def upload(s3) -> Callable[[Path, str], str]:
    def put(path: Path, key: str) -> str:
        s3.upload_file(str(path), BUCKET, key)
        return key

    return put


@pytest.fixture(scope="session")
def keys_under(s3) -> Callable[[str], set[str]]:
    def keys(prefix: str) -> set[str]:
        listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return {item["Key"] for item in listing.get("Contents", [])}

    return keys


@pytest.fixture(scope="session")
def read_json(s3) -> Callable[[str], dict]:
    def read(key: str) -> dict:
        return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    return read


@pytest.fixture
def warehouse(stack: Stack):
    with psycopg.connect(stack.warehouse_url(), autocommit=True) as conn:
        yield conn
