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

Resources (and ``Fn::If`` branches) whose condition is false for the given parameters are left out, as
CloudFormation leaves them out; ``tests/deploy/test_infra.py`` evaluates conditions with the same functions.

``provision_aws`` creates all of that in moto, ``master_user_sql`` is what "RDS" runs to create its master user,
and ``rehearsal_env`` is the env file the MWAA stand-in containers read. A connection or Variable the DAGs need but
the template does not create is simply absent, and the rehearsal fails on it as MWAA would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mwaa import DeployError
from mwaa.bundle import PLUGINS_ZIP, REQUIREMENTS_TXT, STARTUP_SH
from mwaa.cloudformation import DEFAULT_TEMPLATE, VERSION_PARAMETERS

# moto's default account; any region works, this is the one the docs' examples use.
ACCOUNT_ID = "123456789012"
REGION = "eu-west-1"
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
_SUB_VARIABLE = re.compile(r"\$\{([^}]+)\}")
_DYNAMIC_REFERENCE = re.compile(r"\{\{resolve:secretsmanager:(?P<id>.+?):SecretString:(?P<key>[^:}]+)(?::[^}]*)?\}\}")


class Unrenderable(DeployError):
    """The template uses something the rehearsal cannot render (an intrinsic, a resource type): extend this module."""


# What ``Ref: AWS::NoValue`` renders to: dropped from the list or mapping that holds it.
NO_VALUE: Any = type("NoValue", (), {"__repr__": lambda self: "AWS::NoValue"})()


def parameter_values(template: Mapping[str, Any], given: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every parameter's value for a deploy with ``given``: the template's defaults for the others."""
    values = {name: str(spec["Default"]) for name, spec in template.get("Parameters", {}).items() if "Default" in spec}
    return values | dict(given or {})


def evaluate_condition(template: Mapping[str, Any], name: str, parameters: Mapping[str, str] | None = None) -> bool:
    """The value of the template's condition ``name`` for the given parameter values (the others at their
    defaults): Fn::Equals, Fn::Not, Fn::And, Fn::Or, Condition, and Ref of parameters and pseudo parameters."""
    values = parameter_values(template, parameters) | {"AWS::AccountId": ACCOUNT_ID, "AWS::Region": REGION}
    conditions = template.get("Conditions", {})

    def value(node: Any) -> Any:
        if isinstance(node, Mapping):
            ((key, argument),) = node.items()
            if key == "Ref":
                if argument not in values:
                    raise Unrenderable(f"condition {name}: parameter {argument} has no value")
                return values[argument]
            if key == "Condition":
                return evaluate_condition(template, argument, parameters)
            if key == "Fn::Equals":
                return str(value(argument[0])) == str(value(argument[1]))
            if key == "Fn::Not":
                return not value(argument[0])
            if key == "Fn::And":
                return all(value(item) for item in argument)
            if key == "Fn::Or":
                return any(value(item) for item in argument)
            raise Unrenderable(f"condition {name}: {key} is not evaluated")
        return node

    if name not in conditions:
        raise Unrenderable(f"the template has no condition {name}")
    return bool(value(conditions[name]))


def created_resources(template: Mapping[str, Any], parameters: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The resources a deploy with these parameter values creates: those without a condition or whose holds."""
    return {
        name: resource
        for name, resource in template.get("Resources", {}).items()
        if "Condition" not in resource or evaluate_condition(template, resource["Condition"], parameters)
    }


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


def load_template(path: Path = DEFAULT_TEMPLATE) -> dict[str, Any]:
    """The template as CloudFormation reads it (short-form tags as ``Fn::*``/``Ref``), as tests/deploy does."""
    from cfnlint.decode import decode

    template, errors = decode(str(path))
    if errors or template is None:
        raise DeployError(f"{path} does not parse: {errors}")
    return template


