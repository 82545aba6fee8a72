"""mwaa/rehearsal.py (with mwaa/template.py) reads infra/retail-pipeline.yaml as a deploy would make it: fast
checks, no Docker.

The MWAA rehearsal (tests/mwaa) provisions moto and "RDS" from this rendering only, so what is checked here is what
the rehearsal's containers will find: the secrets (names, values, generated passwords, the RDS attachment), the
Airflow configuration options, the buckets, the topic and the master user.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import string
import subprocess
from pathlib import Path

import pytest
from psycopg import pq

from include.retail.detect.events import Trigger, keys_from_message_body
from include.retail.platform import config
from include.retail.platform.warehouse import LOADER_ROLE, TRANSFORMER_ROLE
from mwaa.rehearsal import (
    CONTAINER_AWS,
    Deployment,
    env_file_text,
    generate_password,
    provision_aws,
    rehearsal_env,
    render_deployment,
)
from mwaa.rehearsal_database import master_user_sql, scram_verifier
from mwaa.template import Renderer, Unrenderable, created_resources, load_template

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = REPO_ROOT / ".venv" / "bin" / "docker-compose"
ACCOUNT, REGION = "123456789012", "eu-west-1"
CONNECTIONS = {
    config.WAREHOUSE_ADMIN_CONN_ID: "retail_admin",
    config.WAREHOUSE_CONN_ID: LOADER_ROLE,
    config.WAREHOUSE_TRANSFORM_CONN_ID: TRANSFORMER_ROLE,
}
BACKEND = "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend"
VARIABLES = (config.BUCKET_VARIABLE, config.ALERTS_TOPIC_VARIABLE, config.TRIGGER_VARIABLE)


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template()


@pytest.fixture(scope="module")
def deployment(template: dict) -> Deployment:
    return render_deployment(template, environment_name="rehearsal")


def test_names_are_the_templates_with_the_environment_account_and_region(deployment: Deployment) -> None:
    assert deployment.data_bucket == f"rehearsal-data-{ACCOUNT}-{REGION}"
    assert deployment.mwaa_bucket == f"airflow-rehearsal-{ACCOUNT}-{REGION}"
    assert deployment.topic_name == "rehearsal-alerts"
    assert deployment.topic_arn == f"arn:aws:sns:{REGION}:{ACCOUNT}:rehearsal-alerts"
    assert deployment.bundle_paths == {
        "DagS3Path": "dags",
        "RequirementsS3Path": "requirements.txt",
        "PluginsS3Path": "plugins.zip",
        "StartupScriptS3Path": "startup.sh",
    }


def test_every_secret_of_the_template_with_the_value_cloudformation_gives_it(deployment: Deployment) -> None:
    names = {secret.name for secret in deployment.secrets}
    assert names == {f"rehearsal/airflow/connections/{conn_id}" for conn_id in CONNECTIONS} | {
        f"rehearsal/airflow/variables/{key}" for key in VARIABLES
    }
    for conn_id, login in CONNECTIONS.items():
        value = json.loads(deployment.secret(conn_id).value)
        assert (value["conn_type"], value["login"], value["schema"]) == ("postgres", login, "retail"), conn_id
        assert (value["host"], value["port"], value["extra"]) == ("rds", 5432, {"sslmode": "require"}), conn_id
        assert re.fullmatch(r"[A-Za-z0-9]{32}", value["password"]), conn_id
    # What the SecretTargetAttachment adds to the admin secret once the instance exists.
    admin = json.loads(deployment.secret(config.WAREHOUSE_ADMIN_CONN_ID).value)
    assert (admin["engine"], admin["dbInstanceIdentifier"]) == ("postgres", "rehearsal-warehouse")
    assert deployment.secret(config.BUCKET_VARIABLE).value == deployment.data_bucket
    assert deployment.secret(config.ALERTS_TOPIC_VARIABLE).value == deployment.topic_arn
    # The template's default: the sensor, and nothing of the event path.
    assert deployment.secret(config.TRIGGER_VARIABLE).value == Trigger.SENSOR.value
    assert deployment.uploads_queue is None


def test_passwords_are_new_for_each_deployment(template: dict, deployment: Deployment) -> None:
    again = render_deployment(template, environment_name="rehearsal")
    for conn_id in CONNECTIONS:
        first = json.loads(deployment.secret(conn_id).value)["password"]
        assert json.loads(again.secret(conn_id).value)["password"] != first


def test_the_master_user_is_resolved_from_the_admin_secret(deployment: Deployment) -> None:
    admin = json.loads(deployment.secret(config.WAREHOUSE_ADMIN_CONN_ID).value)
    assert deployment.master_user.login == admin["login"] == "retail_admin"
    assert deployment.master_user.password == admin["password"]
    assert deployment.master_user.database == "retail"


def test_airflow_options_become_mwaas_variables(deployment: Deployment) -> None:
    options = deployment.airflow_options
    assert set(options) == {
        "AIRFLOW__CORE__LOAD_EXAMPLES",
        "AIRFLOW__SECRETS__BACKEND",
        "AIRFLOW__SECRETS__BACKEND_KWARGS",
        "AIRFLOW__COSMOS__DBT_DOCS_PROJECTS",
    }
    assert json.loads(options["AIRFLOW__COSMOS__DBT_DOCS_PROJECTS"])["retail"]["dir"] == (
        "/usr/local/airflow/dags/include/dbt/target"
    )
    assert options["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert options["AIRFLOW__SECRETS__BACKEND"] == BACKEND
    assert json.loads(options["AIRFLOW__SECRETS__BACKEND_KWARGS"]) == {
        "connections_prefix": "rehearsal/airflow/connections",
        "variables_prefix": "rehearsal/airflow/variables",
        "connections_lookup_pattern": "^retail_",
        "variables_lookup_pattern": "^retail_",
    }


def test_the_containers_env_holds_the_contract(deployment: Deployment) -> None:
    versions = {"requirements.txt": "r1", "plugins.zip": "p1", "startup.sh": "s1"}
    env = rehearsal_env(deployment, versions)
    assert env.items() >= deployment.airflow_options.items()
    assert env.items() >= CONTAINER_AWS.items()
    assert json.loads(env["MWAA__CORE__CUSTOM_AIRFLOW_CONFIGS"]) == deployment.airflow_options
    assert env["MWAA_SOURCE_BUCKET"] == deployment.mwaa_bucket
    assert env["MWAA_DAGS_S3_PATH"] == "dags"
    assert env["MWAA_REQUIREMENTS_S3_PATH"] == "requirements.txt"
    assert env["MWAA_PLUGINS_S3_PATH"] == "plugins.zip"
    assert env["MWAA_STARTUP_SCRIPT_S3_PATH"] == "startup.sh"
    assert env["MWAA_REQUIREMENTS_S3_OBJECT_VERSION"] == "r1"
    assert env["MWAA_STARTUP_SCRIPT_S3_OBJECT_VERSION"] == "s1"
    assert not [name for name in env if name.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))]


def test_compose_reads_the_env_file_back_unchanged(deployment: Deployment, tmp_path: Path) -> None:
    """The JSON values survive Compose's env_file parsing (no interpolation, no quote stripping inside)."""
    if not COMPOSE.exists():
        pytest.skip(f"{COMPOSE} is not installed (make venv)")
    env = rehearsal_env(deployment, {"requirements.txt": "a.b_c", "plugins.zip": "x", "startup.sh": "y"})
    env["WITH_DOLLAR"] = "p$a$$s ${word}"
    (tmp_path / "rehearsal.env").write_text(env_file_text(env, header="a header\nof two lines"))
    (tmp_path / "compose.yaml").write_text("services:\n  one:\n    image: none\n    env_file: rehearsal.env\n")
    result = subprocess.run(
        [str(COMPOSE), "-p", "envcheck", "config", "--format", "json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        check=True,
    )
    read = json.loads(result.stdout)["services"]["one"]["environment"]
    # `config` prints a literal "$" as "$$" (its own escape): undone, the values are exactly what was written.
    assert {name: value.replace("$$", "$") for name, value in read.items()} == env


def test_the_rendered_deployment_is_what_the_secrets_backend_reads(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Provisioned in moto by provision_aws, read back through the provider's backend with the template's kwargs."""
    import boto3
    from airflow.providers.amazon.aws.secrets.secrets_manager import SecretsManagerBackend
    from moto import mock_aws

    for variable, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        clients = [boto3.client(name, region_name=REGION) for name in ("s3", "sns", "sqs", "secretsmanager")]
        assert provision_aws(*clients, deployment) == deployment.topic_arn
        s3 = clients[0]
        for bucket in (deployment.data_bucket, deployment.mwaa_bucket):
            assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        kwargs = json.loads(deployment.airflow_options["AIRFLOW__SECRETS__BACKEND_KWARGS"])
        backend = SecretsManagerBackend(**kwargs, region_name=REGION)
        for conn_id, login in CONNECTIONS.items():
            connection = backend.get_connection(conn_id)
            assert connection is not None, conn_id
            assert (connection.conn_type, connection.host, connection.port, connection.login) == (
                "postgres",
                "rds",
                5432,
                login,
            )
            assert connection.extra_dejson == {"sslmode": "require"}
        admin = backend.get_connection(config.WAREHOUSE_ADMIN_CONN_ID)
        assert (admin.login, admin.password, admin.schema) == (
            deployment.master_user.login,
            deployment.master_user.password,
            deployment.master_user.database,
        )
        assert backend.get_variable(config.BUCKET_VARIABLE) == deployment.data_bucket
        assert backend.get_variable(config.ALERTS_TOPIC_VARIABLE) == deployment.topic_arn
        assert backend.get_variable(config.TRIGGER_VARIABLE) == Trigger.SENSOR.value
        assert backend.get_variable(config.UPLOADS_QUEUE_VARIABLE) is None
        assert backend.get_connection(config.AWS_CONN_ID) is None  # never looked up: MWAA's own


def test_a_secret_left_out_of_the_template_is_left_out_of_the_deployment(template: dict) -> None:
    broken = copy.deepcopy(template)
    (logical_id,) = [
        name
        for name, resource in broken["Resources"].items()
        if resource["Type"] == "AWS::SecretsManager::Secret"
        and "retail_warehouse_transform" in json.dumps(resource["Properties"]["Name"])
    ]
    del broken["Resources"][logical_id]
    names = {secret.name for secret in render_deployment(broken).secrets}
    assert "rehearsal/airflow/connections/retail_warehouse_transform" not in names
    assert len(names) == len(CONNECTIONS) + len(VARIABLES) - 1


def test_events_add_the_queue_and_its_variable(template: dict) -> None:
    events = render_deployment(template, environment_name="rehearsal", parameters={"Trigger": Trigger.EVENTS.value})
    queue_url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/rehearsal-uploads"
    assert events.secret(config.TRIGGER_VARIABLE).value == Trigger.EVENTS.value
    assert events.secret(config.UPLOADS_QUEUE_VARIABLE).value == queue_url
    assert events.uploads_queue is not None
    assert (events.uploads_queue.name, events.uploads_queue.url) == ("rehearsal-uploads", queue_url)
    assert (events.uploads_queue.dead_letters, events.uploads_queue.max_receives) == ("rehearsal-uploads-dlq", 5)


def test_only_what_the_conditions_create_is_rendered(template: dict) -> None:
    """A resource whose condition is false is not made, and nothing may refer to it: as in CloudFormation."""
    assert "UploadsQueue" not in created_resources(template)
    assert "UploadsQueue" in created_resources(template, {"Trigger": "events"})
    # The MWAA environment (HasBundle) is rendered as the second deploy makes it, with the bundle's versions.
    assert "MwaaEnvironment" not in created_resources(template)
    renderer = Renderer(template, parameters={"Trigger": "events"})
    assert renderer.render([{"Fn::If": ["DetectsByEvents", "q", {"Ref": "AWS::NoValue"}]}, "x"]) == ["q", "x"]
    assert Renderer(template).render({"k": {"Fn::If": ["DetectsByEvents", "q", {"Ref": "AWS::NoValue"}]}}) == {}
    with pytest.raises(Unrenderable, match="no condition"):
        Renderer(template).render({"Fn::If": ["NoSuchCondition", "a", "b"]})


def test_events_provision_the_queue_the_bucket_notifies(template: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """provision_aws makes the template's queues in moto and wires the data bucket to them: an upload under
    incoming/ arrives as an S3 event the pipeline reads; a key elsewhere does not."""
    import boto3
    from moto import mock_aws

    for variable, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    events = render_deployment(template, environment_name="rehearsal", parameters={"Trigger": Trigger.EVENTS.value})
    assert events.uploads_queue is not None
    with mock_aws():
        s3, sns, sqs, secretsmanager = (
            boto3.client(name, region_name=REGION) for name in ("s3", "sns", "sqs", "secretsmanager")
        )
        provision_aws(s3, sns, sqs, secretsmanager, events)
        queue_url = sqs.get_queue_url(QueueName=events.uploads_queue.name)["QueueUrl"]
        assert queue_url.rsplit("/", 1)[-1] == events.secret(config.UPLOADS_QUEUE_VARIABLE).value.rsplit("/", 1)[-1]
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]
        assert json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"].endswith(":rehearsal-uploads-dlq")
        s3.put_object(Bucket=events.data_bucket, Key="processed/not-announced.xlsx", Body=b"x")
        s3.put_object(Bucket=events.data_bucket, Key="incoming/new file.xlsx", Body=b"x")
        keys = []
        while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
            for message in messages:
                keys += keys_from_message_body(message["Body"])
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        assert keys == ["incoming/new file.xlsx"]


def test_what_the_renderer_cannot_evaluate_is_an_error_not_a_guess() -> None:
    renderer = Renderer({"Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {}}}})
    with pytest.raises(Unrenderable, match="Ref Queue"):
        renderer.render({"Ref": "Queue"})
    with pytest.raises(Unrenderable, match="Fn::ImportValue"):
        renderer.render({"Fn::ImportValue": "x"})
    with pytest.raises(Unrenderable, match="no default"):
        Renderer({"Parameters": {"Name": {"Type": "String"}}}).render({"Fn::Sub": "${Name}"})


def test_generated_passwords_follow_the_spec() -> None:
    for _ in range(50):
        password = generate_password({"PasswordLength": 32, "ExcludePunctuation": True})
        assert len(password) == 32
        assert set(password) <= set(string.ascii_letters + string.digits)
        for group in (string.ascii_lowercase, string.ascii_uppercase, string.digits):
            assert any(c in group for c in password), password
    assert (
        set(generate_password({"PasswordLength": 20, "ExcludeCharacters": "abc", "ExcludeNumbers": True}))
        & set("abc" + string.digits)
        == set()
    )


def test_the_scram_verifier_is_libpqs() -> None:
    """Recomputed from libpq's own salt and iteration count, it is the verifier libpq made."""
    made = pq.PGconn.connect_start(b"host=/nonexistent port=1").encrypt_password(
        b"Secret1secret", b"retail_admin", b"scram-sha-256"
    )
    match = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$.+", made.decode())
    assert match
    ours = scram_verifier("Secret1secret", salt=base64.b64decode(match[2]), iterations=int(match[1]))
    assert ours == made.decode()


def test_master_user_sql_creates_an_owner_without_superuser_or_clear_password(deployment: Deployment) -> None:
    statements = master_user_sql(deployment.master_user)
    assert "create role retail_admin login createrole createdb nosuperuser password 'SCRAM-SHA-256$4096:" in statements
    assert "create database retail owner retail_admin;" in statements
    assert deployment.master_user.password not in statements
