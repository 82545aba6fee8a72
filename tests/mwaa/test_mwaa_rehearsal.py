"""Amazon MWAA, rehearsed (issue 12): the bundle run the way MWAA runs it, configured only from Secrets Manager.

One flow on one compose project, in named and timed steps: the bundle built as ``make mwaa-bundle`` builds it; moto,
a private PostgreSQL standing in for RDS, the metadata database and the broker up; everything the CloudFormation
template creates made from the template itself (``mwaa.rehearsal``), the bundle uploaded with the deploy's own code;
scheduler, triggerer, dag-processor, api-server and worker started from the MWAA stand-in image, which takes nothing
but that bundle (requirements installed, plugins.zip unpacked, startup.sh sourced, as MWAA does). Then the real
workbook through to gold, both SNS messages, a dags-only change picked up as on MWAA, and the three deploy-breaking
changes, each failing with a message that names its cause. ``down -v`` (in the fixture's teardown) leaves nothing.
"""

from __future__ import annotations

import copy
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from devstack import sample
from devstack.airflow_api import AirflowApi
from devstack.aws import read_alerts
from include.retail.platform import config
from mwaa.rehearsal import delete_secret, put_secret, render_deployment
from mwaa.template import load_template
from tests.mwaa.rehearsal_stack import (
    AIRFLOW_HOME,
    BACKING_SERVICES,
    Rehearsal,
    import_errors,
    run_report,
    task_instance,
    task_log,
    wait_for,
)

pytestmark = pytest.mark.mwaa

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL_WORKBOOK = REPO_ROOT.parent / "shared" / "data" / "online_retail.xlsx"
REAL_WORKBOOK_ROWS = 541_909
MODELS = REPO_ROOT / "include" / "dbt" / "models"
DAG_IDS = ("retail_ingest", "retail_ingest_file", "retail_transform")
# Each component installs requirements.txt from PyPI and builds dbt's virtualenv (startup.sh) before it starts.
UP_TIMEOUT = 1500
PARSE_TIMEOUT = 300
INGEST_TIMEOUT = 900
TRANSFORM_TIMEOUT = 1200
# MWAA syncs dags/ every few tens of seconds; the stand-in every ~30 s, then the DAG processor parses.
SYNC_TIMEOUT = 300
BREAK_TIMEOUT = 300
# The breaking changes.
LEFT_OUT_FILE = "include/retail/ingest/load.py"
LEFT_OUT_MODULE = "include.retail.ingest.load"
MISSING_CONNECTION = config.WAREHOUSE_TRANSFORM_CONN_ID
MISSING_PACKAGE, MISSING_MODULE = "astronomer-cosmos", "cosmos"


