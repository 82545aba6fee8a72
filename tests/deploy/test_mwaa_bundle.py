"""The Amazon MWAA bundle (``python -m mwaa``): its layout, that the DAGs parse from it alone, and its deployment.

The bundle is unpacked the way MWAA lays it out (s3 dags/ -> /usr/local/airflow/dags, plugins.zip unzipped
into /usr/local/airflow/plugins) and parsed in a fresh process that cannot see the repository, so every
import really comes from the bundle. Uploading, deploying and tearing down run against the session's
moto server; CloudFormation there gets a stand-in template, since moto cannot create an MWAA environment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mwaa import DeployError
from mwaa.bundle import build_bundle
from mwaa.cloudformation import stack_parameters

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
DBT_EXECUTABLE = REPO / ".venv-dbt" / "bin" / "dbt"
REGION = "eu-west-1"


def requirement_lines(path: Path) -> list[Requirement]:
    lines = (re.sub(r"(^|\s)#.*$", "", line).strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("mwaa") / "bundle")


@pytest.fixture(scope="module")
def airflow_home(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle as MWAA lays it out in /usr/local/airflow."""
    home = tmp_path_factory.mktemp("mwaa-container") / "usr" / "local" / "airflow"
    shutil.copytree(bundle / "dags", home / "dags")
    with zipfile.ZipFile(bundle / "plugins.zip") as archive:
        archive.extractall(home / "plugins")
    for name in ("requirements.txt", "startup.sh"):
        shutil.copyfile(bundle / name, home / name)
    return home


def aws_env() -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }


def run_script(*args: str, moto_url: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_PYTHON), "-m", "mwaa", "--endpoint-url", moto_url, *args],
        cwd=REPO,
        env=aws_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def versioned_bucket(s3, name: str) -> None:
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


# -- layout ------------------------------------------------------------------------------------------


def test_bundle_is_laid_out_as_the_mwaa_bucket(bundle: Path) -> None:
    assert sorted(path.name for path in bundle.iterdir()) == ["dags", "plugins.zip", "requirements.txt", "startup.sh"]
    dags = bundle / "dags"
    shipped = {path.relative_to(dags).as_posix() for path in dags.rglob("*") if path.is_file()}

    expected_code = {path.relative_to(REPO).as_posix() for path in (REPO / "include" / "retail").rglob("*.py")}
    expected_sql = {f"include/sql/{path.name}" for path in (REPO / "include" / "sql").glob("*.sql")}
    assert {"retail_ingest.py", "retail_ingest_file.py", "retail_transform.py", ".airflowignore"} <= shipped
    assert expected_code <= shipped
    assert expected_sql <= shipped
    assert {"include/dbt/dbt_project.yml", "include/dbt/target/manifest.json"} <= shipped
    assert any(name.startswith("include/dbt/models/silver/") for name in shipped)
    # Of dbt's generated folders only the manifest and the docs site built beside it ship; no bytecode, no logs.
    assert sorted(name for name in shipped if name.startswith("include/dbt/target/")) == [
        "include/dbt/target/catalog.json",
        "include/dbt/target/index.html",
        "include/dbt/target/manifest.json",
    ]
    assert not [name for name in shipped if "__pycache__" in name or name.endswith(".pyc") or "/logs/" in name]
    # Nothing but DAG files at the top of the DAG folder.
    assert {name for name in shipped if "/" not in name} == {path.name for path in (REPO / "dags").glob("*.py")} | {
        ".airflowignore"
    }


def test_the_bundle_needs_the_dbt_manifest(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="make venv"):
        build_bundle(tmp_path / "out", manifest=tmp_path / "target" / "manifest.json")


def test_requirements_install_on_top_of_mwaa_airflow(bundle: Path) -> None:
    import airflow

    lines = (bundle / "requirements.txt").read_text().splitlines()
    pinned = next(req for req in requirement_lines(REPO / "requirements.txt") if req.name == "apache-airflow")
    version = str(pinned.specifier).removeprefix("==")
    # The constraints MWAA installs with, for the Airflow and the Python this project is tested with.
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert version == airflow.__version__
    assert lines[0] == (
        f'--constraint "https://raw.githubusercontent.com/apache/airflow/constraints-{version}/constraints-{python}.txt"'
    )
    shipped = {canonicalize_name(req.name) for req in requirement_lines(bundle / "requirements.txt")}
    project = {canonicalize_name(req.name) for req in requirement_lines(REPO / "requirements.txt")}
    assert "apache-airflow" not in shipped  # MWAA provides it
    assert shipped == project - {"apache-airflow"}
    assert not [name for name in shipped if name.startswith("dbt")]


