"""The CloudFormation template, evaluated here as CloudFormation would: conditions, intrinsic functions, the
resources a deploy creates. No AWS call: ``mwaa.cloudformation`` is what deploys the template with the real service.

``infra/retail-pipeline.yaml`` is read as CloudFormation reads it (``load_template``); ``evaluate_condition`` and
``created_resources`` say which resources (and ``Fn::If`` branches) a deploy with given parameter values creates, as
CloudFormation leaves out those whose condition is false; ``Renderer`` turns the intrinsic functions of a property
(``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``, ``Fn::FindInMap``, ``Fn::If``) into the values the deploy gives
it. Only what the template uses is evaluated: anything else raises ``Unrenderable``.

Two readers, one code path: the MWAA rehearsal (``mwaa.rehearsal``) provisions what the template makes from this
evaluation, and ``tests/deploy/test_infra.py`` evaluates conditions with the same functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mwaa import DeployError
from mwaa.cloudformation import DEFAULT_TEMPLATE

# The pseudo parameters' values unless told otherwise: moto's default account; any region works, this is the one
# the docs' examples use.
ACCOUNT_ID = "123456789012"
REGION = "eu-west-1"
_SUB_VARIABLE = re.compile(r"\$\{([^}]+)\}")


class Unrenderable(DeployError):
    """The template uses something not evaluated here (an intrinsic, a resource type): extend this module, or
    ``mwaa.rehearsal`` for what the rehearsal reads of the resources."""


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
    """The template's resources of one type, as ``(logical id, resource)``."""
    return [(name, resource) for name, resource in template.get("Resources", {}).items() if resource["Type"] == kind]


def the_one(template: Mapping[str, Any], kind: str) -> tuple[str, Mapping[str, Any]]:
    """The single resource of a type the template must have exactly one of (its RDS instance, its topic)."""
    found = resources_of(template, kind)
    if len(found) != 1:
        raise Unrenderable(f"the rehearsal expects one {kind}, the template has {[name for name, _ in found]}")
    return found[0]