def test_the_bundle_runs_on_an_mwaa_shaped_deployment_made_from_the_template(rehearsal: Rehearsal, tmp_path) -> None:
    if not REAL_WORKBOOK.is_file():
        pytest.skip(f"the real Online Retail workbook is not at {REAL_WORKBOOK} (../shared/data is absent)")
    from tests.compose.standins import ensure_images

    with rehearsal.step("bundle built (python -m mwaa bundle)"):
        rehearsal.build_bundle()
    with rehearsal.step("stand-in images"):
        ensure_images()
    rehearsal.up("moto, rds, metadata-db, redis", build=False, services=BACKING_SERVICES)
    with rehearsal.step("provisioned from the template, bundle uploaded"):
        deployment = rehearsal.provision()
    rehearsal.up("Airflow services (cold start)", build=False, wait_timeout=UP_TIMEOUT)
    record_startup_script(rehearsal, "cold start")

    api = rehearsal.api()
    with rehearsal.step("DAGs parsed without import errors, unpaused"):
        wait_for_dags(api)
        for dag_id in DAG_IDS:  # MWAA creates DAGs paused; the user unpauses them (docs/mwaa.md)
            api.patch(f"/dags/{dag_id}", {"is_paused": False})

    with rehearsal.step("real workbook: retail_ingest, then retail_transform"):
        key = f"incoming/{REAL_WORKBOOK.name}"
        uploaded_at = upload(rehearsal, REAL_WORKBOOK, key)
        wait_for_ingest(rehearsal, api, key, since=uploaded_at)
        wait_for_transform(api, since=uploaded_at)
    with rehearsal.step("warehouse (bronze, silver, gold) and both SNS messages checked"):
        check_warehouse(rehearsal, key)
        check_alerts(rehearsal, key, REAL_WORKBOOK_ROWS, transform=True)

    with rehearsal.step("dags-only change uploaded (make mwaa-upload) and picked up"):
        marker = f"Rehearsal marker {rehearsal.project}"
        edit_dag_doc(rehearsal.bundle / "dags" / "retail_ingest_file.py", marker)
        pristine = rehearsal.bundle.with_name("bundle-pristine")
        shutil.copytree(rehearsal.bundle, pristine)
        root_versions = dict(rehearsal.versions)
        assert rehearsal.upload() == root_versions, "a dags-only change must leave the root files' versions alone"
        wait_for_synced(rehearsal, "dags/retail_ingest_file.py", containing=marker)
        wait_for(
            "the new doc_md of retail_ingest_file through the REST API",
            lambda: marker in (api.get("/dags/retail_ingest_file/details").get("doc_md") or ""),
            timeout=SYNC_TIMEOUT,
        )
    # From here on, the named-file DAG alone takes files: the waiting DAG would race it for each upload.
    stop_waiting_ingest(api)
    with rehearsal.step("after the change: retail_ingest_file loads a second file"):
        second = sample.sample_workbook(tmp_path)
        rows = len(sample.sample_rows())
        second_key = f"incoming/{second.name}"
        upload(rehearsal, second, second_key)
        run_id = trigger_ingest_file(api, second_key)
        run = api.wait_for_run("retail_ingest_file", lambda run: run["dag_run_id"] == run_id, timeout=INGEST_TIMEOUT)
        assert run["state"] == "success", run_report(api, "retail_ingest_file", run_id)
        assert ledger(rehearsal, second_key)[:2] == ["loaded", str(rows)]
        check_alerts(rehearsal, second_key, rows, transform=False)

    causes = {}
    with rehearsal.step("break (c): a file left out of the bundle"):
        (rehearsal.bundle / "dags" / LEFT_OUT_FILE).unlink()
        rehearsal.upload()
        wait_for_synced(rehearsal, f"dags/{LEFT_OUT_FILE}", present=False)
        causes["c"] = first_failure(api, "ingest_file", map_index=0, expected=f"No module named '{LEFT_OUT_MODULE}'")
        shutil.copyfile(pristine / "dags" / LEFT_OUT_FILE, rehearsal.bundle / "dags" / LEFT_OUT_FILE)
        rehearsal.upload()
        wait_for_synced(rehearsal, f"dags/{LEFT_OUT_FILE}")

    with rehearsal.step("break (b): a connection the template does not create"):
        removed = secrets_left_out(deployment, connection=MISSING_CONNECTION)
        secretsmanager = rehearsal.aws("secretsmanager")
        for secret in removed:  # what the stack update with that template deletes
            delete_secret(secretsmanager, secret)
        causes["b"] = first_failure(
            api, "apply_warehouse_ddl", expected=f"The conn_id `{MISSING_CONNECTION}` isn't defined"
        )
        for secret in removed:
            put_secret(secretsmanager, secret)

    with rehearsal.step("break (a): a package missing from requirements.txt (upload, environment update)"):
        drop_requirement(rehearsal.bundle / "requirements.txt", MISSING_PACKAGE)
        before = set(rehearsal.container_ids("dag-processor"))
        versions = rehearsal.upload()
        assert versions["requirements.txt"] != root_versions["requirements.txt"]
        # The deploy hands the new version to the environment, which restarts every component (rehearsal.env
        # changed, so Compose recreates each Airflow container; moto and the databases keep their state).
        rehearsal.up("break (a): Airflow services restarted", build=False, wait_timeout=UP_TIMEOUT)
        assert not before & set(rehearsal.container_ids("dag-processor")), "the dag-processor was not restarted"
        api = rehearsal.api()
        error = wait_for(
            f"an import error of retail_transform naming {MISSING_MODULE}",
            lambda: [
                error
                for error in import_errors(api)
                if error["filename"].endswith("retail_transform.py")
                and f"No module named '{MISSING_MODULE}'" in error["stack_trace"]
            ],
            timeout=BREAK_TIMEOUT,
        )
        causes["a"] = error[0]["stack_trace"].strip().splitlines()[-1]
    record_startup_script(rehearsal, "restart")
    for name, cause in sorted(causes.items()):
        print(f"[mwaa] break ({name}) failed with: {cause}", flush=True)


# -- steps ---------------------------------------------------------------------------------------------------------


def record_startup_script(rehearsal: Rehearsal, when: str) -> None:
    """How long startup.sh (the dbt virtualenv) took on each component, from its log, into the timings."""
    seconds = rehearsal.startup_seconds()
    for service, value in sorted(seconds.items()):
        rehearsal.record(f"startup.sh on {service} ({when})", value)
    assert {"scheduler", "worker"} <= set(seconds), f"no `startup.sh took N s` in the logs: {seconds}"


