"""Static checks of infra/retail-pipeline.yaml: cfn-lint, the security invariants, and the contract with the deploy
script (parameter, output and secret names).

The template is read with cfn-lint's own loader, which turns the short tags (!Ref, !Sub, !GetAtt...) into their
long forms. Policies are checked after rendering their intrinsic functions into strings that still say what they
point at: a bucket's ARN becomes ``arn:aws:s3:::{DataBucket}``, a parameter ``{EnvironmentName}``. Conditions (which
resources a deploy creates, which ``Fn::If`` branch it takes) are evaluated by mwaa/template.py's functions, the
ones the MWAA rehearsal provisions from; checks that depend on the ``Trigger`` parameter run for each of its values.
The checkers are plain functions, tested first on a small template that breaks every rule, so that a passing run
means something.
"""

from __future__ import annotations

import fnmatch
import inspect
import json
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode, decode_str

from devstack.aws import MAX_RECEIVES
from include.retail.detect.events import Trigger
from include.retail.platform import config
from include.retail.platform.warehouse import LOADER_ROLE, TRANSFORMER_ROLE
from mwaa.template import NO_VALUE, Unrenderable, created_resources, evaluate_condition

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "infra" / "retail-pipeline.yaml"
CFN_LINT = Path(sys.executable).with_name("cfn-lint")

# --- The contract with the mwaa package (infra/README.md, "Contract") ------------------------------------------------
CONTRACT_PARAMETER_DEFAULTS = {
    "EnvironmentName": "retail",
    "AlertEmail": "",
    "DagsS3Path": "dags",
    "RequirementsS3ObjectVersion": "",
    "PluginsS3ObjectVersion": "",
    "StartupScriptS3ObjectVersion": "",
    "DbInstanceClass": "db.t4g.micro",
    "AirflowVersion": "3.3.1",
    "Trigger": Trigger.SENSOR.value,
}
BUNDLE_VERSION_PARAMETERS = ["RequirementsS3ObjectVersion", "PluginsS3ObjectVersion", "StartupScriptS3ObjectVersion"]
CONTRACT_OUTPUTS = {"DataBucketName", "MwaaBucketName", "AlertsTopicArn", "WarehouseEndpoint", "ExecutionRoleArn"}
CONTRACT_BUNDLE_OUTPUTS = {"MwaaEnvironmentName", "AirflowUiUrl"}
CONNECTIONS_PREFIX = "{EnvironmentName}/airflow/connections"
VARIABLES_PREFIX = "{EnvironmentName}/airflow/variables"
CONTRACT_CONNECTION_IDS = {config.WAREHOUSE_CONN_ID, config.WAREHOUSE_TRANSFORM_CONN_ID, config.WAREHOUSE_ADMIN_CONN_ID}
CONTRACT_VARIABLE_KEYS = {config.BUCKET_VARIABLE, config.ALERTS_TOPIC_VARIABLE, config.TRIGGER_VARIABLE}
EVENTS_VARIABLE_KEYS = {config.UPLOADS_QUEUE_VARIABLE}  # Trigger=events only
TRIGGERS = [trigger.value for trigger in Trigger]
SECRETS_BACKEND = "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend"

# The one S3 action that exists only at account level: IAM accepts no resource ARN for it, only "*". MWAA checks
# the account's public access block with it; it reads a setting and opens no bucket or object.
ACCOUNT_LEVEL_S3_ACTIONS = frozenset({"s3:getaccountpublicaccessblock"})

# What the pipeline's code does in S3 (include/retail/ingest/load.py and filing.py, the S3KeySensor), per prefix.
# An upload is filed and removed by its version (filing.move): CopyObject and DeleteObject of a VersionId.
PIPELINE_PREFIXES = ("incoming/", "processed/", "quarantine/", "failed/", "reports/")
INCOMING_BY_VERSION = {"s3:GetObjectVersion", "s3:GetObjectVersionTagging", "s3:DeleteObjectVersion"}
EXPECTED_EXECUTION_ROLE_S3 = {
    "arn:aws:s3:::{DataBucket}": {"s3:ListBucket"},
    "arn:aws:s3:::{DataBucket}/incoming/*": {"s3:GetObject", "s3:GetObjectTagging", "s3:DeleteObject"}
    | INCOMING_BY_VERSION,
    "arn:aws:s3:::{DataBucket}/processed/*": {"s3:PutObject", "s3:PutObjectAcl", "s3:PutObjectTagging"},
    "arn:aws:s3:::{DataBucket}/quarantine/*": {"s3:PutObject", "s3:PutObjectAcl", "s3:PutObjectTagging"},
    "arn:aws:s3:::{DataBucket}/failed/*": {"s3:PutObject", "s3:PutObjectAcl", "s3:PutObjectTagging"},
    "arn:aws:s3:::{DataBucket}/reports/*": {"s3:PutObject", "s3:GetObject"},
    # MWAA itself reads its bundle (the action set of the MWAA execution role documentation).
    "arn:aws:s3:::{MwaaBucket}": {"s3:GetObject*", "s3:GetBucket*", "s3:List*"},
    "arn:aws:s3:::{MwaaBucket}/*": {"s3:GetObject*", "s3:GetBucket*", "s3:List*"},
    "*": {"s3:GetAccountPublicAccessBlock"},
}

# MWAA's Celery queue lives in an account MWAA owns, so its ARN can only be a pattern (the MWAA execution role
# documentation): the one SQS grant on a wildcard ARN allowed. It must not reach the pipeline's own queues.
MWAA_CELERY_QUEUES = "arn:aws:sqs:eu-west-1:*:airflow-celery-*"
CELERY_ACTIONS = {
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
    "sqs:SendMessage",
}
# What the execution role may do on the uploads queue (Trigger=events): the watcher receives and deletes; the
# others operate it. Nothing on the dead-letter queue.
UPLOADS_QUEUE_ACTIONS = {
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
}
UPLOADS_QUEUE_ARN = "arn:aws:sqs:eu-west-1:123456789012:{EnvironmentName}-uploads"

# --- Rendering intrinsic functions into strings -------------------------------------------------------------------
PSEUDO_PARAMETERS = {
    "AWS::Partition": "aws",
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "stack",
    "AWS::URLSuffix": "amazonaws.com",
}
_SUB_VARIABLE = re.compile(r"\$\{([^}]+)\}")


