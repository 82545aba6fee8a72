"""The embedded stack sets every connection and Variable that include/retail/platform/config.py names, under the
environment variable names Airflow reads them from, and no other: a name renamed in config.py fails here."""

from __future__ import annotations

from pathlib import Path

from devstack.stack import Stack
from include.retail.platform import config

CONFIG = vars(config)
CONNECTION_IDS = {value for name, value in CONFIG.items() if name.endswith("_CONN_ID")}
VARIABLES = {name: value for name, value in CONFIG.items() if name.endswith("_VARIABLE")}
# A Variable is optional when config.py gives it a default (DEFAULT_<stem> beside <stem>_VARIABLE): the stack
# leaves it unset, so that its default applies and a test or a user can still set it.
OPTIONAL_VARIABLES = {
    value for name, value in VARIABLES.items() if f"DEFAULT_{name.removesuffix('_VARIABLE')}" in CONFIG
}
REQUIRED_VARIABLES = set(VARIABLES.values()) - OPTIONAL_VARIABLES
# Set only when uploads are detected by events (make up TRIGGER=events).
EVENTS_ONLY_VARIABLES = {config.UPLOADS_QUEUE_VARIABLE}


def test_every_connection_and_variable_of_config_is_set_by_the_stack(tmp_path: Path) -> None:
    environment = Stack(tmp_path).environment()  # reads no process: the stack is not started
    stack_with_events = Stack(tmp_path / "events")
    stack_with_events.use_trigger("events")
    with_events = stack_with_events.environment()

    assert {config.AWS_CONN_ID, config.WAREHOUSE_CONN_ID, config.WAREHOUSE_ADMIN_CONN_ID} <= CONNECTION_IDS
    assert {config.BUCKET_VARIABLE, config.ALERTS_TOPIC_VARIABLE} <= REQUIRED_VARIABLES
    assert config.MAX_REJECTED_FRACTION_VARIABLE in OPTIONAL_VARIABLES
    for conn_id in CONNECTION_IDS:
        assert environment.get(f"AIRFLOW_CONN_{conn_id.upper()}"), f"connection {conn_id} is not set"
    for key in REQUIRED_VARIABLES:
        assert with_events.get(f"AIRFLOW_VAR_{key.upper()}"), f"Variable {key} is not set"
        if key not in EVENTS_ONLY_VARIABLES:
            assert environment.get(f"AIRFLOW_VAR_{key.upper()}"), f"Variable {key} is not set"
    assert environment[f"AIRFLOW_VAR_{config.TRIGGER_VARIABLE.upper()}"] == "sensor"
    assert with_events[f"AIRFLOW_VAR_{config.TRIGGER_VARIABLE.upper()}"] == "events"

    set_connections = {name for name in environment if name.startswith("AIRFLOW_CONN_")}
    set_variables = {name for name in environment if name.startswith("AIRFLOW_VAR_")}
    assert set_connections == {f"AIRFLOW_CONN_{conn_id.upper()}" for conn_id in CONNECTION_IDS}
    assert set_variables == {f"AIRFLOW_VAR_{key.upper()}" for key in REQUIRED_VARIABLES - EVENTS_ONLY_VARIABLES}
    assert {name for name in with_events if name.startswith("AIRFLOW_VAR_")} == {
        f"AIRFLOW_VAR_{key.upper()}" for key in REQUIRED_VARIABLES
    }
