"""Build the Amazon MWAA bundle, deploy it with its CloudFormation stack, upload changes, tear it all down.

Run with the project's virtualenv (``make mwaa-bundle`` / ``mwaa-deploy`` / ``mwaa-upload`` / ``mwaa-teardown``):

    .venv/bin/python scripts/mwaa.py bundle                         # build/mwaa/, nothing leaves the machine
    .venv/bin/python scripts/mwaa.py deploy --stack retail --alert-email you@example.com
    .venv/bin/python scripts/mwaa.py upload --stack retail          # DAG changes: MWAA picks them up by itself
    .venv/bin/python scripts/mwaa.py teardown --stack retail

The bundle is laid out as the MWAA bucket is (``infra/retail-pipeline.yaml`` points the environment at it):
``dags/`` (the DAG files, and ``dags/include/`` with the code, SQL and dbt project they import, which
``.airflowignore`` keeps the DAG processor out of), ``plugins.zip``, ``requirements.txt`` and
``startup.sh`` at the root. Nothing secret is in it: connections and Variables come from AWS Secrets
Manager through Airflow's secrets backend, configured by the template.

``--endpoint-url`` points every AWS client at another endpoint (a moto server in the tests).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import sys
import time
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "build" / "mwaa"
DEFAULT_TEMPLATE = REPO_ROOT / "infra" / "retail-pipeline.yaml"

# MWAA's Airflow 3.3.1 runs on Python 3.12; the constraints file MWAA installs requirements.txt with is
# Airflow's own for that pair. The Airflow version is read from requirements.txt's apache-airflow pin.
MWAA_PYTHON = "3.12"
CONSTRAINTS_URL = "https://raw.githubusercontent.com/apache/airflow/constraints-{airflow}/constraints-{python}.txt"

# The three files at the bucket root, and the template parameters that carry their S3 object versions:
# MWAA reads requirements, plugins and startup script by version, DAGs by prefix.
VERSION_PARAMETERS = {
    "plugins.zip": "PluginsS3ObjectVersion",
    "requirements.txt": "RequirementsS3ObjectVersion",
    "startup.sh": "StartupScriptS3ObjectVersion",
}
DAGS_PREFIX = "dags/"

SKIPPED_NAMES = {"__pycache__", ".DS_Store"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}
# dbt's generated and downloaded folders: only target/manifest.json (what Cosmos renders from) ships.
DBT_SKIPPED_DIRS = {"target", "logs", "dbt_packages"}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: the same plugins give the same bytes

POLL_SECONDS = 15.0
STACK_TIMEOUT_SECONDS = 3 * 3600  # an MWAA environment alone takes 20-40 minutes to create or update
CAPABILITIES = ["CAPABILITY_NAMED_IAM"]


class DeployError(Exception):
    """A failure the user can act on; the message says how."""


# -- the bundle -------------------------------------------------------------------------------------


def _skipped(path: Path) -> bool:
    return bool(SKIPPED_NAMES.intersection(path.parts)) or path.suffix in SKIPPED_SUFFIXES


def _copy_files(files: Iterable[Path], source_root: Path, target_root: Path) -> int:
    count = 0
    for source in files:
        target = target_root / source.relative_to(source_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        count += 1
    return count


def _files(root: Path, keep: Callable[[Path], bool] = lambda path: True) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file() and not _skipped(path) and keep(path))


def _requirement_lines(path: Path) -> list[str]:
    """The requirement lines of a pip requirements file, without comments and blank lines."""
    lines = []
    for raw in path.read_text().splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        if line.startswith("-"):
            raise DeployError(f"{path}: option line {line!r} is not supported by the MWAA bundle")
        lines.append(line)
    return lines


def mwaa_requirements(requirements: Path) -> tuple[str, str]:
    """MWAA's requirements.txt from the project's, and the Airflow version it pins.

    The first line is the ``--constraint`` MWAA expects (Airflow's constraints for the pinned version):
    every unpinned requirement resolves to what ``requirements/py312.lock`` was resolved against.
    ``apache-airflow`` itself is left out: MWAA installs it and does not let requirements.txt change it.
    """
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    airflow_version = None
    kept = []
    for line in _requirement_lines(requirements):
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) != "apache-airflow":
            kept.append(line)
            continue
        pins = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        airflow_version = pins[0] if len(pins) == 1 else None
    if airflow_version is None:
        raise DeployError(f"{requirements} must pin apache-airflow==X.Y.Z: it chooses MWAA's constraints")
    constraint = CONSTRAINTS_URL.format(airflow=airflow_version, python=MWAA_PYTHON)
    text = "\n".join(
        [
            f'--constraint "{constraint}"',
            "# Generated by scripts/mwaa.py from the project's requirements.txt. apache-airflow is not listed:",
            "# MWAA provides it. dbt is not listed either: startup.sh installs it in a virtualenv of its own.",
            *kept,
        ]
    )
    return text + "\n", airflow_version


def startup_script(template: Path, dbt_in: Path, dbt_lock: Path) -> str:
    """startup.sh: the template with the dbt pins of requirements/dbt.in, constrained by their lock.

    Only the ``dbt-*`` pins are installed (sqlfluff, also in dbt.in, is a development tool).
    """
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = [line for line in _requirement_lines(dbt_in) if canonicalize_name(Requirement(line).name).startswith("dbt-")]
    locked = {canonicalize_name(Requirement(line).name): line for line in _requirement_lines(dbt_lock)}
    for pin in pins:
        requirement = Requirement(pin)
        in_lock = locked.get(canonicalize_name(requirement.name))
        if in_lock is None or Requirement(in_lock).specifier != requirement.specifier:
            raise DeployError(f"{dbt_lock} does not match {dbt_in} ({pin} vs {in_lock}): run `make lock`")
    if not pins:
        raise DeployError(f"{dbt_in} pins no dbt-* package")
    text = template.read_text()
    text = text.replace("@DBT_REQUIREMENTS@", " ".join(pins)).replace("@DBT_CONSTRAINTS@", "\n".join(locked.values()))
    if re.search(r"@DBT_\w+@", text):
        raise DeployError(f"{template} has a placeholder this script does not fill")
    return text


def write_plugins_zip(plugins: Path, target: Path) -> int:
    """plugins/ at the root of the zip, byte for byte the same for the same files (sorted, fixed dates)."""
    files = _files(plugins)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(plugins).as_posix(), date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return len(files)


def build_bundle(out: Path = DEFAULT_OUT, repo: Path = REPO_ROOT) -> Path:
    """Write the bundle into ``out`` (its previous dags/ and root files are replaced). Returns ``out``."""
    dbt_project = repo / "include" / "dbt"
    manifest = dbt_project / "target" / "manifest.json"
    if not manifest.is_file():
        raise DeployError(
            f"{manifest} is missing: run `make venv` first (it builds the dbt manifest Cosmos renders the "
            "transform DAG from)"
        )
    requirements, _ = mwaa_requirements(repo / "requirements.txt")
    startup = startup_script(
        repo / "mwaa" / "startup.sh.in", repo / "requirements" / "dbt.in", repo / "requirements" / "dbt-py312.lock"
    )

    out.mkdir(parents=True, exist_ok=True)
    dags = out / "dags"
    shutil.rmtree(dags, ignore_errors=True)
    # MWAA puts the dags folder on sys.path, so `from include.retail import ...` finds dags/include/,
    # and include/retail/dbt_project.py finds the dbt project beside it, at dags/include/dbt.
    _copy_files(sorted((repo / "dags").glob("*.py")), repo / "dags", dags)
    _copy_files(_files(repo / "include" / "retail"), repo, dags)
    _copy_files(sorted((repo / "include" / "sql").glob("*.sql")), repo, dags)
    _copy_files(
        _files(dbt_project, lambda path: path.relative_to(dbt_project).parts[0] not in DBT_SKIPPED_DIRS),
        repo,
        dags,
    )
    _copy_files([manifest], repo, dags)
    # Glob syntax, Airflow 3's default: a leading "/" anchors the pattern to this folder.
    (dags / ".airflowignore").write_text("# Code, SQL and dbt project the DAGs import: no DAG in there.\n/include/\n")

    write_plugins_zip(repo / "plugins", out / "plugins.zip")
    (out / "requirements.txt").write_text(requirements)
    (out / "startup.sh").write_text(startup)
    (out / "startup.sh").chmod(0o755)
    return out


# -- S3 ---------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _put_if_changed(s3, bucket: str, key: str, path: Path, *, may_exist: bool = True) -> tuple[str | None, bool]:
    """Upload unless the object already holds these bytes. Returns (version id, uploaded).

    The content hash travels as object metadata: ETags are not content hashes under SSE-KMS, and an
    unchanged file must keep its version, or each deploy would update the MWAA environment for nothing.
    """
    from botocore.exceptions import ClientError

    digest = _sha256(path)
    if may_exist:
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
        else:
            if head.get("Metadata", {}).get("sha256") == digest:
                return head.get("VersionId"), False
    response = s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), Metadata={"sha256": digest})
    return response.get("VersionId"), True


def upload_bundle(s3, bucket: str, bundle_dir: Path, *, log: Callable[[str], None] = print) -> dict[str, str]:
    """Sync the bundle into the MWAA bucket. Returns the S3 version id of each root file.

    dags/ is mirrored (new and changed files uploaded, keys no longer in the bundle deleted, the latter
    after the former so no DAG is ever missing its code); the root files are uploaded when changed.
    """
    dags = bundle_dir / "dags"
    local = {DAGS_PREFIX + path.relative_to(dags).as_posix(): path for path in _files(dags)}
    if not local:
        raise DeployError(f"{dags} is empty: build the bundle first")
    remote = {
        entry["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=DAGS_PREFIX)
        for entry in page.get("Contents", [])
    }
    uploaded = [
        key for key, path in local.items() if _put_if_changed(s3, bucket, key, path, may_exist=key in remote)[1]
    ]
    stale = sorted(key for key in remote - local.keys() if not key.endswith("/"))
    for start in range(0, len(stale), 1000):
        batch = [{"Key": key} for key in stale[start : start + 1000]]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
    log(f"s3://{bucket}/{DAGS_PREFIX}: {len(local)} files, {len(uploaded)} uploaded, {len(stale)} deleted")

    versions = {}
    for name in VERSION_PARAMETERS:
        version, changed = _put_if_changed(s3, bucket, name, bundle_dir / name)
        if not version or version == "null":
            raise DeployError(f"s3://{bucket} is not versioned: MWAA reads {name} by its S3 object version")
        versions[name] = version
        log(f"s3://{bucket}/{name}: {'uploaded' if changed else 'unchanged'}, version {version}")
    return versions


def empty_bucket(s3, bucket: str, *, log: Callable[[str], None] = print) -> int:
    """Delete every object version and delete marker, so that the bucket itself can be deleted."""
    from botocore.exceptions import ClientError

    deleted = 0
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            entries = [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
            objects = [{"Key": entry["Key"], "VersionId": entry["VersionId"]} for entry in entries]
            for start in range(0, len(objects), 1000):
                batch = {"Objects": objects[start : start + 1000], "Quiet": True}
                response = s3.delete_objects(Bucket=bucket, Delete=batch)
                if response.get("Errors"):
                    raise DeployError(f"s3://{bucket}: could not delete {response['Errors'][:3]}")
            deleted += len(objects)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "NoSuchBucket":
            return 0
        raise
    log(f"s3://{bucket}: deleted {deleted} object versions and delete markers")
    return deleted


# -- CloudFormation ---------------------------------------------------------------------------------


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
                f"stack {name} failed to create and was rolled back: run `scripts/mwaa.py teardown --stack {name}`, "
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


# -- commands ---------------------------------------------------------------------------------------


def _session(args):
    import boto3

    return boto3.session.Session(region_name=args.region)


def _client(args, service: str):
    return _session(args).client(service, endpoint_url=args.endpoint_url)


def cmd_bundle(args) -> None:
    out = build_bundle(args.out)
    dag_files = sum(1 for path in (out / "dags").rglob("*") if path.is_file())
    print(f"MWAA bundle in {out}: dags/ ({dag_files} files), plugins.zip, requirements.txt, startup.sh")


def cmd_upload(args) -> None:
    if not (args.bucket or args.stack):
        raise DeployError("say where to: --bucket NAME or --stack NAME")
    stack = None
    if args.stack:
        stack = describe_stack(_client(args, "cloudformation"), args.stack)
        if stack is None:
            raise DeployError(f"no stack {args.stack}: run `scripts/mwaa.py deploy --stack {args.stack}` first")
    bucket = args.bucket or stack_outputs(stack)["MwaaBucketName"]
    versions = upload_bundle(_client(args, "s3"), bucket, build_bundle(args.out))
    print("MWAA copies dags/ to its containers by itself, usually within a minute.")
    running = {item["ParameterKey"]: item.get("ParameterValue") for item in (stack or {}).get("Parameters", [])}
    pending = [name for name, parameter in VERSION_PARAMETERS.items() if running.get(parameter) != versions[name]]
    if pending:
        print(
            f"{', '.join(pending)}: not the version{'s' if len(pending) > 1 else ''} the environment runs"
            f"{'' if stack else ' (if any)'}; `scripts/mwaa.py deploy` hands new versions to the environment."
        )


def cmd_deploy(args) -> None:
    if not args.template.is_file():
        raise DeployError(f"no template at {args.template}")
    template_body = args.template.read_text()
    if len(template_body.encode()) > 51_200:
        raise DeployError(f"{args.template} is over CloudFormation's 51,200-byte limit for an inline template")
    declared = template_parameters(template_body)
    missing = set(VERSION_PARAMETERS.values()) - declared
    if missing:
        raise DeployError(f"{args.template} lacks the parameters {sorted(missing)} (see the deploy contract)")
    bundle = build_bundle(args.out)
    _, airflow_version = mwaa_requirements(REPO_ROOT / "requirements.txt")
    cfn, s3 = _client(args, "cloudformation"), _client(args, "s3")

    values: dict[str, str | None] = dict(args.parameter)
    values["AlertEmail"] = args.alert_email
    if "AirflowVersion" in declared:
        values["AirflowVersion"] = airflow_version  # one source for the version: the requirements pin
    stack = describe_stack(cfn, args.stack)
    if stack is None:
        # First the buckets, database, secrets and network, without the environment: it needs the bundle.
        values["EnvironmentName"] = args.environment_name or args.stack
        stack = apply_stack(cfn, args.stack, template_body, values)
    elif args.environment_name:
        values["EnvironmentName"] = args.environment_name
    outputs = stack_outputs(stack)
    versions = upload_bundle(s3, outputs["MwaaBucketName"], bundle)
    values.update({VERSION_PARAMETERS[name]: version for name, version in versions.items()})
    outputs = stack_outputs(apply_stack(cfn, args.stack, template_body, values))

    print(f"\nStack {args.stack}:")
    for key, value in sorted(outputs.items()):
        print(f"  {key:22} {value}")
    if "AirflowUiUrl" in outputs:
        print(f"\nAirflow UI: {outputs['AirflowUiUrl']}")
    if args.alert_email:
        print(f"Confirm the SNS subscription sent to {args.alert_email}, or no alert will reach you.")
    if "DataBucketName" in outputs:
        print(f"Drop a workbook in: aws s3 cp FILE.xlsx s3://{outputs['DataBucketName']}/incoming/")


def _final_snapshots(rds, database: str) -> list[str]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        found = rds.describe_db_snapshots(DBInstanceIdentifier=database, SnapshotType="manual")["DBSnapshots"]
    except (BotoCoreError, ClientError):
        return []
    return [snapshot["DBSnapshotIdentifier"] for snapshot in found]


def cmd_teardown(args) -> None:
    cfn, s3 = _client(args, "cloudformation"), _client(args, "s3")
    stack = describe_stack(cfn, args.stack)
    if stack is None:
        print(f"No stack {args.stack}: nothing to tear down.")
        return
    outputs = stack_outputs(stack)
    # The stack's own resources, not only its outputs: a stack whose update failed may lack some outputs.
    resources = cfn.describe_stack_resources(StackName=stack["StackId"])["StackResources"]
    physical = {
        kind: [item["PhysicalResourceId"] for item in resources if item["ResourceType"] == kind]
        for kind in ("AWS::S3::Bucket", "AWS::RDS::DBInstance")
    }
    named = [outputs[key] for key in ("DataBucketName", "MwaaBucketName") if key in outputs]
    buckets = sorted(set(named + [bucket for bucket in physical["AWS::S3::Bucket"] if bucket]))
    databases = [database for database in physical["AWS::RDS::DBInstance"] if database]
    if not args.yes:
        print(f"This deletes stack {args.stack} and everything in it, including every object (and every version)")
        print(f"in {', '.join(buckets) or 'its buckets'}: the workbooks, processed files and quarantine reports.")
        if input(f"Type {args.stack} to go on: ").strip() != args.stack:
            raise DeployError("not confirmed; nothing deleted")

    for attempt in (1, 2):
        for bucket in buckets:
            empty_bucket(s3, bucket)
        seen = {event["EventId"] for event in _events(cfn, stack["StackId"])}
        print(f"Deleting stack {args.stack} ...")
        cfn.delete_stack(StackName=stack["StackId"])
        status = wait_for_stack(cfn, stack["StackId"], seen)
        if status == "DELETE_COMPLETE":
            break
        # A running task can write to the data bucket while it is emptied: empty it again and retry once.
        if attempt == 2 or status != "DELETE_FAILED":
            raise _failure(cfn, stack["StackId"], status)
    print(f"Stack {args.stack} deleted.")

    for database in databases:
        print(f"RDS kept a final snapshot of {database} (DeletionPolicy: Snapshot), billed until you delete it:")
        snapshots = _final_snapshots(_client(args, "rds"), database)
        for snapshot in snapshots:
            print(f"  aws rds delete-db-snapshot --db-snapshot-identifier {snapshot}")
        if not snapshots:
            print(
                f"  aws rds describe-db-snapshots --db-instance-identifier {database} --snapshot-type manual "
                "--query 'DBSnapshots[].DBSnapshotIdentifier'\n"
                "  aws rds delete-db-snapshot --db-snapshot-identifier SNAPSHOT_ID"
            )
    if "MwaaEnvironmentName" in outputs:
        print(
            f"MWAA's CloudWatch log groups outlive the environment: "
            f"aws logs describe-log-groups --log-group-name-prefix airflow-{outputs['MwaaEnvironmentName']}-"
        )


def _key_value(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not (key and equals):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _aws_options(parser: argparse.ArgumentParser, default) -> argparse.ArgumentParser:
    parser.add_argument("--endpoint-url", default=default, help="AWS endpoint for every client (e.g. a moto server)")
    parser.add_argument("--region", default=default, help="AWS region (default: AWS_DEFAULT_REGION or the config)")
    return parser


def parser() -> argparse.ArgumentParser:
    # --endpoint-url and --region are accepted before or after the subcommand: after it, they override.
    main = _aws_options(argparse.ArgumentParser(prog="scripts/mwaa.py", description=__doc__.split("\n\n")[0]), None)
    aws = _aws_options(argparse.ArgumentParser(add_help=False), argparse.SUPPRESS)
    commands = main.add_subparsers(dest="command", required=True)

    bundle = commands.add_parser("bundle", parents=[aws], help="build the MWAA bundle")
    bundle.set_defaults(run=cmd_bundle)

    deploy = commands.add_parser("deploy", parents=[aws], help="create/update the stack and the MWAA environment")
    deploy.add_argument("--stack", required=True, help="CloudFormation stack name, e.g. retail")
    deploy.add_argument("--alert-email", help="email subscribed to the alerts topic (kept from before if omitted)")
    deploy.add_argument("--environment-name", help="the template's EnvironmentName (default: the stack name)")
    deploy.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE)
    deploy.add_argument(
        "--parameter", action="append", default=[], type=_key_value, metavar="KEY=VALUE", help="a template parameter"
    )
    deploy.set_defaults(run=cmd_deploy)

    upload = commands.add_parser("upload", parents=[aws], help="build the bundle and sync it to the MWAA bucket")
    target = upload.add_mutually_exclusive_group()
    target.add_argument("--bucket", help="the MWAA bucket")
    target.add_argument("--stack", help="read the bucket from this stack's MwaaBucketName output")
    upload.set_defaults(run=cmd_upload)

    teardown = commands.add_parser("teardown", parents=[aws], help="empty the buckets and delete the stack")
    teardown.add_argument("--stack", required=True)
    teardown.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    teardown.set_defaults(run=cmd_teardown)

    for command in (bundle, deploy, upload):
        command.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"bundle folder (default: {DEFAULT_OUT})")
    return main


def main(argv: list[str] | None = None) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    args = parser().parse_args(argv)
    try:
        args.run(args)
    except DeployError as error:
        sys.exit(f"mwaa.py: {error}")
    except (BotoCoreError, ClientError) as error:  # no credentials, no network, access denied, ...
        sys.exit(f"mwaa.py: AWS said: {error}")
    except KeyboardInterrupt:
        sys.exit("mwaa.py: interrupted (CloudFormation carries on with what it started)")


if __name__ == "__main__":
    main()