def wait_for_dags(api: AirflowApi) -> None:
    """The three DAGs parsed, and no import error (which would name the file and the exception)."""

    def parsed() -> bool:
        errors = import_errors(api)
        assert not errors, "import errors:\n" + "\n".join(f"{e['filename']}: {e['stack_trace']}" for e in errors)
        found = {dag["dag_id"] for dag in api.get("/dags", dag_id_pattern="retail_", limit=100)["dags"]}
        return set(DAG_IDS) <= found

    wait_for(f"the DAGs {DAG_IDS} parsed", parsed, timeout=PARSE_TIMEOUT)


def upload(rehearsal: Rehearsal, path: Path, key: str) -> datetime:
    """Put ``path`` under ``key`` in the data bucket, as a user would; returns when it landed."""
    assert rehearsal.deployment is not None
    uploaded_at = datetime.now(UTC)
    rehearsal.aws("s3").upload_file(str(path), rehearsal.deployment.data_bucket, key)
    return uploaded_at


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def ledger(rehearsal: Rehearsal, key: str) -> list[str] | None:
    """The latest ledger row of ``key``: status, rows loaded, run id, error."""
    rows = rehearsal.psql(
        "select status, rows_loaded, airflow_run_id, coalesce(error, '') from bronze.load_ledger"
        f" where source_key = {literal(key)} order by finished_at desc limit 1"
    )
    return rows[0] if rows else None


def wait_for_ingest(rehearsal: Rehearsal, api: AirflowApi, key: str, *, since: datetime) -> None:
    """The waiting `retail_ingest` run takes the upload and succeeds; fails at once on a failed load or run."""

    def loaded() -> bool:
        for run in api.dag_runs("retail_ingest", state="failed"):
            if run["end_date"] and datetime.fromisoformat(run["end_date"]) >= since:
                raise AssertionError(f"retail_ingest failed\n{run_report(api, 'retail_ingest', run['dag_run_id'])}")
        row = ledger(rehearsal, key)
        if row and row[0] != "loaded":
            raise AssertionError(f"{key} recorded {row}\n{run_report(api, 'retail_ingest', row[2])}")
        return bool(row) and api.get(f"/dags/retail_ingest/dagRuns/{row[2]}")["state"] == "success"

    wait_for(f"a successful retail_ingest run loading {key}", loaded, timeout=INGEST_TIMEOUT)


def wait_for_transform(api: AirflowApi, *, since: datetime) -> None:
    """The first `retail_transform` run the bronze Asset triggered after ``since``, which must succeed."""
    run = api.wait_for_run(
        "retail_transform",
        lambda run: run["run_type"] == "asset_triggered" and datetime.fromisoformat(run["run_after"]) >= since,
        timeout=TRANSFORM_TIMEOUT,
        poll=10,
    )
    assert run["state"] == "success", run_report(api, "retail_transform", run["dag_run_id"])


def check_warehouse(rehearsal: Rehearsal, key: str) -> None:
    """Bronze holds the workbook's rows; every dbt model is built (with rows, bar the set-aside rows); 13 months."""
    assert ledger(rehearsal, key)[:2] == ["loaded", str(REAL_WORKBOOK_ROWS)]
    count = f"select count(*) from bronze.retail_transactions where source_key = {literal(key)}"
    assert rehearsal.psql(count) == [[str(REAL_WORKBOOK_ROWS)]]
    models = sorted(f"{path.parent.name}.{path.stem}" for path in MODELS.glob("*/*.sql"))
    assert models, f"no dbt model under {MODELS}"
    missing = rehearsal.psql(
        "select name from unnest(array["
        + ", ".join(literal(name) for name in models)
        + "]) as name where to_regclass(name) is null"
    )
    assert missing == [], f"dbt models not built: {missing}"
    counts = rehearsal.psql(
        " union all ".join(f"select {literal(name)}, count(*) from {name}" for name in models) + " order by 1"
    )
    empty = [name for name, rows in counts if rows == "0" and name != "silver.transactions_set_aside"]
    assert empty == [], f"dbt models built empty: {empty}"
    assert rehearsal.psql("select count(*) from gold.monthly_sales_summary") == [["13"]]


