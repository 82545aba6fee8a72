"""The commands of ``python -m mwaa``: bundle, deploy, upload, teardown.

``--endpoint-url`` points every AWS client at another endpoint (a moto server in the tests).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mwaa import REPO_ROOT, DeployError
from mwaa import __doc__ as PACKAGE_DOC
from mwaa.bundle import DEFAULT_OUT, build_bundle, mwaa_requirements
from mwaa.cloudformation import (
    DEFAULT_TEMPLATE,
    VERSION_PARAMETERS,
    apply_stack,
    delete_stack,
    describe_stack,
    stack_outputs,
    stack_resources,
    template_parameters,
)
from mwaa.s3 import empty_bucket, upload_bundle

PROG = "python -m mwaa"
# CloudFormation's limit for a template passed inline (TemplateBody) rather than from S3.
INLINE_TEMPLATE_LIMIT = 51_200


def _client(args: argparse.Namespace, service: str):
    import boto3

    return boto3.session.Session(region_name=args.region).client(service, endpoint_url=args.endpoint_url)


def cmd_bundle(args: argparse.Namespace) -> None:
    out = build_bundle(args.out)
    dag_files = sum(1 for path in (out / "dags").rglob("*") if path.is_file())
    print(f"MWAA bundle in {out}: dags/ ({dag_files} files), plugins.zip, requirements.txt, startup.sh")


def cmd_upload(args: argparse.Namespace) -> None:
    if not (args.bucket or args.stack):
        raise DeployError("say where to: --bucket NAME or --stack NAME")
    stack = None
    if args.stack:
        stack = describe_stack(_client(args, "cloudformation"), args.stack)
        if stack is None:
            raise DeployError(f"no stack {args.stack}: run `{PROG} deploy --stack {args.stack}` first")
    bucket = args.bucket or stack_outputs(stack)["MwaaBucketName"]
    versions = upload_bundle(_client(args, "s3"), bucket, build_bundle(args.out))
    print("MWAA copies dags/ to its containers by itself, usually within a minute.")
    running = {item["ParameterKey"]: item.get("ParameterValue") for item in (stack or {}).get("Parameters", [])}
    pending = [name for name, parameter in VERSION_PARAMETERS.items() if running.get(parameter) != versions[name]]
    if pending:
        print(
            f"{', '.join(pending)}: not the version{'s' if len(pending) > 1 else ''} the environment runs"
            f"{'' if stack else ' (if any)'}; `{PROG} deploy` hands new versions to the environment."
        )


def cmd_deploy(args: argparse.Namespace) -> None:
    if not args.template.is_file():
        raise DeployError(f"no template at {args.template}")
    template_body = args.template.read_text()
    if len(template_body.encode()) > INLINE_TEMPLATE_LIMIT:
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


def cmd_teardown(args: argparse.Namespace) -> None:
    cfn, s3 = _client(args, "cloudformation"), _client(args, "s3")
    stack = describe_stack(cfn, args.stack)
    if stack is None:
        print(f"No stack {args.stack}: nothing to tear down.")
        return
    outputs = stack_outputs(stack)
    named = [outputs[key] for key in ("DataBucketName", "MwaaBucketName") if key in outputs]
    buckets = sorted(set(named + [bucket for bucket in stack_resources(cfn, stack, "AWS::S3::Bucket") if bucket]))
    databases = [database for database in stack_resources(cfn, stack, "AWS::RDS::DBInstance") if database]
    if not args.yes:
        print(f"This deletes stack {args.stack} and everything in it, including every object (and every version)")
        print(f"in {', '.join(buckets) or 'its buckets'}: the workbooks, processed files and quarantine reports.")
        if input(f"Type {args.stack} to go on: ").strip() != args.stack:
            raise DeployError("not confirmed; nothing deleted")

    def empty_buckets() -> None:
        for bucket in buckets:
            empty_bucket(s3, bucket)

    delete_stack(cfn, stack, before_each_try=empty_buckets)
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
    main = _aws_options(argparse.ArgumentParser(prog=PROG, description=PACKAGE_DOC.split("\n\n")[0]), None)
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
        sys.exit(f"mwaa: {error}")
    except (BotoCoreError, ClientError) as error:  # no credentials, no network, access denied, ...
        sys.exit(f"mwaa: AWS said: {error}")
    except KeyboardInterrupt:
        sys.exit("mwaa: interrupted (CloudFormation carries on with what it started)")


if __name__ == "__main__":
    main()
