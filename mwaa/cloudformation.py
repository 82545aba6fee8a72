"""The CloudFormation stack of an MWAA environment: created or updated with its parameters kept, waited on,
deleted; its events printed as they come, its failures explained by the resources that failed.

This is the real deploy, through the CloudFormation service. Evaluating the template locally (its conditions and
intrinsic functions, for the rehearsal and tests/deploy) is ``mwaa.template``'s job, not this module's."""

from __future__ import annotations

import time
from collections.abc import Callable

from mwaa import REPO_ROOT, DeployError
from mwaa.bundle import PLUGINS_ZIP, REQUIREMENTS_TXT, STARTUP_SH

DEFAULT_TEMPLATE = REPO_ROOT / "infra" / "retail-pipeline.yaml"
# The template parameters that carry the S3 object version of each versioned file at the bucket root.
VERSION_PARAMETERS = {
    PLUGINS_ZIP: "PluginsS3ObjectVersion",
    REQUIREMENTS_TXT: "RequirementsS3ObjectVersion",
    STARTUP_SH: "StartupScriptS3ObjectVersion",
}
POLL_SECONDS = 15.0
STACK_TIMEOUT_SECONDS = 3 * 3600  # an MWAA environment alone takes 20-40 minutes to create or update
CAPABILITIES = ["CAPABILITY_NAMED_IAM"]


def template_parameters(template_body: str) -> set[str]:
    """The parameter names a template declares (YAML with CloudFormation's short-form tags, or JSON)."""
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    def _intrinsic(loader, suffix, node):
        if isinstance(node, yaml.ScalarNode):
            return loader.construct_scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node)
        return loader.construct_mapping(node)

    _Loader.add_multi_constructor("!", _intrinsic)
    return set((yaml.load(template_body, Loader=_Loader) or {}).get("Parameters", {}))


def stack_parameters(declared: set[str], values: dict[str, str | None], previous: set[str]) -> list[dict]:
    """CloudFormation parameters: the values given, and, for an update, the stack's own for the rest.

    A parameter left out of an update falls back to its default, which for the object versions would
    delete the MWAA environment: so every parameter the stack already has keeps its value unless given.
    """
    unknown = {name for name, value in values.items() if value is not None} - declared
    if unknown:
        raise DeployError(f"the template declares no parameter {sorted(unknown)}")
    parameters = []
    for name in sorted(declared):
        if values.get(name) is not None:
            parameters.append({"ParameterKey": name, "ParameterValue": values[name]})
        elif name in previous:
            parameters.append({"ParameterKey": name, "UsePreviousValue": True})
    return parameters


def describe_stack(cfn, name: str) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        return cfn.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as error:
        if "does not exist" in error.response.get("Error", {}).get("Message", ""):
            return None
        raise


def stack_outputs(stack: dict) -> dict[str, str]:
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


def stack_resources(cfn, stack: dict, resource_type: str) -> list[str]:
    """The physical ids of the stack's resources of one type: its own, not its outputs, which a stack whose
    update failed may lack."""
    resources = cfn.describe_stack_resources(StackName=stack["StackId"])["StackResources"]
    return [item["PhysicalResourceId"] for item in resources if item["ResourceType"] == resource_type]


def _events(cfn, stack_id: str) -> list[dict]:
    from botocore.exceptions import ClientError

    try:
        return cfn.describe_stack_events(StackName=stack_id).get("StackEvents", [])
    except ClientError:
        return []


def wait_for_stack(cfn, stack_id: str, seen: set[str], *, log: Callable[[str], None] = print) -> str:
    """Poll until the stack leaves its *_IN_PROGRESS state, printing its new events. Returns the status."""
    deadline = time.monotonic() + STACK_TIMEOUT_SECONDS
    while True:
        stack = describe_stack(cfn, stack_id)
        for event in reversed(_events(cfn, stack_id)):
            if event["EventId"] not in seen:
                seen.add(event["EventId"])
                reason = f"  {event['ResourceStatusReason']}" if event.get("ResourceStatusReason") else ""
                when, resource = f"{event['Timestamp']:%H:%M:%S}", event["LogicalResourceId"]
                log(f"  {when} {resource:32} {event['ResourceStatus']}{reason}")
        status = stack["StackStatus"] if stack else "DELETE_COMPLETE"
        if not status.endswith("_IN_PROGRESS"):
            return status
        if time.monotonic() > deadline:
            raise DeployError(f"stack {stack_id} still {status} after {STACK_TIMEOUT_SECONDS // 60} minutes")
        time.sleep(POLL_SECONDS)


def _failure(cfn, stack_id: str, status: str) -> DeployError:
    reasons = [
        f"{event['LogicalResourceId']}: {event.get('ResourceStatusReason', '')}"
        for event in _events(cfn, stack_id)
        if event["ResourceStatus"].endswith("_FAILED")
    ][:5]
    return DeployError(f"stack ended {status}" + "".join(f"\n  {reason}" for reason in reasons))


def apply_stack(cfn, name: str, template_body: str, values: dict[str, str | None], *, log=print) -> dict:
    """Create the stack, or update it; wait; return it. "No updates are to be performed" is success."""
    from botocore.exceptions import ClientError

    declared = template_parameters(template_body)
    existing = describe_stack(cfn, name)
    if existing is not None:
        status = existing["StackStatus"]
        if status == "ROLLBACK_COMPLETE":
            raise DeployError(
                f"stack {name} failed to create and was rolled back: run `python -m mwaa teardown --stack {name}`, "
                "then deploy again"
            )
        if status.endswith("_IN_PROGRESS"):
            raise DeployError(f"stack {name} is busy ({status}): wait for it to finish, then run this again")
    previous = {parameter["ParameterKey"] for parameter in (existing or {}).get("Parameters", [])}
    request = {
        "StackName": name,
        "TemplateBody": template_body,
        "Parameters": stack_parameters(declared, values, previous),
        "Capabilities": CAPABILITIES,
    }
    if existing is None:
        log(f"Creating stack {name} ...")
        stack_id, seen, expected = cfn.create_stack(**request)["StackId"], set(), "CREATE_COMPLETE"
    else:
        stack_id = existing["StackId"]
        seen = {event["EventId"] for event in _events(cfn, stack_id)}
        try:
            cfn.update_stack(**request)
        except ClientError as error:
            if "No updates are to be performed" not in error.response.get("Error", {}).get("Message", ""):
                raise
            log(f"Stack {name} is up to date.")
            return existing
        log(f"Updating stack {name} ...")
        expected = "UPDATE_COMPLETE"
    status = wait_for_stack(cfn, stack_id, seen, log=log)
    if status != expected:
        raise _failure(cfn, stack_id, status)
    return describe_stack(cfn, stack_id)


def delete_stack(cfn, stack: dict, *, before_each_try: Callable[[], None], log: Callable[[str], None] = print) -> None:
    """Delete the stack and wait for it; on DELETE_FAILED, run ``before_each_try`` again and retry once.

    ``before_each_try`` empties the buckets: a running task can write to the data bucket while it is emptied.
    """
    for attempt in (1, 2):
        before_each_try()
        seen = {event["EventId"] for event in _events(cfn, stack["StackId"])}
        log(f"Deleting stack {stack['StackName']} ...")
        cfn.delete_stack(StackName=stack["StackId"])
        status = wait_for_stack(cfn, stack["StackId"], seen, log=log)
        if status == "DELETE_COMPLETE":
            return
        if attempt == 2 or status != "DELETE_FAILED":
            raise _failure(cfn, stack["StackId"], status)