@dataclass
class Renderer:
    """Evaluates the intrinsic functions of the properties the rehearsal reads, as CloudFormation would.

    ``Ref`` of a resource is its physical id (a bucket's name, a topic's or secret's ARN, an instance's
    identifier); ``attributes`` gives the ``GetAtt`` values only a real resource has (the RDS endpoint).
    """

    template: Mapping[str, Any]
    parameters: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, str] = field(default_factory=dict)
    account: str = ACCOUNT_ID
    region: str = REGION

    def resource(self, name: str) -> Mapping[str, Any]:
        resource = self.template.get("Resources", {}).get(name)
        if resource is None:
            raise Unrenderable(f"the template has no resource or parameter {name}")
        return resource

    def ref(self, name: str) -> Any:
        pseudo = {"AWS::AccountId": self.account, "AWS::Region": self.region, "AWS::Partition": "aws"}
        if name in pseudo:
            return pseudo[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.parameters:
            return self.parameters[name]
        declared = self.template.get("Parameters", {}).get(name)
        if declared is not None:
            if "Default" not in declared:
                raise Unrenderable(f"parameter {name} has no default: pass it")
            return str(declared["Default"])
        resource = self.resource(name)
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::S3::Bucket":
            return self.text(props["BucketName"])
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{self.region}:{self.account}:{self.text(props['TopicName'])}"
        if kind == "AWS::SecretsManager::Secret":
            return f"arn:aws:secretsmanager:{self.region}:{self.account}:secret:{self.text(props['Name'])}"
        if kind == "AWS::RDS::DBInstance":
            return self.text(props["DBInstanceIdentifier"])
        if kind == "AWS::SQS::Queue" and "QueueName" in props:
            return f"https://sqs.{self.region}.amazonaws.com/{self.account}/{self.text(props['QueueName'])}"
        raise Unrenderable(f"Ref {name} ({kind}) is not rendered")

    def get_att(self, name: str, attribute: str) -> str:
        key = f"{name}.{attribute}"
        if key in self.attributes:
            return self.attributes[key]
        resource = self.resource(name)
        if attribute == "Arn" and resource["Type"] == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{self.ref(name)}"
        if attribute == "Arn" and resource["Type"] == "AWS::SQS::Queue" and "QueueName" in resource["Properties"]:
            return f"arn:aws:sqs:{self.region}:{self.account}:{self.text(resource['Properties']['QueueName'])}"
        raise Unrenderable(f"GetAtt {key} is not rendered")

    def sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return self.text(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return self.get_att(*name.split(".", 1))
            return self.ref(name)

        return _SUB_VARIABLE.sub(replace, text)

    def render(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            if len(value) == 1:
                ((key, argument),) = value.items()
                if key == "Ref":
                    return self.ref(str(argument))
                if key == "Fn::GetAtt":
                    name, attribute = argument if isinstance(argument, list) else str(argument).split(".", 1)
                    return self.get_att(str(name), str(attribute))
                if key == "Fn::Sub":
                    text, variables = (argument, {}) if isinstance(argument, str) else argument
                    return self.sub(str(text), variables)
                if key == "Fn::Join":
                    separator, parts = argument
                    return str(separator).join(self.text(part) for part in parts)
                if key == "Fn::FindInMap":
                    table, first, second = (self.text(part) for part in argument)
                    return self.render(self.template["Mappings"][table][first][second])
                if key == "Fn::If":
                    condition, then, otherwise = argument
                    chosen = evaluate_condition(self.template, str(condition), self.parameters)
                    return self.render(then if chosen else otherwise)
                if key.startswith("Fn::"):
                    raise Unrenderable(f"{key} is not rendered")
            rendered = {str(key): self.render(item) for key, item in value.items()}
            return {key: item for key, item in rendered.items() if item is not NO_VALUE}
        if isinstance(value, list):
            return [item for item in (self.render(item) for item in value) if item is not NO_VALUE]
        if isinstance(value, str):
            return str(value)  # cfn-lint's string nodes, as plain strings
        return value

    def text(self, value: Any) -> str:
        rendered = self.render(value)
        if isinstance(rendered, bool):
            return "true" if rendered else "false"
        return str(rendered)


def resources_of(template: Mapping[str, Any], kind: str) -> list[tuple[str, Mapping[str, Any]]]:
    return [(name, resource) for name, resource in template.get("Resources", {}).items() if resource["Type"] == kind]


def the_one(template: Mapping[str, Any], kind: str) -> tuple[str, Mapping[str, Any]]:
    found = resources_of(template, kind)
    if len(found) != 1:
        raise Unrenderable(f"the rehearsal expects one {kind}, the template has {[name for name, _ in found]}")
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


# -- "RDS": its master user ---------------------------------------------------------------------------------------


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = 4096) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier of ``password`` (what libpq's PQencryptPasswordConn computes), so that
    the password itself never reaches the server. Passwords here are ASCII, which SASLprep leaves unchanged."""
    salt = secrets.token_bytes(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def master_user_sql(master: MasterUser) -> str:
    """The statements RDS runs to create its master user and initial database, for the server's superuser:
    the owner role as devstack.postgres.provision_owner creates it (LOGIN CREATEROLE CREATEDB, no superuser, the
    password as its SCRAM verifier), owning the database. Each statement stands alone (CREATE DATABASE cannot run
    in a transaction)."""
    for name in (master.login, master.database):
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise DeployError(f"{name!r} is not a plain PostgreSQL identifier")
    verifier = scram_verifier(master.password)
    return (
        f"create role {master.login} login createrole createdb nosuperuser password '{verifier}';\n"
        f"create database {master.database} owner {master.login};\n"
    )


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
