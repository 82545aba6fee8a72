"""A rehearsal of the MWAA deployment: what ``infra/retail-pipeline.yaml`` makes, rendered from the template itself.

The rehearsal (``make mwaa-rehearse``, tests/mwaa) runs the bundle in MWAA-shaped containers against moto and a
PostgreSQL standing in for RDS. So that it tests the deploy rather than a second description of it, everything it
provisions comes from the template through one code path (``render_deployment``):

- the MWAA environment's ``AirflowConfigurationOptions``, as the ``AIRFLOW__SECTION__KEY`` variables MWAA turns
  them into, and where the environment reads its bundle (source bucket, ``DagS3Path``, the three root files);
- every ``AWS::SecretsManager::Secret`` with the value CloudFormation gives it: ``SecretString`` rendered, or
  ``GenerateSecretString``'s template with a generated password added, plus what a ``SecretTargetAttachment`` to
  the RDS instance writes into it (engine, host, port, instance id);
- the buckets' and the topic's names, and the RDS master user with its ``{{resolve:secretsmanager:...}}``
  references resolved against those secrets;
- with ``Trigger=events``, the uploads queue and its dead-letter queue, wired to the data bucket.

The template itself (conditions, intrinsic functions, which resources a deploy creates) is evaluated by
``mwaa.template``; this module reads the resources the rehearsal needs out of that evaluation. Nothing here runs
CloudFormation (``mwaa.cloudformation`` does, for a real deploy).

``provision_aws`` creates all of that in moto, ``mwaa.rehearsal_database.master_user_sql`` is what "RDS" runs to
create its master user, and ``rehearsal_env`` is the env file the MWAA stand-in containers read. A connection or
Variable the DAGs need but the template does not create is simply absent, and the rehearsal fails on it as MWAA
would.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mwaa import DeployError
from mwaa.bundle import PLUGINS_ZIP, REQUIREMENTS_TXT, STARTUP_SH
from mwaa.cloudformation import VERSION_PARAMETERS
from mwaa.template import REGION, Renderer, Unrenderable, created_resources, load_template, resources_of, the_one

ENVIRONMENT_NAME = "rehearsal"
# The warehouse as the containers reach it: the compose service standing in for the RDS endpoint.
RDS_HOST = "rds"
RDS_PORT = 5432
# The containers' stand-in for the execution role: moto on the compose network, any credentials.
CONTAINER_AWS = {
    "AWS_ENDPOINT_URL": "http://moto:5000",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}
# What GetRandomPassword draws from (ExcludePunctuation removes the last group).
_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
_DYNAMIC_REFERENCE = re.compile(r"\{\{resolve:secretsmanager:(?P<id>.+?):SecretString:(?P<key>[^:}]+)(?::[^}]*)?\}\}")


@dataclass(frozen=True)
class Secret:
    logical_id: str
    name: str
    value: str  # the SecretString as Secrets Manager holds it after the deploy
    description: str = ""


@dataclass(frozen=True)
class MasterUser:
    """The RDS instance's master user and initial database, as RDS creates them."""

    login: str
    password: str
    database: str


@dataclass(frozen=True)
class UploadsQueue:
    """The queue the data bucket notifies of uploads (Trigger=events), as the template names it."""

    name: str
    url: str
    dead_letters: str
    max_receives: int


@dataclass(frozen=True)
class Deployment:
    """What one deploy of the template makes, as the rehearsal needs it."""

    environment_name: str
    data_bucket: str
    mwaa_bucket: str
    topic_name: str
    topic_arn: str
    secrets: tuple[Secret, ...]
    master_user: MasterUser
    # AirflowConfigurationOptions as MWAA passes them to Airflow: {"AIRFLOW__CORE__LOAD_EXAMPLES": "False", ...}.
    airflow_options: dict[str, str]
    # The MwaaEnvironment's bundle location: DagS3Path and the root files' keys, by property name.
    bundle_paths: dict[str, str] = field(default_factory=dict)
    # Trigger=events only: the queue the data bucket notifies of uploads, and its dead-letter queue.
    uploads_queue: UploadsQueue | None = None

    def secret(self, suffix: str) -> Secret:
        """The secret whose name ends with ``/suffix`` (e.g. a connection id)."""
        found = [secret for secret in self.secrets if secret.name.endswith(f"/{suffix}")]
        if len(found) != 1:
            raise DeployError(f"expected one secret named .../{suffix}, found {[s.name for s in found]}")
        return found[0]