@dataclass
class Renderer:
    """Evaluates Ref, GetAtt, Sub, Join, FindInMap and If into readable strings.

    Parameters render as ``{Name}`` unless given in ``parameters``; resources as what CloudFormation returns for
    them (a bucket's Ref is its name, a topic's or a secret's its ARN, a named queue's its URL); ``attributes``
    overrides GetAtt values. ``Fn::If`` takes the branch its condition selects for ``parameters`` (the others at
    their defaults), and ``AWS::NoValue`` drops the item that holds it.
    """

    template: Mapping[str, Any]
    parameters: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, str] = field(default_factory=dict)

    def resource_type(self, name: str) -> str | None:
        resource = self.template.get("Resources", {}).get(name)
        return resource.get("Type") if resource else None

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        if name in self.parameters:
            return self.parameters[name]
        region, account = PSEUDO_PARAMETERS["AWS::Region"], PSEUDO_PARAMETERS["AWS::AccountId"]
        kind = self.resource_type(name)
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{region}:{account}:{{{name}}}"
        if kind == "AWS::SecretsManager::Secret":
            return f"arn:aws:secretsmanager:{region}:{account}:secret:{{{name}}}"
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{region}.amazonaws.com/{account}/{self.queue_name(name)}"
        return f"{{{name}}}"

    def queue_name(self, name: str) -> str:
        """A queue's QueueName rendered (``{EnvironmentName}-uploads``), or ``{Logical id}`` if it has none."""
        props = self.template.get("Resources", {})[name].get("Properties", {})
        return str(self.render(props["QueueName"])) if "QueueName" in props else f"{{{name}}}"

    def get_att(self, name: str, attribute: str) -> str:
        key = f"{name}.{attribute}"
        if key in self.attributes:
            return self.attributes[key]
        if attribute == "Arn" and self.resource_type(name) == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{{{name}}}"
        if attribute == "Arn" and self.resource_type(name) == "AWS::SQS::Queue":
            region, account = PSEUDO_PARAMETERS["AWS::Region"], PSEUDO_PARAMETERS["AWS::AccountId"]
            return f"arn:aws:sqs:{region}:{account}:{self.queue_name(name)}"
        return f"{{{key}}}"

    def sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self.render(variables[name]))
            if "." in name and name not in PSEUDO_PARAMETERS:
                resource, attribute = name.split(".", 1)
                return self.get_att(resource, attribute)
            return self.ref(name)

        return _SUB_VARIABLE.sub(replace, text)

    def render(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            if len(value) == 1:
                (key, argument), *_ = value.items()
                if key == "Ref":
                    return self.ref(argument)
                if key == "Fn::GetAtt":
                    name, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                    return self.get_att(name, attribute)
                if key == "Fn::Sub":
                    text, variables = (argument, {}) if isinstance(argument, str) else argument
                    return self.sub(text, variables)
                if key == "Fn::Join":
                    separator, parts = argument
                    return separator.join(str(self.render(part)) for part in parts)
                if key == "Fn::FindInMap":
                    table, first, second = (self.render(part) for part in argument)
                    return self.template["Mappings"][table][first][second]
                if key == "Fn::If":
                    condition, then, otherwise = argument
                    return self.render(
                        then if evaluate_condition(self.template, condition, self.parameters) else otherwise
                    )
                if key.startswith("Fn::"):
                    raise Unrenderable(f"{key} is not rendered")
            rendered = {key: self.render(item) for key, item in value.items()}
            return {key: item for key, item in rendered.items() if item is not NO_VALUE}
        if isinstance(value, list):
            return [item for item in (self.render(item) for item in value) if item is not NO_VALUE]
        return value


# --- Checkers -----------------------------------------------------------------------------------------------------
def is_true(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def resources_of(template: Mapping[str, Any], *types: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for name, resource in template.get("Resources", {}).items():
        if resource.get("Type") in types:
            yield name, resource.get("Properties", {})


@dataclass
class Statement:
    where: str
    owner: str  # the logical id of the role, policy or resource policy
    resource_policy: bool
    body: Mapping[str, Any]

    @property
    def effect(self) -> str:
        return self.body.get("Effect", "")

    @property
    def actions(self) -> list[str]:
        return [str(action) for action in as_list(self.body.get("Action"))]

    @property
    def resources(self) -> list[str]:
        return [str(resource) for resource in as_list(self.body.get("Resource"))]


def policy_statements(template: Mapping[str, Any], parameters: Mapping[str, str] | None = None) -> list[Statement]:
    """Every permission statement of the identity and resource policies a deploy with ``parameters`` (the others
    at their defaults) creates, rendered."""
    renderer = Renderer(template, parameters=parameters or {})
    template = {**template, "Resources": created_resources(template, parameters)}
    documents: list[tuple[str, str, bool, Any]] = []
    for name, props in resources_of(template, "AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group"):
        for policy in props.get("Policies", []):
            documents.append((f"{name}/{policy.get('PolicyName')}", name, False, policy.get("PolicyDocument")))
    for name, props in resources_of(template, "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        documents.append((name, name, False, props.get("PolicyDocument")))
    resource_policy_types = ("AWS::S3::BucketPolicy", "AWS::SNS::TopicPolicy", "AWS::SQS::QueuePolicy")
    for name, props in resources_of(template, *resource_policy_types):
        documents.append((name, name, True, props.get("PolicyDocument")))
    statements = []
    for where, owner, resource_policy, document in documents:
        for index, body in enumerate(as_list(renderer.render(document or {}).get("Statement"))):
            label = f"{where}/{body.get('Sid', index)}"
            statements.append(Statement(label, owner, resource_policy, body))
    return statements


def _service(action: str) -> str:
    return action.split(":", 1)[0].lower() if ":" in action else action


def unscoped_arn(resource: str) -> bool:
    """An S3 ARN whose bucket, or an SNS or SQS ARN any part of which, is a wildcard (arn:aws:s3:::*,
    arn:aws:sns:*, arn:aws:sqs:eu-west-1:*:name...)."""
    parts = resource.split(":", 5)
    if len(parts) < 3 or parts[0] != "arn":
        return False
    service = parts[2]
    if service not in ("s3", "sns", "sqs"):
        return False
    if len(parts) < 6:
        return True
    if service == "s3":
        bucket = parts[5].split("/", 1)[0]
        return not bucket or any(char in bucket for char in "*?")
    return any(char in part for part in parts[3:] for char in "*?") or not parts[5]


def wildcard_grant_problems(template: Mapping[str, Any], parameters: Mapping[str, str] | None = None) -> list[str]:
    """Allow statements that grant S3, SNS or SQS too widely: on "*", on a wildcard ARN (but MWAA's Celery queues),
    or as s3:* / sns:* / sqs:* / *."""
    problems = []
    for statement in policy_statements(template, parameters):
        if statement.effect != "Allow":
            continue
        body, where = statement.body, statement.where
        if "NotAction" in body:
            problems.append(f"{where}: Allow with NotAction grants everything else")
        if statement.resource_policy and body.get("Principal") in ("*", {"AWS": "*"}):
            problems.append(f"{where}: resource policy allows any principal")
        lowered = {action.lower() for action in statement.actions}
        if "*" in lowered:
            problems.append(f"{where}: grants every action")
        problems += [f"{where}: grants {action}" for action in sorted(lowered & {"s3:*", "sns:*", "sqs:*"})]
        if not {_service(action) for action in lowered} & {"s3", "sns", "sqs", "*"}:
            continue
        if "NotResource" in body:
            problems.append(f"{where}: S3/SNS/SQS actions with NotResource")
        for resource in statement.resources:
            if resource == "*" and not lowered <= ACCOUNT_LEVEL_S3_ACTIONS:
                problems.append(f"{where}: {sorted(statement.actions)} on '*'")
            elif unscoped_arn(resource) and resource != MWAA_CELERY_QUEUES:
                problems.append(f"{where}: {sorted(statement.actions)} on wildcard ARN {resource}")
    return problems


def s3_grants(
    template: Mapping[str, Any], owner: str, parameters: Mapping[str, str] | None = None
) -> dict[str, set[str]]:
    """The S3 actions ``owner``'s Allow statements grant, per resource, for a deploy with ``parameters``."""
    grants: dict[str, set[str]] = {}
    for statement in policy_statements(template, parameters):
        if statement.owner != owner or statement.effect != "Allow" or statement.resource_policy:
            continue
        actions = {action for action in statement.actions if _service(action) == "s3"}
        for resource in statement.resources if actions else []:
            grants.setdefault(resource, set()).update(actions)
    return grants


def s3_scope_problems(
    template: Mapping[str, Any],
    owner: str,
    data_bucket: str,
    prefixes: tuple[str, ...],
    read_only: tuple[str, ...],
    parameters: Mapping[str, str] | None = None,
) -> list[str]:
    """S3 grants of ``owner`` outside the data bucket's ``prefixes`` (listing included) and read-only buckets."""
    data_arn = f"arn:aws:s3:::{{{data_bucket}}}"
    read_only_arns = {f"arn:aws:s3:::{{{bucket}}}" for bucket in read_only}
    allowed_objects = {f"{data_arn}/{prefix}*" for prefix in prefixes}
    problems = []
    for statement in policy_statements(template, parameters):
        if statement.owner != owner or statement.effect != "Allow":
            continue
        actions = {action for action in statement.actions if _service(action) == "s3"}
        for resource in statement.resources if actions else []:
            bucket_arn = resource.split("/", 1)[0]
            if resource == "*" and actions <= {"s3:GetAccountPublicAccessBlock"}:
                continue
            if bucket_arn in read_only_arns:
                written = {action for action in actions if not re.match(r"s3:(Get|List)", action)}
                if written:
                    problems.append(f"{statement.where}: {sorted(written)} on the read-only bucket {resource}")
            elif resource in allowed_objects:
                continue
            elif resource == data_arn:
                problems += _listing_problems(statement, actions, prefixes)
            else:
                problems.append(f"{statement.where}: {sorted(actions)} on {resource}")
    return problems


def _listing_problems(statement: Statement, actions: set[str], prefixes: tuple[str, ...]) -> list[str]:
    """On the bucket itself only s3:ListBucket, and only under the pipeline's prefixes."""
    problems = [f"{statement.where}: {action} on the data bucket" for action in sorted(actions - {"s3:ListBucket"})]
    condition = statement.body.get("Condition", {})
    listed = as_list(condition.get("StringLike", {}).get("s3:prefix")) + as_list(
        condition.get("StringEquals", {}).get("s3:prefix")
    )
    if not listed:
        problems.append(f"{statement.where}: s3:ListBucket without an s3:prefix condition")
    problems += [
        f"{statement.where}: lists prefix {pattern!r}"
        for pattern in listed
        if not any(str(pattern).startswith(prefix) for prefix in prefixes)
    ]
    return problems


def rds_problems(template: Mapping[str, Any]) -> list[str]:
    problems = []
    for name, props in resources_of(template, "AWS::RDS::DBInstance"):
        if is_true(props.get("PubliclyAccessible", False)) or "PubliclyAccessible" not in props:
            problems.append(f"{name}: PubliclyAccessible must be set to false")
        if "DBClusterIdentifier" not in props and not is_true(props.get("StorageEncrypted")):
            problems.append(f"{name}: storage is not encrypted")
    for name, props in resources_of(template, "AWS::RDS::DBCluster"):
        if not is_true(props.get("StorageEncrypted")):
            problems.append(f"{name}: storage is not encrypted")
    return problems


PUBLIC_ACCESS_BLOCK_KEYS = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")


def bucket_problems(template: Mapping[str, Any]) -> list[str]:
    problems = []
    for name, props in resources_of(template, "AWS::S3::Bucket"):
        block = props.get("PublicAccessBlockConfiguration", {})
        problems += [f"{name}: {key} is not true" for key in PUBLIC_ACCESS_BLOCK_KEYS if not is_true(block.get(key))]
        rules = props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        algorithms = {rule.get("ServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for rule in rules}
        if not algorithms & {"AES256", "aws:kms", "aws:kms:dsse"}:
            problems.append(f"{name}: no default encryption")
        if props.get("VersioningConfiguration", {}).get("Status") != "Enabled":
            problems.append(f"{name}: versioning is not enabled")
    return problems


def insecure_transport_problems(template: Mapping[str, Any]) -> list[str]:
    """Buckets whose policy does not deny every request made without TLS."""
    denied: set[str] = set()
    for statement in policy_statements(template):
        condition = statement.body.get("Condition", {}).get("Bool", {})
        if (
            statement.resource_policy
            and statement.effect == "Deny"
            and statement.body.get("Principal") == "*"
            and "s3:*" in statement.actions
            and str(condition.get("aws:SecureTransport")).lower() == "false"
        ):
            denied.update(statement.resources)
    return [
        f"{name}: no policy denies requests without TLS"
        for name, _ in resources_of(template, "AWS::S3::Bucket")
        if not {f"arn:aws:s3:::{{{name}}}", f"arn:aws:s3:::{{{name}}}/*"} <= denied
    ]


def sqs_grants(
    template: Mapping[str, Any], owner: str, parameters: Mapping[str, str] | None = None
) -> dict[str, set[str]]:
    """The SQS actions ``owner``'s Allow statements grant, per resource, for a deploy with ``parameters``."""
    grants: dict[str, set[str]] = {}
    for statement in policy_statements(template, parameters):
        if statement.owner != owner or statement.effect != "Allow" or statement.resource_policy:
            continue
        actions = {action for action in statement.actions if _service(action) == "sqs"}
        for resource in statement.resources if actions else []:
            grants.setdefault(resource, set()).update(actions)
    return grants


def _condition_values(body: Mapping[str, Any], key: str, operators: tuple[str, ...]) -> list[str]:
    """The values a statement's condition requires of ``key`` under the given operators."""
    return [
        str(value)
        for operator in operators
        for name, values in body.get("Condition", {}).get(operator, {}).items()
        if name.lower() == key.lower()
        for value in as_list(values)
    ]


def queue_policy_problems(template: Mapping[str, Any], parameters: Mapping[str, str] | None = None) -> list[str]:
    """Queue policy grants other than S3 sending to a queue of this template on behalf of a bucket of this
    template in this account (aws:SourceArn and aws:SourceAccount: no confused deputy)."""
    renderer = Renderer(template, parameters=parameters or {})
    created = created_resources(template, parameters)
    buckets = {
        f"arn:aws:s3:::{renderer.render(resource['Properties']['BucketName'])}"
        for resource in created.values()
        if resource["Type"] == "AWS::S3::Bucket" and "BucketName" in resource.get("Properties", {})
    }
    queues = {
        renderer.get_att(name, "Arn") for name, resource in created.items() if resource["Type"] == "AWS::SQS::Queue"
    }
    account = PSEUDO_PARAMETERS["AWS::AccountId"]
    problems = []
    for statement in policy_statements(template, parameters):
        if statement.effect != "Allow" or created[statement.owner]["Type"] != "AWS::SQS::QueuePolicy":
            continue
        body, where = statement.body, statement.where
        if body.get("Principal") != {"Service": "s3.amazonaws.com"}:
            problems.append(f"{where}: principal {body.get('Principal')} is not S3")
        if statement.actions != ["sqs:SendMessage"]:
            problems.append(f"{where}: grants {sorted(statement.actions)}, S3 only sends")
        if not statement.resources or set(statement.resources) - queues:
            problems.append(f"{where}: {statement.resources} are not queues of this template")
        source_arns = _condition_values(body, "aws:SourceArn", ("ArnEquals", "ArnLike", "StringEquals", "StringLike"))
        if not source_arns or set(source_arns) - buckets:
            problems.append(f"{where}: aws:SourceArn {source_arns} is not a bucket of this template")
        if _condition_values(body, "aws:SourceAccount", ("StringEquals",)) != [account]:
            problems.append(f"{where}: aws:SourceAccount is not required to be this account")
    return problems


# --- Fixtures -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def template() -> Mapping[str, Any]:
    loaded, errors = decode(str(TEMPLATE_PATH))
    assert not errors, errors
    return loaded


@pytest.fixture(scope="module")
def resources(template: Mapping[str, Any]) -> Mapping[str, Any]:
    return template["Resources"]


def the_one(template: Mapping[str, Any], kind: str) -> tuple[str, Mapping[str, Any]]:
    found = list(resources_of(template, kind))
    assert len(found) == 1, f"expected one {kind}, found {[name for name, _ in found]}"
    return found[0]


def load_yaml(text: str) -> Mapping[str, Any]:
    loaded, errors = decode_str(text)
    assert not errors, errors
    return loaded


# --- The checkers fail on a bad template --------------------------------------------------------------------------
BAD_TEMPLATE = """
Resources:
  Db:
    Type: AWS::RDS::DBInstance
    Properties: {Engine: postgres, PubliclyAccessible: true}
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      PublicAccessBlockConfiguration: {BlockPublicAcls: true, BlockPublicPolicy: true}
  Topic:
    Type: AWS::SNS::Topic
  Role:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument: {}
      Policies:
        - PolicyName: too-much
          PolicyDocument:
            Statement:
              - {Sid: S3Everything, Effect: Allow, Action: "s3:*", Resource: "*"}
              - {Sid: AnyTopic, Effect: Allow, Action: sns:Publish, Resource: "arn:aws:sns:*"}
              - {Sid: AnyBucket, Effect: Allow, Action: s3:GetObject, Resource: "arn:aws:s3:::*/incoming/*"}
              - {Sid: WholeBucket, Effect: Allow, Action: s3:GetObject, Resource: !Sub "${Bucket.Arn}/*"}
              - {Sid: ListAll, Effect: Allow, Action: s3:ListBucket, Resource: !GetAtt Bucket.Arn}
              - {Sid: Sneaky, Effect: Allow, Action: [s3:GetAccountPublicAccessBlock, s3:GetObject], Resource: "*"}
              - {Sid: AllButIam, Effect: Allow, NotAction: "iam:*", Resource: "*"}
              - {Sid: Fine, Effect: Allow, Action: sns:Publish, Resource: !Ref Topic}
  OpenPolicy:
    Type: AWS::S3::BucketPolicy
    Properties:
      Bucket: !Ref Bucket
      PolicyDocument:
        Statement:
          - {Sid: Public, Effect: Allow, Principal: "*", Action: s3:GetObject, Resource: !Sub "${Bucket.Arn}/*"}
"""


@pytest.fixture(scope="module")
def bad_template() -> Mapping[str, Any]:
    return load_yaml(BAD_TEMPLATE)


def test_rds_checker_fails_a_public_unencrypted_instance(bad_template: Mapping[str, Any]) -> None:
    assert rds_problems(bad_template) == [
        "Db: PubliclyAccessible must be set to false",
        "Db: storage is not encrypted",
    ]


def test_bucket_checker_fails_a_bucket_without_the_basics(bad_template: Mapping[str, Any]) -> None:
    assert bucket_problems(bad_template) == [
        "Bucket: IgnorePublicAcls is not true",
        "Bucket: RestrictPublicBuckets is not true",
        "Bucket: no default encryption",
        "Bucket: versioning is not enabled",
    ]
    assert insecure_transport_problems(bad_template) == ["Bucket: no policy denies requests without TLS"]


def test_wildcard_checker_fails_every_wide_grant(bad_template: Mapping[str, Any]) -> None:
    problems = wildcard_grant_problems(bad_template)
    assert problems == [
        "Role/too-much/S3Everything: grants s3:*",
        "Role/too-much/S3Everything: ['s3:*'] on '*'",
        "Role/too-much/AnyTopic: ['sns:Publish'] on wildcard ARN arn:aws:sns:*",
        "Role/too-much/AnyBucket: ['s3:GetObject'] on wildcard ARN arn:aws:s3:::*/incoming/*",
        "Role/too-much/Sneaky: ['s3:GetAccountPublicAccessBlock', 's3:GetObject'] on '*'",
        "Role/too-much/AllButIam: Allow with NotAction grants everything else",
        "OpenPolicy/Public: resource policy allows any principal",
    ]


def test_scope_checker_fails_grants_outside_the_pipeline_prefixes(bad_template: Mapping[str, Any]) -> None:
    problems = s3_scope_problems(bad_template, "Role", "Bucket", PIPELINE_PREFIXES, read_only=())
    assert problems == [
        "Role/too-much/S3Everything: ['s3:*'] on *",
        "Role/too-much/AnyBucket: ['s3:GetObject'] on arn:aws:s3:::*/incoming/*",
        "Role/too-much/WholeBucket: ['s3:GetObject'] on arn:aws:s3:::{Bucket}/*",
        "Role/too-much/ListAll: s3:ListBucket without an s3:prefix condition",
        "Role/too-much/Sneaky: ['s3:GetAccountPublicAccessBlock', 's3:GetObject'] on *",
    ]


def test_scope_checker_fails_writes_to_a_read_only_bucket() -> None:
    role = load_yaml(
        """
Resources:
  Bundle: {Type: AWS::S3::Bucket}
  Role:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyName: p
          PolicyDocument:
            Statement:
              - {Sid: Read, Effect: Allow, Action: [s3:GetObject*, s3:List*], Resource: !Sub "${Bundle.Arn}/*"}
              - {Sid: Write, Effect: Allow, Action: [s3:GetObject, s3:PutObject], Resource: !Sub "${Bundle.Arn}/*"}
"""
    )
    assert s3_scope_problems(role, "Role", "Data", PIPELINE_PREFIXES, read_only=("Bundle",)) == [
        "Role/p/Write: ['s3:PutObject'] on the read-only bucket arn:aws:s3:::{Bundle}/*"
    ]


BAD_QUEUE_TEMPLATE = """
Resources:
  Bucket:
    Type: AWS::S3::Bucket
    Properties: {BucketName: landing}
  Queue:
    Type: AWS::SQS::Queue
    Properties: {QueueName: uploads}
  Role:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument: {}
      Policies:
        - PolicyName: queues
          PolicyDocument:
            Statement:
              - {Sid: SqsEverything, Effect: Allow, Action: "sqs:*", Resource: !GetAtt Queue.Arn}
              - {Sid: AnyQueue, Effect: Allow, Action: sqs:ReceiveMessage, Resource: "*"}
              - {Sid: AnyAccount, Effect: Allow, Action: sqs:DeleteMessage, Resource: "arn:aws:sqs:eu-west-1:*:uploads"}
              - {Sid: Fine, Effect: Allow, Action: sqs:ReceiveMessage, Resource: !GetAtt Queue.Arn}
  QueuePolicy:
    Type: AWS::SQS::QueuePolicy
    Properties:
      Queues: [!Ref Queue]
      PolicyDocument:
        Statement:
          - {Sid: Anyone, Effect: Allow, Principal: "*", Action: sqs:SendMessage, Resource: !GetAtt Queue.Arn}
          - Sid: AnyBucket
            Effect: Allow
            Principal: {Service: s3.amazonaws.com}
            Action: [sqs:SendMessage, sqs:ReceiveMessage]
            Resource: !GetAtt Queue.Arn
            Condition: {ArnLike: {aws:SourceArn: "arn:aws:s3:::*"}, StringEquals: {aws:SourceAccount: "123456789012"}}
          - Sid: AnyQueueAnyAccount
            Effect: Allow
            Principal: {Service: s3.amazonaws.com}
            Action: sqs:SendMessage
            Resource: "arn:aws:sqs:*:*:*"
            Condition: {ArnEquals: {aws:SourceArn: "arn:aws:s3:::landing"}}
          - Sid: Fine
            Effect: Allow
            Principal: {Service: s3.amazonaws.com}
            Action: sqs:SendMessage
            Resource: !GetAtt Queue.Arn
            Condition:
              ArnEquals: {aws:SourceArn: "arn:aws:s3:::landing"}
              StringEquals: {aws:SourceAccount: !Ref AWS::AccountId}
"""


def test_wildcard_checker_fails_every_wide_queue_grant() -> None:
    assert wildcard_grant_problems(load_yaml(BAD_QUEUE_TEMPLATE)) == [
        "Role/queues/SqsEverything: grants sqs:*",
        "Role/queues/AnyQueue: ['sqs:ReceiveMessage'] on '*'",
        "Role/queues/AnyAccount: ['sqs:DeleteMessage'] on wildcard ARN arn:aws:sqs:eu-west-1:*:uploads",
        "QueuePolicy/Anyone: resource policy allows any principal",
        "QueuePolicy/AnyQueueAnyAccount: ['sqs:SendMessage'] on wildcard ARN arn:aws:sqs:*:*:*",
    ]


def test_queue_policy_checker_fails_all_but_this_buckets_s3() -> None:
    assert queue_policy_problems(load_yaml(BAD_QUEUE_TEMPLATE)) == [
        "QueuePolicy/Anyone: principal * is not S3",
        "QueuePolicy/Anyone: aws:SourceArn [] is not a bucket of this template",
        "QueuePolicy/Anyone: aws:SourceAccount is not required to be this account",
        "QueuePolicy/AnyBucket: grants ['sqs:ReceiveMessage', 'sqs:SendMessage'], S3 only sends",
        "QueuePolicy/AnyBucket: aws:SourceArn ['arn:aws:s3:::*'] is not a bucket of this template",
        "QueuePolicy/AnyQueueAnyAccount: ['arn:aws:sqs:*:*:*'] are not queues of this template",
        "QueuePolicy/AnyQueueAnyAccount: aws:SourceAccount is not required to be this account",
    ]


def test_renderer_resolves_what_policies_use() -> None:
    tpl = load_yaml(
        "Parameters: {Env: {Type: String}}\nResources:\n  B: {Type: AWS::S3::Bucket}\n  T: {Type: AWS::SNS::Topic}\n"
    )
    renderer = Renderer(tpl)
    assert renderer.render({"Fn::Sub": "${B.Arn}/x/${Env}-${!Literal}"}) == "arn:aws:s3:::{B}/x/{Env}-${Literal}"
    assert renderer.render({"Ref": "T"}) == "arn:aws:sns:eu-west-1:123456789012:{T}"
    assert renderer.render({"Fn::Join": ["/", [{"Ref": "B"}, "k"]]}) == "{B}/k"
    with pytest.raises(Unrenderable):
        renderer.render({"Fn::If": ["C", "a", "b"]})  # no such condition


def test_renderer_takes_the_branch_the_parameters_choose() -> None:
    tpl = load_yaml(
        "Parameters: {Mode: {Type: String, Default: a}}\nConditions: {IsB: !Equals [!Ref Mode, b]}\n"
        "Resources:\n  Q: {Type: AWS::SQS::Queue, Condition: IsB, Properties: {QueueName: !Sub '${Mode}-q'}}\n"
    )
    value = {"Items": ["x", {"Fn::If": ["IsB", {"Fn::GetAtt": ["Q", "Arn"]}, {"Ref": "AWS::NoValue"}]}]}
    assert Renderer(tpl).render(value) == {"Items": ["x"]}
    assert Renderer(tpl, parameters={"Mode": "b"}).render(value) == {
        "Items": ["x", "arn:aws:sqs:eu-west-1:123456789012:b-q"]
    }
    assert (
        Renderer(tpl, parameters={"Mode": "b"}).render({"Ref": "Q"})
        == "https://sqs.eu-west-1.amazonaws.com/123456789012/b-q"
    )
    assert Renderer(tpl).render({"K": {"Fn::If": ["IsB", "y", {"Ref": "AWS::NoValue"}]}}) == {}
    assert set(created_resources(tpl, {})) == set()
    assert set(created_resources(tpl, {"Mode": "b"})) == {"Q"}


def test_cfn_lint_catches_a_broken_template(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "Resources:\n  Db:\n    Type: AWS::RDS::DBInstance\n"
        "    Properties: {Engine: postgres, EngineVersion: '9.9', DBInstanceClass: db.t4g.micro, Publicly: false}\n"
    )
    result = subprocess.run([str(CFN_LINT), "--", str(broken)], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "Publicly" in result.stdout  # an unknown property
    assert "9.9" in result.stdout  # an engine version RDS does not have


# --- The template -------------------------------------------------------------------------------------------------
def test_cfn_lint_passes_including_informational_checks() -> None:
    result = subprocess.run(
        [str(CFN_LINT), "--include-checks", "I", "--", str(TEMPLATE_PATH)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rds_is_private_and_encrypted(template: Mapping[str, Any]) -> None:
    assert list(resources_of(template, "AWS::RDS::DBInstance")), "no RDS instance to check"
    assert rds_problems(template) == []


def test_buckets_are_private_encrypted_versioned_and_tls_only(template: Mapping[str, Any]) -> None:
    assert len(list(resources_of(template, "AWS::S3::Bucket"))) == 2
    assert bucket_problems(template) == []
    assert insecure_transport_problems(template) == []


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_no_wildcard_grants_on_s3_sns_or_sqs(template: Mapping[str, Any], trigger: str) -> None:
    assert policy_statements(template, {"Trigger": trigger}), "no policy statements found"
    assert wildcard_grant_problems(template, {"Trigger": trigger}) == []


def test_no_managed_policies_widen_the_role(template: Mapping[str, Any]) -> None:
    for name, props in resources_of(template, "AWS::IAM::Role"):
        assert not props.get("ManagedPolicyArns"), f"{name} attaches managed policies"
    assert not list(resources_of(template, "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"))


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_execution_role_s3_is_limited_to_the_pipeline_prefixes(template: Mapping[str, Any], trigger: str) -> None:
    role, _ = the_one(template, "AWS::IAM::Role")
    parameters = {"Trigger": trigger}
    assert s3_scope_problems(template, role, "DataBucket", PIPELINE_PREFIXES, ("MwaaBucket",), parameters) == []
    assert s3_grants(template, role, parameters) == EXPECTED_EXECUTION_ROLE_S3


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_execution_role_removes_object_versions_under_incoming_only(template: Mapping[str, Any], trigger: str) -> None:
    """The move deletes the version it loaded (filing.move), so a newer upload of the key stays; the versions kept
    under processed/, quarantine/ and failed/ (the archive's history) are beyond the role's reach."""
    role, _ = the_one(template, "AWS::IAM::Role")
    grants = s3_grants(template, role, {"Trigger": trigger})
    by_version = {resource: actions & INCOMING_BY_VERSION for resource, actions in grants.items()}
    assert {resource: actions for resource, actions in by_version.items() if actions} == {
        "arn:aws:s3:::{DataBucket}/incoming/*": INCOMING_BY_VERSION
    }


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_execution_role_acts_on_the_uploads_queue_only(template: Mapping[str, Any], trigger: str) -> None:
    """With events, the role may receive and delete on the uploads queue and on no other queue of the
    pipeline; MWAA's own Celery grant (a pattern) reaches neither the uploads queue nor its dead-letter queue."""
    role, _ = the_one(template, "AWS::IAM::Role")
    grants = sqs_grants(template, role, {"Trigger": trigger})
    expected = {MWAA_CELERY_QUEUES: CELERY_ACTIONS}
    if trigger == Trigger.EVENTS:
        expected[UPLOADS_QUEUE_ARN] = UPLOADS_QUEUE_ACTIONS
    assert grants == expected
    for environment in ("retail", "airflow", "e" * 20):
        ours = [UPLOADS_QUEUE_ARN, UPLOADS_QUEUE_ARN + "-dlq"]
        ours = [arn.replace("{EnvironmentName}", environment) for arn in ours]
        for pattern in set(grants) - {UPLOADS_QUEUE_ARN}:
            assert not [arn for arn in ours if fnmatch.fnmatchcase(arn, pattern)], (pattern, environment)


def test_execution_role_publishes_to_the_one_topic_and_reads_its_secrets_only(
    template: Mapping[str, Any], resources: Mapping[str, Any]
) -> None:
    role, _ = the_one(template, "AWS::IAM::Role")
    granted: dict[str, set[str]] = {}
    for statement in policy_statements(template):
        if statement.owner == role and statement.effect == "Allow":
            for action in statement.actions:
                if _service(action) in ("sns", "secretsmanager"):
                    granted.setdefault(action, set()).update(statement.resources)
    secrets = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:{EnvironmentName}/airflow/*"
    assert granted == {
        "sns:Publish": {"arn:aws:sns:eu-west-1:123456789012:{AlertsTopic}"},
        "secretsmanager:GetSecretValue": {secrets},
        "secretsmanager:DescribeSecret": {secrets},
    }
    assert resources["AlertsTopic"]["Type"] == "AWS::SNS::Topic"


def test_the_queue_policy_admits_only_the_data_bucket(
    template: Mapping[str, Any], resources: Mapping[str, Any]
) -> None:
    events = {"Trigger": Trigger.EVENTS.value}
    assert queue_policy_problems(template, events) == []
    renderer = Renderer(template, parameters=events)
    statements = [
        s for s in policy_statements(template, events) if resources[s.owner]["Type"] == "AWS::SQS::QueuePolicy"
    ]
    (statement,) = statements
    data_bucket = renderer.render(resources["DataBucket"]["Properties"]["BucketName"])
    assert statement.effect == "Allow"
    assert statement.resources == [UPLOADS_QUEUE_ARN]
    assert statement.body["Condition"]["ArnEquals"] == {"aws:SourceArn": f"arn:aws:s3:::{data_bucket}"}
    assert statement.body["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}
    (policy,) = [props for _, props in resources_of(template, "AWS::SQS::QueuePolicy")]
    assert renderer.render(policy["Queues"]) == [renderer.render({"Ref": "UploadsQueue"})], "the DLQ needs no policy"
    # The bucket's ARN is built from its name, not taken from the bucket: the bucket waits for this policy.
    assert "DataBucket" not in referenced(policy)
    assert "UploadsQueuePolicy" in referenced(resources["DataBucket"])


def referenced(node: Any) -> set[str]:
    """The names a template fragment refers to: Ref, Fn::GetAtt, and the ${Name} or ${Name.Attribute} of Fn::Sub."""
    if isinstance(node, list):
        return set().union(*map(referenced, node))
    if not isinstance(node, Mapping):
        return set()
    names = set().union(*map(referenced, node.values()))
    if isinstance(node.get("Ref"), str):
        names.add(node["Ref"])
    if "Fn::GetAtt" in node:
        target = node["Fn::GetAtt"]
        names.add(target[0] if isinstance(target, list) else str(target).split(".", 1)[0])
    if "Fn::Sub" in node:
        text = node["Fn::Sub"] if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"][0]
        names |= {name.split(".", 1)[0] for name in _SUB_VARIABLE.findall(text) if not name.startswith("!")}
    return names


def test_execution_role_trusts_mwaa_for_this_environment_only(resources: Mapping[str, Any]) -> None:
    trust = Renderer({"Resources": resources}).render(
        resources["MwaaExecutionRole"]["Properties"]["AssumeRolePolicyDocument"]
    )
    (statement,) = trust["Statement"]
    assert set(statement["Principal"]["Service"]) == {"airflow.amazonaws.com", "airflow-env.amazonaws.com"}
    assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == "123456789012"
    assert statement["Condition"]["ArnLike"]["aws:SourceArn"].endswith(":environment/{EnvironmentName}-airflow")


def test_the_topic_is_encrypted_and_the_email_subscription_optional(
    template: Mapping[str, Any], resources: Mapping[str, Any]
) -> None:
    assert resources["AlertsTopic"]["Properties"]["KmsMasterKeyId"]
    subscription = resources["AlertsEmailSubscription"]
    assert subscription["Condition"] == "HasAlertEmail"
    assert subscription["Properties"]["Protocol"] == "email"
    assert not evaluate_condition(template, "HasAlertEmail", {})
    assert evaluate_condition(template, "HasAlertEmail", {"AlertEmail": "ops@example.com"})


def test_warehouse_is_reachable_from_mwaa_only(resources: Mapping[str, Any]) -> None:
    groups = [group["Fn::GetAtt"][0] for group in resources["Warehouse"]["Properties"]["VPCSecurityGroups"]]
    assert groups == ["WarehouseSecurityGroup"]
    rules = list(resources["WarehouseSecurityGroup"]["Properties"]["SecurityGroupIngress"])
    rules += [
        resource["Properties"]
        for resource in resources.values()
        if resource["Type"] == "AWS::EC2::SecurityGroupIngress"
        and resource["Properties"]["GroupId"] == {"Ref": "WarehouseSecurityGroup"}
    ]
    assert rules
    for rule in rules:
        assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 5432, 5432)
        assert rule["SourceSecurityGroupId"] == {"Ref": "MwaaSecurityGroup"}
        assert not {"CidrIp", "CidrIpv6", "SourcePrefixListId"} & set(rule)


def test_mwaa_security_group_admits_itself(resources: Mapping[str, Any]) -> None:
    assert any(
        resource["Type"] == "AWS::EC2::SecurityGroupIngress"
        and resource["Properties"]["GroupId"] == {"Ref": "MwaaSecurityGroup"}
        and resource["Properties"]["SourceSecurityGroupId"] == {"Ref": "MwaaSecurityGroup"}
        and str(resource["Properties"]["IpProtocol"]) == "-1"
        for resource in resources.values()
    )


def _default_route_target(resources: Mapping[str, Any], subnet: str) -> set[str]:
    """How a subnet reaches 0.0.0.0/0: the keys (GatewayId, NatGatewayId) of its route table's default route."""
    associations = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::EC2::SubnetRouteTableAssociation"]
    tables = [props["RouteTableId"] for props in associations if props["SubnetId"] == {"Ref": subnet}]
    assert len(tables) == 1, f"{subnet} has route tables {tables}"
    routes = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::EC2::Route"]
    targets = {
        key
        for route in routes
        if route["RouteTableId"] == tables[0] and route.get("DestinationCidrBlock") == "0.0.0.0/0"
        for key in route
    }
    return targets - {"RouteTableId", "DestinationCidrBlock"}


def test_mwaa_and_rds_use_two_private_subnets_in_two_zones(resources: Mapping[str, Any]) -> None:
    mwaa_subnets = [
        ref["Ref"] for ref in resources["MwaaEnvironment"]["Properties"]["NetworkConfiguration"]["SubnetIds"]
    ]
    rds_subnets = [ref["Ref"] for ref in resources["WarehouseSubnetGroup"]["Properties"]["SubnetIds"]]
    assert len(mwaa_subnets) == 2
    assert set(mwaa_subnets) == set(rds_subnets)
    zones = [json.dumps(resources[subnet]["Properties"]["AvailabilityZone"]) for subnet in mwaa_subnets]
    assert len(set(zones)) == 2, zones
    for subnet in mwaa_subnets:
        assert not is_true(resources[subnet]["Properties"].get("MapPublicIpOnLaunch", False))
        assert _default_route_target(resources, subnet) == {"NatGatewayId"}, f"{subnet} must reach out via NAT"
    for subnet in ("PublicSubnetA", "PublicSubnetB"):
        assert _default_route_target(resources, subnet) == {"GatewayId"}


def test_data_lifecycle_moves_processed_to_a_colder_class(resources: Mapping[str, Any]) -> None:
    rules = resources["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    processed = [rule for rule in rules if rule.get("Prefix") == "processed/" and rule["Status"] == "Enabled"]
    assert processed
    assert processed[0]["Transitions"][0]["StorageClass"] in {"STANDARD_IA", "GLACIER_IR"}
    assert any("NoncurrentVersionExpiration" in rule for rule in rules)


def test_warehouse_keeps_a_snapshot_and_takes_its_password_from_secrets_manager(resources: Mapping[str, Any]) -> None:
    warehouse = resources["Warehouse"]
    assert warehouse["DeletionPolicy"] == "Snapshot"
    props = Renderer({"Resources": resources}).render(warehouse["Properties"])
    admin = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:{WarehouseAdminSecret}"
    assert props["MasterUserPassword"] == f"{{{{resolve:secretsmanager:{admin}:SecretString:password}}}}"
    assert props["MasterUsername"] == f"{{{{resolve:secretsmanager:{admin}:SecretString:login}}}}"
    assert props["DBName"] == "retail"
    attachment = [
        r["Properties"] for r in resources.values() if r["Type"] == "AWS::SecretsManager::SecretTargetAttachment"
    ]
    assert attachment == [
        {
            "SecretId": {"Ref": "WarehouseAdminSecret"},
            "TargetId": {"Ref": "Warehouse"},
            "TargetType": "AWS::RDS::DBInstance",
        }
    ]


# --- Upload detection: the Trigger parameter ------------------------------------------------------------------------
UPLOAD_EVENT_TYPES = {"AWS::SQS::Queue", "AWS::SQS::QueuePolicy"}


def test_the_trigger_parameter_offers_what_the_pipeline_reads(template: Mapping[str, Any]) -> None:
    parameter = template["Parameters"]["Trigger"]
    assert parameter["AllowedValues"] == TRIGGERS
    assert parameter["Default"] == Trigger.SENSOR.value, "the design card asks for the sensor"
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    grouped = [name for group in groups for name in group["Parameters"]]
    assert sorted(grouped) == sorted(template["Parameters"]), "every parameter in exactly one group"


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_upload_events_exist_only_when_trigger_is_events(template: Mapping[str, Any], trigger: str) -> None:
    """sensor: no queue, no queue policy, no notification, no queue Variable or output. events: all of them."""
    events = trigger == Trigger.EVENTS
    parameters = {"Trigger": trigger}
    created = created_resources(template, parameters)
    renderer = Renderer(template, parameters=parameters)
    queues = sorted(name for name, resource in created.items() if resource["Type"] == "AWS::SQS::Queue")
    assert queues == (["UploadsDeadLetterQueue", "UploadsQueue"] if events else [])
    assert bool({resource["Type"] for resource in created.values()} & UPLOAD_EVENT_TYPES) == events

    bucket = renderer.render(created["DataBucket"]["Properties"])
    if events:
        assert bucket["NotificationConfiguration"] == {
            "QueueConfigurations": [
                {
                    "Event": "s3:ObjectCreated:*",
                    "Queue": UPLOADS_QUEUE_ARN,
                    "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": config.INCOMING_PREFIX}]}},
                }
            ]
        }
        # S3 tests the destination when the notification is set: the queue policy must exist first.
        assert {"Key": "retail:uploads-queue-policy", "Value": "{UploadsQueuePolicy}"} in bucket["Tags"]
    else:
        assert "NotificationConfiguration" not in bucket
        assert not bucket.get("Tags")

    secrets = {
        renderer.render(resource["Properties"]["Name"]): renderer.render(resource["Properties"]["SecretString"])
        for resource in created.values()
        if resource["Type"] == "AWS::SecretsManager::Secret" and "SecretString" in resource["Properties"]
    }
    assert secrets[f"{VARIABLES_PREFIX}/{config.TRIGGER_VARIABLE}"] == trigger
    queue_url = secrets.get(f"{VARIABLES_PREFIX}/{config.UPLOADS_QUEUE_VARIABLE}")
    assert queue_url == (
        "https://sqs.eu-west-1.amazonaws.com/123456789012/{EnvironmentName}-uploads" if events else None
    )

    outputs = {
        name
        for name, output in template["Outputs"].items()
        if "Condition" not in output or evaluate_condition(template, output["Condition"], parameters)
    }
    assert {"UploadsQueueUrl", "UploadsDeadLetterQueueUrl"} <= outputs if events else not outputs & {"UploadsQueueUrl"}


def test_the_uploads_queue_is_encrypted_and_redrives_like_devstack(template: Mapping[str, Any]) -> None:
    """The queues devstack/aws.py provision_upload_events makes locally, in AWS."""
    parameters = {"Trigger": Trigger.EVENTS.value, "EnvironmentName": "retail"}
    created = created_resources(template, parameters)
    renderer = Renderer(template, parameters=parameters)
    queue = renderer.render(created["UploadsQueue"]["Properties"])
    dead = renderer.render(created["UploadsDeadLetterQueue"]["Properties"])
    for props in (queue, dead):
        assert is_true(props.get("SqsManagedSseEnabled")) or props.get("KmsMasterKeyId"), props
    assert (queue["QueueName"], dead["QueueName"]) == ("retail-uploads", "retail-uploads-dlq")
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": "arn:aws:sqs:eu-west-1:123456789012:retail-uploads-dlq",
        "maxReceiveCount": MAX_RECEIVES,
    }
    assert (int(queue["MessageRetentionPeriod"]), int(dead["MessageRetentionPeriod"])) == (4 * 86400, 14 * 86400)
    for name in ("UploadsQueue", "UploadsDeadLetterQueue"):
        assert created[name]["DeletionPolicy"] == "Delete", "switching back to sensor removes them"


# --- The contract -------------------------------------------------------------------------------------------------
def test_contract_parameters_and_defaults(template: Mapping[str, Any]) -> None:
    parameters = template["Parameters"]
    for name, default in CONTRACT_PARAMETER_DEFAULTS.items():
        assert name in parameters, name
        assert str(parameters[name].get("Default")) == default, name
    assert parameters["MwaaEnvironmentClass"]["Default"] in parameters["MwaaEnvironmentClass"]["AllowedValues"]
    pattern = parameters["EnvironmentName"]["AllowedPattern"]
    for good in ("retail", "retail-dev2"):
        assert re.fullmatch(pattern, good), good
    for bad in ("Retail", "retail-", "re--tail", "1retail", "retail_dev"):
        assert not re.fullmatch(pattern, bad), bad


def test_contract_outputs(template: Mapping[str, Any]) -> None:
    outputs = template["Outputs"]
    assert set(outputs) >= CONTRACT_OUTPUTS | CONTRACT_BUNDLE_OUTPUTS
    for name in CONTRACT_OUTPUTS:
        assert "Condition" not in outputs[name], f"{name} must exist from the first deploy on"
    for name in CONTRACT_BUNDLE_OUTPUTS:
        assert outputs[name]["Condition"] == "HasBundle"
    assert outputs["UploadsQueueUrl"]["Condition"] == "DetectsByEvents"


def test_mwaa_environment_waits_for_all_three_object_versions(
    template: Mapping[str, Any], resources: Mapping[str, Any]
) -> None:
    assert resources["MwaaEnvironment"]["Condition"] == "HasBundle"
    assert not evaluate_condition(template, "HasBundle", {})
    versions = dict.fromkeys(BUNDLE_VERSION_PARAMETERS, "v1")
    assert evaluate_condition(template, "HasBundle", versions)
    for missing in BUNDLE_VERSION_PARAMETERS:
        assert not evaluate_condition(template, "HasBundle", {**versions, missing: ""}), missing


def test_mwaa_environment_reads_the_bundle_layout(resources: Mapping[str, Any]) -> None:
    props = resources["MwaaEnvironment"]["Properties"]
    assert props["SourceBucketArn"] == {"Fn::GetAtt": ["MwaaBucket", "Arn"]}
    assert props["ExecutionRoleArn"] == {"Fn::GetAtt": ["MwaaExecutionRole", "Arn"]}
    assert props["DagS3Path"] == {"Ref": "DagsS3Path"}
    for kind, key in (
        ("Requirements", "requirements.txt"),
        ("Plugins", "plugins.zip"),
        ("StartupScript", "startup.sh"),
    ):
        assert props[f"{kind}S3Path"] == key
        assert props[f"{kind}S3ObjectVersion"] == {"Ref": f"{kind}S3ObjectVersion"}
    assert props["AirflowVersion"] == {"Ref": "AirflowVersion"}
    assert props["EnvironmentClass"] == {"Ref": "MwaaEnvironmentClass"}
    assert props["WebserverAccessMode"] == {"Ref": "WebserverAccessMode"}
    logs = props["LoggingConfiguration"]
    assert logs["TaskLogs"] == {"Enabled": True, "LogLevel": "INFO"}
    for kind in ("SchedulerLogs", "DagProcessingLogs"):
        assert logs[kind]["Enabled"] is True
        assert logs[kind]["LogLevel"] in {"INFO", "WARNING"}


def _backend_kwargs(resources: Mapping[str, Any], environment: str) -> dict[str, Any]:
    options = resources["MwaaEnvironment"]["Properties"]["AirflowConfigurationOptions"]
    rendered = Renderer({"Resources": resources}, parameters={"EnvironmentName": environment}).render(options)
    assert rendered["secrets.backend"] == SECRETS_BACKEND
    assert str(rendered["core.load_examples"]).lower() == "false"
    assert all(len(str(value)) <= 256 for value in rendered.values()), "MWAA caps option values at 256 characters"
    return json.loads(rendered["secrets.backend_kwargs"])


def test_secrets_backend_kwargs_are_the_providers_and_find_every_secret(resources: Mapping[str, Any]) -> None:
    from airflow.providers.amazon.aws.secrets.secrets_manager import SecretsManagerBackend

    # The longest environment name still fits MWAA's 256-character option values.
    _backend_kwargs(resources, "e" * 20)
    kwargs = _backend_kwargs(resources, "{EnvironmentName}")
    named = {name for name, p in inspect.signature(SecretsManagerBackend).parameters.items() if p.kind != p.VAR_KEYWORD}
    assert set(kwargs) <= named, f"not SecretsManagerBackend parameters: {set(kwargs) - named}"
    assert kwargs["connections_prefix"] == CONNECTIONS_PREFIX
    assert kwargs["variables_prefix"] == VARIABLES_PREFIX
    for conn_id in CONTRACT_CONNECTION_IDS:
        assert re.match(kwargs["connections_lookup_pattern"], conn_id), conn_id
    for key in CONTRACT_VARIABLE_KEYS | EVENTS_VARIABLE_KEYS:
        assert re.match(kwargs["variables_lookup_pattern"], key), key
    assert not re.match(kwargs["connections_lookup_pattern"], config.AWS_CONN_ID), "aws_default must stay MWAA's"


def _secrets_by_name(resources: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    renderer = Renderer({"Resources": resources})
    return {
        renderer.render(resource["Properties"]["Name"]): resource["Properties"]
        for resource in resources.values()
        if resource["Type"] == "AWS::SecretsManager::Secret"
    }


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_every_contract_secret_exists(template: Mapping[str, Any], trigger: str) -> None:
    expected = {f"{CONNECTIONS_PREFIX}/{conn_id}" for conn_id in CONTRACT_CONNECTION_IDS}
    expected |= {f"{VARIABLES_PREFIX}/{key}" for key in CONTRACT_VARIABLE_KEYS}
    if trigger == Trigger.EVENTS:
        expected |= {f"{VARIABLES_PREFIX}/{key}" for key in EVENTS_VARIABLE_KEYS}
    assert set(_secrets_by_name(created_resources(template, {"Trigger": trigger}))) == expected


def test_generated_passwords_are_uri_safe(resources: Mapping[str, Any]) -> None:
    for name, props in _secrets_by_name(resources).items():
        if not name.startswith(CONNECTIONS_PREFIX):
            continue
        generate = props["GenerateSecretString"]
        assert generate["GenerateStringKey"] == "password", name
        assert int(generate.get("PasswordLength", 32)) >= 24, name
        excluded = set(str(generate.get("ExcludeCharacters", "")))
        assert is_true(generate.get("ExcludePunctuation")) or set(":/?#[]@!$&'()*+,;=% \"\\") <= excluded, name


def test_secrets_are_airflow_connections_and_variables(
    template: Mapping[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Store the secrets as Secrets Manager would hold them after a deploy with Trigger=events (every secret),
    then read them back through the provider's SecretsManagerBackend (in moto), as MWAA will."""
    import boto3
    from airflow.providers.amazon.aws.secrets.secrets_manager import SecretsManagerBackend
    from moto import mock_aws

    for variable, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    host = "retail-warehouse.abcdefghijkl.eu-west-1.rds.amazonaws.com"
    parameters = {"EnvironmentName": "retail", "Trigger": Trigger.EVENTS.value}
    resources = created_resources(template, parameters | dict.fromkeys(BUNDLE_VERSION_PARAMETERS, "v1"))
    renderer = Renderer(
        template,
        parameters=parameters,
        attributes={"Warehouse.Endpoint.Address": host, "Warehouse.Endpoint.Port": "5432"},
    )
    secrets = {renderer.render(props["Name"]): props for props in _secrets_by_name(resources).values()}
    # What SecretTargetAttachment writes into the admin secret once the instance exists.
    attachment = {"engine": "postgres", "host": host, "port": 5432, "dbInstanceIdentifier": "retail-warehouse"}
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="eu-west-1")
        for name, props in secrets.items():
            if "GenerateSecretString" in props:
                generate = props["GenerateSecretString"]
                value = json.loads(renderer.render(generate["SecretStringTemplate"]))
                value[generate["GenerateStringKey"]] = "Gen3rated" + "x" * 23
                if name.endswith(f"/{config.WAREHOUSE_ADMIN_CONN_ID}"):
                    value |= attachment
                client.create_secret(Name=name, SecretString=json.dumps(value))
            else:
                client.create_secret(Name=name, SecretString=renderer.render(props["SecretString"]))

        kwargs = _backend_kwargs(resources, "retail")
        backend = SecretsManagerBackend(**kwargs, region_name="eu-west-1")
        logins = {
            config.WAREHOUSE_CONN_ID: LOADER_ROLE,
            config.WAREHOUSE_TRANSFORM_CONN_ID: TRANSFORMER_ROLE,
            config.WAREHOUSE_ADMIN_CONN_ID: "retail_admin",
        }
        for conn_id, login in logins.items():
            connection = backend.get_connection(conn_id)
            assert connection is not None, conn_id
            assert (connection.conn_type, connection.host, connection.port) == ("postgres", host, 5432), conn_id
            assert (connection.login, connection.schema) == (login, "retail"), conn_id
            assert connection.password == "Gen3rated" + "x" * 23
            assert connection.extra_dejson.get("sslmode") == "require"
        assert backend.get_variable(config.BUCKET_VARIABLE) == "{DataBucket}"
        assert backend.get_variable(config.ALERTS_TOPIC_VARIABLE) == "arn:aws:sns:eu-west-1:123456789012:{AlertsTopic}"
        assert backend.get_variable(config.TRIGGER_VARIABLE) == Trigger.EVENTS.value
        queue_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/retail-uploads"
        assert backend.get_variable(config.UPLOADS_QUEUE_VARIABLE) == queue_url
        # An optional variable that is not stored answers "absent", and aws_default is never looked up.
        assert backend.get_variable(config.MAX_REJECTED_FRACTION_VARIABLE) is None
        assert backend.get_connection(config.AWS_CONN_ID) is None