def test_plugins_zip_holds_plugins_at_its_root_and_is_reproducible(bundle: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(bundle / "plugins.zip") as archive:
        assert archive.testzip() is None
        names = archive.namelist()
    plugins = REPO / "plugins"
    expected = sorted(
        path.relative_to(plugins).as_posix()
        for path in plugins.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )
    assert names == expected
    # Same files, same bytes: an unchanged plugins.zip keeps its S3 version and MWAA is not updated for nothing.
    again = build_bundle(tmp_path / "again")
    assert (again / "plugins.zip").read_bytes() == (bundle / "plugins.zip").read_bytes()
    assert (again / "startup.sh").read_bytes() == (bundle / "startup.sh").read_bytes()


# -- startup.sh --------------------------------------------------------------------------------------


def test_startup_script_is_valid_bash_with_the_dbt_pins(bundle: Path) -> None:
    startup = bundle / "startup.sh"
    subprocess.run(["bash", "-n", str(startup)], check=True)
    text = startup.read_text()
    dbt_pins = [str(req) for req in requirement_lines(REPO / "requirements" / "dbt.in") if req.name.startswith("dbt-")]
    assert dbt_pins
    for pin in dbt_pins:
        assert pin in text
    for req in requirement_lines(REPO / "requirements" / "dbt-py312.lock"):
        assert f"\n{req}\n" in text  # the lock, as constraints
    assert "@DBT_" not in text


STUB_PYTHON3 = """\
#!/bin/bash
# Stands in for `python3 -m venv DIR`: a virtualenv whose pip records how it was called and "installs" dbt.
[ "$1 $2" = "-m venv" ] || exit 2
mkdir -p "$3/bin"
cat > "$3/bin/pip" <<'PIP'
#!/bin/bash
venv="$(cd "$(dirname "$0")/.." && pwd)"
{ echo "PIP_USER=${PIP_USER}"; printf '%s\\n' "$@"; } > "$venv/pip-call.txt"
previous=""
for argument in "$@"; do
    [ "$previous" = "--constraint" ] && cp "$argument" "$venv/constraints-seen.txt"
    previous="$argument"
done
printf '#!/bin/sh\\n' > "$venv/bin/dbt" && chmod +x "$venv/bin/dbt"
PIP
chmod +x "$3/bin/pip"
"""


def source_startup(startup: Path, home: Path, component: str, stubs: Path) -> dict[str, str]:
    """Source startup.sh as MWAA does and return the environment it leaves."""
    env = {
        "PATH": f"{stubs}:/usr/bin:/bin",
        "HOME": str(home),
        "AIRFLOW_HOME": str(home),
        "MWAA_AIRFLOW_COMPONENT": component,
        "PIP_USER": "true",  # as MWAA sets it
    }
    result = subprocess.run(
        ["bash", "-c", 'source "$0" && echo "sourced" && env -0', str(startup)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "sourced" in result.stdout, result.stderr  # no `exit` in a sourced script
    exported = result.stdout.split("sourced\n", 1)[1]
    return dict(item.split("=", 1) for item in exported.split("\0") if "=" in item)


def test_startup_script_builds_the_dbt_virtualenv_except_on_the_web_server(bundle: Path, tmp_path: Path) -> None:
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "python3").write_text(STUB_PYTHON3)
    (stubs / "python3").chmod(0o755)

    worker = tmp_path / "worker"
    worker.mkdir()
    env = source_startup(bundle / "startup.sh", worker, "worker", stubs)
    venv = worker / "dbt_venv"
    assert env["RETAIL_DBT_EXECUTABLE"] == str(venv / "bin" / "dbt")
    assert Path(env["RETAIL_DBT_EXECUTABLE"]).is_file()
    assert env["AIRFLOW__COSMOS__ENABLE_TELEMETRY"] == "False"
    assert env["DBT_SEND_ANONYMOUS_USAGE_STATS"] == "False"
    call = (venv / "pip-call.txt").read_text().splitlines()
    assert call[0] == "PIP_USER=false"
    assert {"install", "dbt-core==1.11.16", "dbt-postgres==1.11.0"} <= set(call)
    assert "dbt-adapters==1.24.5" in (venv / "constraints-seen.txt").read_text().splitlines()
    # A container that already has the virtualenv does not build it again.
    (venv / "pip-call.txt").unlink()
    source_startup(bundle / "startup.sh", worker, "worker", stubs)
    assert not (venv / "pip-call.txt").exists()

    webserver = tmp_path / "webserver"
    webserver.mkdir()
    env = source_startup(bundle / "startup.sh", webserver, "webserver", stubs)
    assert "RETAIL_DBT_EXECUTABLE" not in env
    assert not (webserver / "dbt_venv").exists()
    assert env["AIRFLOW__COSMOS__ENABLE_TELEMETRY"] == "False"


# -- no secret ---------------------------------------------------------------------------------------

SECRET_PATTERNS = {
    "a URL with credentials": re.compile(r"[a-z][a-z0-9+.-]*://[^\s/:@'\"]+:[^\s/@'\"{}]+@"),
    "a quoted password assigned": re.compile(r"(?i)password\s*=\s*['\"][^'\"{$]+['\"]"),
    "a DSN or query password": re.compile(r"(?i)(^|[\s?&;])password=[^\s&'\"{$]+"),
    "a YAML password literal": re.compile(r"(?im)^\s*password:\s*['\"]?(?!\{\{)[^\s'\"]+"),
    "an AWS access key id": re.compile(r"AKIA[0-9A-Z]{16}"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}


def bundle_texts(bundle: Path) -> dict[str, str]:
    texts = {
        path.relative_to(bundle).as_posix(): path.read_text(errors="replace")
        for path in bundle.rglob("*")
        if path.is_file() and path.suffix != ".zip"
    }
    with zipfile.ZipFile(bundle / "plugins.zip") as archive:
        texts.update(
            {f"plugins.zip:{name}": archive.read(name).decode(errors="replace") for name in archive.namelist()}
        )
    return texts


def test_no_secret_in_the_bundle(bundle: Path, stack) -> None:
    # The detectors work: the stack's own connection URL would be caught.
    assert SECRET_PATTERNS["a URL with credentials"].search(stack.warehouse_url("retail_loader"))
    passwords = [stack.state.superuser_password, stack.state.loader_password, stack.state.transformer_password]
    for name, text in bundle_texts(bundle).items():
        for password in passwords:
            assert password not in text, f"{name} holds a generated password of the stack"
        for what, pattern in SECRET_PATTERNS.items():
            match = pattern.search(text)
            assert match is None, f"{name} holds {what}: {match[0] if match else ''}"


# -- parsing from the bundle alone -------------------------------------------------------------------

PARSE_PROBE = """\
import json, os, sys
from airflow.dag_processing.dagbag import BundleDagBag
from airflow.utils.file import list_py_file_paths

dags = os.environ["AIRFLOW__CORE__DAGS_FOLDER"]
# As MWAA's DAG processor and task runner do: the DAG folder is the bundle, and goes on sys.path.
bag = BundleDagBag(dag_folder=dags, bundle_path=dags, bundle_name="dags-folder")
import include.retail.transform.dbt_project as dbt_project
transform = bag.dags.get("retail_transform")
producer = transform.get_task("dbt.dbt_producer_watcher") if transform else None
print("RESULT " + json.dumps({
    "import_errors": bag.import_errors,
    "dag_ids": sorted(bag.dag_ids),
    "dag_files": sorted(list_py_file_paths(dags)),
    "transform_tasks": sorted(transform.task_ids) if transform else [],
    "dbt_executable": str(producer.dbt_executable_path) if producer else None,
    "dbt_project_dir": str(dbt_project.DBT_PROJECT_DIR),
    "dbt_project_module": dbt_project.__file__,
    "modules_from_repo": sorted(
        name for name, module in sys.modules.items()
        if (getattr(module, "__file__", None) or "").startswith(os.environ["REPO"] + "/")
        and "/.venv" not in module.__file__
    ),
}))
"""


def test_every_dag_parses_from_the_bundle_alone(airflow_home: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # A bare environment: no PYTHONPATH, no connection, no Variable; only what MWAA and startup.sh set.
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(elsewhere),
        "PYTHONDONTWRITEBYTECODE": "1",
        "REPO": str(REPO),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(airflow_home / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(airflow_home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "RETAIL_DBT_EXECUTABLE": str(DBT_EXECUTABLE),
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    }
    result = subprocess.run(
        [str(VENV_PYTHON), "-c", PARSE_PROBE], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert lines, result.stdout[-3000:]
    parsed = json.loads(lines[-1].removeprefix("RESULT "))

    assert parsed["import_errors"] == {}
    assert {"retail_ingest", "retail_ingest_file", "retail_transform"} <= set(parsed["dag_ids"])
    # .airflowignore keeps the DAG processor out of include/: only the DAG files are scanned.
    assert parsed["dag_files"] == sorted(
        str(airflow_home / "dags" / path.name) for path in (REPO / "dags").glob("*.py")
    )
    # The code came from the bundle, and found the dbt project beside it there.
    assert parsed["modules_from_repo"] == []
    assert parsed["dbt_project_module"] == str(
        airflow_home / "dags" / "include" / "retail" / "transform" / "dbt_project.py"
    )
    assert parsed["dbt_project_dir"] == str(airflow_home / "dags" / "include" / "dbt")
    assert parsed["dbt_executable"] == str(DBT_EXECUTABLE)
    manifest = json.loads((airflow_home / "dags" / "include" / "dbt" / "target" / "manifest.json").read_text())
    models = [node["name"] for node in manifest["nodes"].values() if node["resource_type"] == "model"]
    assert models
    for model in models:
        assert {f"dbt.{model}.run", f"dbt.{model}.test"} <= set(parsed["transform_tasks"])


# -- S3 and CloudFormation, against moto -------------------------------------------------------------


def keys_and_versions(s3, bucket: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for version in s3.list_object_versions(Bucket=bucket).get("Versions", []):
        found.setdefault(version["Key"], []).append(version["VersionId"])
    return found


def test_upload_syncs_the_bundle_into_the_mwaa_bucket(stack, tmp_path: Path) -> None:
    s3 = stack.boto3_client("s3")
    bucket = "airflow-retail-test"
    versioned_bucket(s3, bucket)
    out = tmp_path / "bundle"

    first = run_script("upload", "--bucket", bucket, "--out", str(out), moto_url=stack.moto_url)
    assert first.returncode == 0, first.stderr
    live = {entry["Key"] for entry in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    local_dags = {"dags/" + path.relative_to(out / "dags").as_posix() for path in (out / "dags").rglob("*")}
    assert {key for key in live if key.startswith("dags/")} == {key for key in local_dags if (out / key).is_file()}
    assert {
        "dags/retail_ingest.py",
        "dags/retail_transform.py",
        "dags/.airflowignore",
        "dags/include/retail/transform/dbt_project.py",
        "dags/include/dbt/target/manifest.json",
        "plugins.zip",
        "requirements.txt",
        "startup.sh",
    } <= live
    versions = keys_and_versions(s3, bucket)
    for key in ("plugins.zip", "requirements.txt", "startup.sh"):
        assert versions[key][0] not in ("", "null")
    assert (
        s3.get_object(Bucket=bucket, Key="requirements.txt")["Body"].read() == (out / "requirements.txt").read_bytes()
    )

    # A file gone from the bundle since the last upload; everything else unchanged.
    s3.put_object(Bucket=bucket, Key="dags/retired_dag.py", Body=b"# removed from the project\n")
    second = run_script("upload", "--bucket", bucket, "--out", str(out), moto_url=stack.moto_url)
    assert second.returncode == 0, second.stderr
    live_after = {entry["Key"] for entry in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert "dags/retired_dag.py" not in live_after
    assert live_after == live
    # Unchanged files were not uploaded again: no new object versions (and so no MWAA update).
    after = keys_and_versions(s3, bucket)
    for key in live:
        assert after[key] == versions[key], key


STAND_IN_TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Description: Stand-in for infra/retail-pipeline.yaml with its parameters and outputs, that moto can create.
Parameters:
  EnvironmentName: {Type: String, Default: retail}
  AlertEmail: {Type: String, Default: ""}
  AirflowVersion: {Type: String, Default: "3.3.1"}
  RequirementsS3ObjectVersion: {Type: String, Default: ""}
  PluginsS3ObjectVersion: {Type: String, Default: ""}
  StartupScriptS3ObjectVersion: {Type: String, Default: ""}
Conditions:
  HasBundle: !And
    - !Not [!Equals [!Ref RequirementsS3ObjectVersion, ""]]
    - !Not [!Equals [!Ref PluginsS3ObjectVersion, ""]]
    - !Not [!Equals [!Ref StartupScriptS3ObjectVersion, ""]]
Resources:
  DataBucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Sub "${EnvironmentName}-data"
Outputs:
  DataBucketName: {Value: !Ref DataBucket}
  MwaaBucketName: {Value: MWAA_BUCKET}
  MwaaEnvironmentName:
    Condition: HasBundle
    Value: !Ref EnvironmentName
  AirflowUiUrl:
    Condition: HasBundle
    Value: !Sub "https://${EnvironmentName}.airflow.example"
"""


def test_deploy_and_teardown_with_a_stand_in_template(stack, tmp_path: Path) -> None:
    """The deploy flow end to end, but for the MWAA environment itself, which moto cannot create."""
    s3, cfn = stack.boto3_client("s3"), stack.boto3_client("cloudformation")
    # moto's CloudFormation ignores a bucket's versioning: the MWAA bucket is made here, as versioned as in AWS.
    mwaa_bucket = "airflow-retail-deploy-test"
    versioned_bucket(s3, mwaa_bucket)
    template = tmp_path / "template.yaml"
    template.write_text(STAND_IN_TEMPLATE.replace("MWAA_BUCKET", mwaa_bucket))
    name = "retail-deploy-test"
    deploy = ["deploy", "--stack", name, "--template", str(template), "--out", str(tmp_path / "bundle")]

    first = run_script(*deploy, "--alert-email", "ops@example.com", moto_url=stack.moto_url)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Airflow UI: https://retail-deploy-test.airflow.example" in first.stdout
    parameters = {
        item["ParameterKey"]: item["ParameterValue"]
        for item in cfn.describe_stacks(StackName=name)["Stacks"][0]["Parameters"]
    }
    live = {key: versions[0] for key, versions in keys_and_versions(s3, mwaa_bucket).items()}
    assert parameters["EnvironmentName"] == name
    assert parameters["AlertEmail"] == "ops@example.com"
    assert parameters["RequirementsS3ObjectVersion"] == live["requirements.txt"]
    assert parameters["PluginsS3ObjectVersion"] == live["plugins.zip"]
    assert parameters["StartupScriptS3ObjectVersion"] == live["startup.sh"]
    assert "dags/retail_ingest.py" in live

    # Deploying again without the email keeps it, and an unchanged bundle changes nothing.
    second = run_script(*deploy, moto_url=stack.moto_url)
    assert second.returncode == 0, second.stdout + second.stderr
    again = {
        item["ParameterKey"]: item["ParameterValue"]
        for item in cfn.describe_stacks(StackName=name)["Stacks"][0]["Parameters"]
    }
    assert again == parameters
    # An upload through the stack finds the environment already on these versions: nothing to deploy.
    upload = run_script("upload", "--stack", name, "--out", str(tmp_path / "bundle"), moto_url=stack.moto_url)
    assert upload.returncode == 0, upload.stderr
    assert "not the version" not in upload.stdout

    s3.put_object(Bucket=f"{name}-data", Key="incoming/sample.csv", Body=b"InvoiceNo\n")
    refused = run_script("teardown", "--stack", name, moto_url=stack.moto_url, stdin="no\n")
    assert refused.returncode != 0
    assert cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"].endswith("_COMPLETE")

    teardown = run_script("teardown", "--stack", name, "--yes", moto_url=stack.moto_url)
    assert teardown.returncode == 0, teardown.stdout + teardown.stderr
    assert not [
        stack_
        for stack_ in cfn.list_stacks()["StackSummaries"]
        if stack_["StackName"] == name and stack_["StackStatus"] != "DELETE_COMPLETE"
    ]
    assert s3.list_object_versions(Bucket=mwaa_bucket).get("Versions", []) == []
    assert "log-group-name-prefix airflow-retail-deploy-test-" in teardown.stdout


def test_stack_parameters_keep_what_an_update_does_not_set() -> None:
    declared = {"EnvironmentName", "AlertEmail", "RequirementsS3ObjectVersion", "DbInstanceClass"}
    parameters = stack_parameters(
        declared, {"RequirementsS3ObjectVersion": "v2", "AlertEmail": None}, previous={"EnvironmentName", "AlertEmail"}
    )
    assert parameters == [
        {"ParameterKey": "AlertEmail", "UsePreviousValue": True},
        {"ParameterKey": "EnvironmentName", "UsePreviousValue": True},
        {"ParameterKey": "RequirementsS3ObjectVersion", "ParameterValue": "v2"},
    ]  # DbInstanceClass: neither given nor set before, so the template's default
    with pytest.raises(DeployError, match="NoSuchParameter"):
        stack_parameters(declared, {"NoSuchParameter": "x"}, previous=set())