def generate_password(spec: Mapping[str, Any], choice: Callable[[str], str] = secrets.choice) -> str:
    """A password as Secrets Manager's GenerateSecretString makes it: length, excluded groups and characters,
    and (by default) at least one character of each included group."""
    groups = []
    for flag, group in (
        ("ExcludeLowercase", string.ascii_lowercase),
        ("ExcludeUppercase", string.ascii_uppercase),
        ("ExcludeNumbers", string.digits),
        ("ExcludePunctuation", _PUNCTUATION),
    ):
        if not _true(spec.get(flag, False)):
            excluded = str(spec.get("ExcludeCharacters", ""))
            kept = "".join(character for character in group if character not in excluded)
            if kept:
                groups.append(kept)
    if _true(spec.get("IncludeSpace", False)):
        groups.append(" ")
    length = int(spec.get("PasswordLength", 32))
    if not groups or length < len(groups):
        raise DeployError(f"GenerateSecretString {dict(spec)} allows no password")
    alphabet = "".join(groups)
    while True:
        password = "".join(choice(alphabet) for _ in range(length))
        if not _true(spec.get("RequireEachIncludedType", True)) or all(
            any(character in group for character in password) for group in groups
        ):
            return password


def _true(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def render_deployment(
    template: Mapping[str, Any] | None = None,
    *,
    environment_name: str = ENVIRONMENT_NAME,
    rds_host: str = RDS_HOST,
    rds_port: int = RDS_PORT,
    password: Callable[[Mapping[str, Any]], str] = generate_password,
    parameters: Mapping[str, str] | None = None,
) -> Deployment:
    """What deploying ``template`` with ``EnvironmentName=environment_name`` (and ``parameters``, the others at
    their defaults) makes once the bundle is uploaded, its RDS instance at ``rds_host:rds_port``. Passwords are
    generated afresh on each call, as a new stack's are."""
    full = load_template() if template is None else template
    # The second deploy's: the bundle's object versions are known, so the MWAA environment exists (HasBundle).
    given = dict.fromkeys(VERSION_PARAMETERS.values(), "rehearsal") | {"EnvironmentName": environment_name}
    given |= dict(parameters or {})
    # Only what this deploy creates: a reference to anything else is an error, as it is for CloudFormation.
    template = {**full, "Resources": created_resources(full, given)}
    warehouse_id, warehouse = the_one(template, "AWS::RDS::DBInstance")
    renderer = Renderer(
        template,
        parameters=given,
        attributes={f"{warehouse_id}.Endpoint.Address": rds_host, f"{warehouse_id}.Endpoint.Port": str(rds_port)},
    )

    values: dict[str, dict[str, Any] | str] = {}
    secret_props = dict(resources_of(template, "AWS::SecretsManager::Secret"))
    for logical_id, resource in secret_props.items():
        props = resource["Properties"]
        if "SecretString" in props:
            values[logical_id] = renderer.text(props["SecretString"])
            continue
        spec = props.get("GenerateSecretString")
        if spec is None:
            raise Unrenderable(f"{logical_id} has neither SecretString nor GenerateSecretString")
        if "SecretStringTemplate" not in spec:
            values[logical_id] = password(spec)
            continue
        value = json.loads(renderer.text(spec["SecretStringTemplate"]))
        value[str(spec["GenerateStringKey"])] = password(spec)
        values[logical_id] = value
    for logical_id, resource in resources_of(template, "AWS::SecretsManager::SecretTargetAttachment"):
        props = resource["Properties"]
        if props.get("TargetType") != "AWS::RDS::DBInstance" or props.get("TargetId") != {"Ref": warehouse_id}:
            raise Unrenderable(f"{logical_id}: only an attachment to the RDS instance {warehouse_id} is rendered")
        target = props["SecretId"].get("Ref") if isinstance(props["SecretId"], Mapping) else None
        if not isinstance(values.get(target), dict):
            raise Unrenderable(f"{logical_id} attaches {props['SecretId']}, not a JSON secret of this template")
        # What the attachment writes once the instance exists: the connection details RDS knows.
        values[target] |= {
            "engine": renderer.text(warehouse["Properties"]["Engine"]),
            "host": rds_host,
            "port": rds_port,
            "dbInstanceIdentifier": renderer.ref(warehouse_id),
        }
    rendered_secrets = tuple(
        Secret(
            logical_id,
            renderer.text(secret_props[logical_id]["Properties"]["Name"]),
            value if isinstance(value, str) else json.dumps(value),
            renderer.text(secret_props[logical_id]["Properties"].get("Description", "")),
        )
        for logical_id, value in values.items()
    )

    by_arn = {renderer.ref(secret.logical_id): secret for secret in rendered_secrets}

    def resolve(text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            secret = by_arn.get(match["id"])
            if secret is None:
                raise Unrenderable(f"{match[0]} names no secret of this template")
            return str(json.loads(secret.value)[match["key"]])

        return _DYNAMIC_REFERENCE.sub(replace, text)

    warehouse_props = warehouse["Properties"]
    master = MasterUser(
        login=resolve(renderer.text(warehouse_props["MasterUsername"])),
        password=resolve(renderer.text(warehouse_props["MasterUserPassword"])),
        database=renderer.text(warehouse_props.get("DBName", "postgres")),
    )

    _, environment = the_one(template, "AWS::MWAA::Environment")
    env_props = environment["Properties"]
    source_arn = renderer.text(env_props["SourceBucketArn"])
    if not source_arn.startswith("arn:aws:s3:::"):
        raise Unrenderable(f"SourceBucketArn {source_arn} is not a bucket ARN")
    options = renderer.render(env_props.get("AirflowConfigurationOptions", {}))
    bundle_paths = {
        name: renderer.text(env_props[name])
        for name in ("DagS3Path", "RequirementsS3Path", "PluginsS3Path", "StartupScriptS3Path")
        if name in env_props
    }
    topic_id, topic = the_one(template, "AWS::SNS::Topic")
    return Deployment(
        environment_name=environment_name,
        data_bucket=_data_bucket(template, renderer, source_arn),
        mwaa_bucket=source_arn.removeprefix("arn:aws:s3:::"),
        topic_name=renderer.text(topic["Properties"]["TopicName"]),
        topic_arn=renderer.ref(topic_id),
        secrets=rendered_secrets,
        master_user=master,
        airflow_options=airflow_environment(options),
        bundle_paths=bundle_paths,
        uploads_queue=_uploads_queue(template, renderer),
    )


def _uploads_queue(template: Mapping[str, Any], renderer: Renderer) -> UploadsQueue | None:
    """The queue with a redrive policy (the one the bucket notifies) and its dead-letter queue, if created."""
    queues = [
        name
        for name, resource in resources_of(template, "AWS::SQS::Queue")
        if "RedrivePolicy" in resource["Properties"]
    ]
    if not queues:
        return None
    if len(queues) != 1:
        raise Unrenderable(f"expected one queue with a dead-letter queue, found {queues}")
    props = template["Resources"][queues[0]]["Properties"]
    redrive = renderer.render(props["RedrivePolicy"])
    dead_letters = renderer.text(redrive["deadLetterTargetArn"]).rsplit(":", 1)[-1]
    return UploadsQueue(
        name=renderer.text(props["QueueName"]),
        url=renderer.text({"Ref": queues[0]}),
        dead_letters=dead_letters,
        max_receives=int(redrive["maxReceiveCount"]),
    )


def _data_bucket(template: Mapping[str, Any], renderer: Renderer, source_arn: str) -> str:
    """The bucket that is not the MWAA bucket: the one the DAGs' Variable names."""
    names = [renderer.ref(name) for name, _ in resources_of(template, "AWS::S3::Bucket")]
    others = [name for name in names if f"arn:aws:s3:::{name}" != source_arn]
    if len(others) != 1:
        raise Unrenderable(f"expected one data bucket besides the MWAA bucket, found {others}")
    return others[0]


def airflow_environment(options: Mapping[str, Any]) -> dict[str, str]:
    """``AirflowConfigurationOptions`` as the variables MWAA sets from them: ``section.key`` becomes
    ``AIRFLOW__SECTION__KEY`` (MWAA hands them to its containers as this mapping, in
    ``MWAA__CORE__CUSTOM_AIRFLOW_CONFIGS``)."""
    converted = {}
    for option, value in options.items():
        section, dot, key = str(option).partition(".")
        if not (section and dot and key):
            raise DeployError(f"AirflowConfigurationOptions key {option!r} is not section.key")
        converted[f"AIRFLOW__{section.upper()}__{key.upper()}"] = str(value)
    return converted


# -- moto: what the stack creates -------------------------------------------------------------------------------


def provision_aws(s3, sns, sqs, secretsmanager, deployment: Deployment, *, inbox: str | None = None) -> str:
    """Create the deployment's buckets (versioned), topic (with an SQS inbox subscribed, to read the alerts
    back), secrets and, with Trigger=events, the uploads queue the data bucket notifies. Returns the topic's ARN,
    which must be the one the template's ``Ref`` renders."""
    from devstack.aws import ALERTS_INBOX, MAX_RECEIVES, provision, provision_upload_events

    topic_arn = provision(
        s3, sns, sqs, bucket=deployment.data_bucket, topic=deployment.topic_name, inbox=inbox or ALERTS_INBOX
    )
    if topic_arn != deployment.topic_arn:
        raise DeployError(f"moto made topic {topic_arn}; the template's Ref renders {deployment.topic_arn}")
    queue = deployment.uploads_queue
    if queue is not None:
        if queue.max_receives != MAX_RECEIVES:
            raise DeployError(
                f"the template redrives after {queue.max_receives} receives, devstack after {MAX_RECEIVES}"
            )
        # The queue's URL is whatever moto answers (its own host); the name is the template's.
        provision_upload_events(
            s3, sqs, bucket=deployment.data_bucket, queue=queue.name, dead_letters=queue.dead_letters
        )
    region = s3.meta.region_name
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=deployment.mwaa_bucket, **location)
    s3.put_bucket_versioning(Bucket=deployment.mwaa_bucket, VersioningConfiguration={"Status": "Enabled"})
    for secret in deployment.secrets:
        put_secret(secretsmanager, secret)
    return topic_arn


def put_secret(secretsmanager, secret: Secret) -> None:
    secretsmanager.create_secret(Name=secret.name, SecretString=secret.value, Description=secret.description)


def delete_secret(secretsmanager, secret: Secret) -> None:
    """As deleting the resource from the stack does (its DeletionPolicy is Delete), with no recovery window."""
    secretsmanager.delete_secret(SecretId=secret.name, ForceDeleteWithoutRecovery=True)


# -- the MWAA containers' environment -----------------------------------------------------------------------------


def rehearsal_env(deployment: Deployment, versions: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of ``rehearsal.env``, read by every MWAA stand-in container (the contract with its image).

    ``versions`` (from ``mwaa.s3.upload_bundle``) are the root files' S3 versions the environment runs: as on
    MWAA, a new requirements.txt, plugins.zip or startup.sh reaches the containers with a new version (and a
    restart), while dags/ is synced as it changes.
    """
    paths = deployment.bundle_paths
    env = dict(deployment.airflow_options)
    env["MWAA__CORE__CUSTOM_AIRFLOW_CONFIGS"] = json.dumps(deployment.airflow_options)
    env |= {
        "MWAA_ENVIRONMENT_NAME": deployment.environment_name,
        "MWAA_SOURCE_BUCKET": deployment.mwaa_bucket,
        "MWAA_DAGS_S3_PATH": paths["DagS3Path"],
        "MWAA_REQUIREMENTS_S3_PATH": paths.get("RequirementsS3Path", ""),
        "MWAA_PLUGINS_S3_PATH": paths.get("PluginsS3Path", ""),
        "MWAA_STARTUP_SCRIPT_S3_PATH": paths.get("StartupScriptS3Path", ""),
    }
    variable = {REQUIREMENTS_TXT: "REQUIREMENTS", PLUGINS_ZIP: "PLUGINS", STARTUP_SH: "STARTUP_SCRIPT"}
    for name, version in (versions or {}).items():
        if name not in VERSION_PARAMETERS:
            raise DeployError(f"{name} is not a versioned bundle file")
        env[f"MWAA_{variable[name]}_S3_OBJECT_VERSION"] = version
    return env | CONTAINER_AWS


def env_file_text(env: Mapping[str, str], *, header: str = "") -> str:
    """``NAME=value`` lines as Compose reads an env_file: plain values bare, others single-quoted (taken literally:
    no interpolation, no escapes)."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for name, value in env.items():
        if "\n" in value or "'" in value:
            raise DeployError(f"{name}: a value with a newline or a single quote cannot go into an env file as is")
        lines.append(f"{name}={value}" if re.fullmatch(r"[\w./:@+,-]*", value) else f"{name}='{value}'")
    return "\n".join(lines) + "\n"