def check_alerts(rehearsal: Rehearsal, key: str, rows: int, *, transform: bool) -> None:
    """The load summary naming ``key`` (and the transform's summary) reached the topic's subscribed inbox."""
    alerts = read_alerts(rehearsal.aws("sqs"))
    subjects = [alert["subject"] or "" for alert in alerts]
    summaries = [alert["message"] for alert in alerts if (alert["subject"] or "").startswith("[retail] Loaded ")]
    assert any(f"- {key}: loaded, {rows:,} rows" in summary for summary in summaries), alerts
    if transform:
        assert any(subject.startswith("[retail] Transform done: 13 months") for subject in subjects), subjects


def edit_dag_doc(path: Path, marker: str) -> None:
    """A user's dags-only change: a line added to the DAG's doc_md (its module docstring)."""
    heading = "### Retail ingest of one named file\n"
    text = path.read_text()
    assert heading in text, f"{path} no longer starts its doc with {heading!r}"
    path.write_text(text.replace(heading, f"{heading}\n_{marker}: a dags-only change._\n", 1))


def wait_for_synced(rehearsal: Rehearsal, relative: str, *, containing: str | None = None, present: bool = True):
    """Every component that reads dags/ has the uploaded state of ``relative`` (MWAA's periodic sync)."""
    path = f"{AIRFLOW_HOME}/{relative}"
    services = ("scheduler", "dag-processor", "triggerer", "worker")

    def synced() -> bool:
        return all(rehearsal.has_file(service, path, containing) == present for service in services)

    state = "present" if present else "gone"
    wait_for(f"{path} {state} in {', '.join(services)}", synced, timeout=SYNC_TIMEOUT, poll=10)


def stop_waiting_ingest(api: AirflowApi) -> None:
    """Pause `retail_ingest` and end its waiting run, as an operator would before loading files by name."""
    api.patch("/dags/retail_ingest", {"is_paused": True})
    for state in ("running", "queued"):
        for run in api.dag_runs("retail_ingest", state=state):
            api.patch(f"/dags/retail_ingest/dagRuns/{run['dag_run_id']}", {"state": "failed"})


def trigger_ingest_file(api: AirflowApi, key: str) -> str:
    return api.post("/dags/retail_ingest_file/dagRuns", {"logical_date": None, "conf": {"key": key}})["dag_run_id"]


def first_failure(api: AirflowApi, task_id: str, *, expected: str, map_index: int = -1) -> str:
    """Trigger `retail_ingest_file`, wait for ``task_id``'s first try to fail, and return its log line naming
    ``expected``; the run is then ended (failed) rather than left to its retries."""
    run_id = trigger_ingest_file(api, "incoming/rehearsal-break.xlsx")

    def failed_try() -> dict | None:
        instance = task_instance(api, "retail_ingest_file", run_id, task_id, map_index)
        if instance["state"] == "success":
            raise AssertionError(f"{task_id} succeeded: the break went unnoticed\n{report()}")
        return instance if instance["state"] in ("up_for_retry", "failed") else None

    def report() -> str:
        return run_report(api, "retail_ingest_file", run_id)

    try:
        instance = wait_for(f"{task_id} of run {run_id} failing", failed_try, timeout=BREAK_TIMEOUT, poll=3)
        log = task_log(api, "retail_ingest_file", run_id, task_id, instance["try_number"], map_index)
        assert expected in log, f"{task_id} failed without naming the cause ({expected!r}):\n{report()}"
    finally:
        api.patch(f"/dags/retail_ingest_file/dagRuns/{run_id}", {"state": "failed"})
    return next(line.strip() for line in log.splitlines() if expected in line)


def secrets_left_out(deployment, *, connection: str) -> list:
    """The secrets the deployment has and the template without ``connection``'s secret would not."""
    template = copy.deepcopy(load_template())
    target = deployment.secret(connection)
    del template["Resources"][target.logical_id]
    kept = {secret.name for secret in render_deployment(template, environment_name=deployment.environment_name).secrets}
    removed = [secret for secret in deployment.secrets if secret.name not in kept]
    assert [secret.name for secret in removed] == [target.name]
    return removed


def drop_requirement(path: Path, package: str) -> None:
    """requirements.txt without ``package`` (the user forgot it): every other line kept as it is."""
    lines = path.read_text().splitlines()

    def names(line: str) -> bool:
        stripped = line.split("#", 1)[0].strip()
        if not stripped or stripped.startswith("-"):
            return False
        return canonicalize_name(Requirement(stripped).name) == canonicalize_name(package)

    kept = [line for line in lines if not names(line)]
    assert len(kept) == len(lines) - 1, f"{path} does not list {package} exactly once"
    path.write_text("\n".join(kept) + "\n")
