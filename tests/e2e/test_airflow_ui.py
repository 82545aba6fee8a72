"""The UI path, for real: scheduler, dag-processor, triggerer (running the deferred sensor) and api-server.

In order: a user triggers ingest from the UI's params form in a headless Chromium; then an upload of the
real workbook runs ingest and transform with no other action, checked through the REST API and the
warehouse; then `down` leaves no process behind.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from devstack import REPO_ROOT, sample
from devstack.airflow_services import ADMIN_USER, AIRFLOW_SERVICES
from devstack.aws import BUCKET
from devstack.processes import group_members
from devstack.stack import Stack
from devstack.state import port_open
from tests.chromium import CHROMIUM, CHROMIUM_ARGS
from tests.live_stack import devstack_cli, wait_for_ledger

pytestmark = pytest.mark.e2e


# The UI is a single-page app: each page waits on several API calls to a one-worker api-server that shares
# two cores with the scheduler, the dag-processor and the triggerer. Playwright's 5 s default for `expect`
# is too short for a first page on a busy CI machine.
UI_TIMEOUT_MS = 60_000
INGEST_DAGS = ("retail_ingest", "retail_ingest_events", "retail_ingest_file")
DBT_MODELS = (
    "transactions",
    "transactions_set_aside",
    "dim_date",
    "dim_product",
    "dim_customer",
    "fact_sales_daily",
    "fact_returns_daily",
    "monthly_sales_summary",
    "country_sales",
    "product_performance",
    "customer_rfm",
)


def _record_browser_trouble(page) -> list[str]:
    """Collect the page's navigations, console errors and HTTP failures, to explain a failed browser step."""
    trouble: list[str] = []

    def navigated(frame) -> None:
        if frame == page.main_frame:
            trouble.append(f"navigated to {frame.url}")

    def console(message) -> None:
        if message.type == "error":
            trouble.append(f"console error: {message.text}")

    def response(answer) -> None:
        if answer.status >= 400:
            trouble.append(f"HTTP {answer.status} {answer.request.method} {answer.url}")

    page.on("framenavigated", navigated)
    page.on("console", console)
    page.on("pageerror", lambda error: trouble.append(f"page error: {error}"))
    page.on("response", response)
    page.on("requestfailed", lambda request: trouble.append(f"request failed: {request.method} {request.url}"))
    return trouble


def _log_errors(log: Path, last: int = 20) -> list[str]:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return [line for line in lines if "ERROR" in line or "Traceback" in line or "locked" in line][-last:]


def _sign_in(page, stack: Stack, screenshot: Path | None = None) -> None:
    """Log in to the UI as the stack's admin, through its login form."""
    from playwright.sync_api import expect

    page.goto(stack.api_url + "/")
    # The UI sends each of its first, unauthorised, calls to the login page: let those settle, so the
    # form filled in is the one that stays.
    page.wait_for_url("**/auth/login**")
    page.wait_for_load_state("networkidle")
    page.get_by_label("Username").fill(ADMIN_USER)
    page.get_by_label("Password").fill(stack.state.admin_password)
    sign_in = page.get_by_role("button", name="Sign in")
    expect(sign_in).to_be_enabled()
    if screenshot:
        page.screenshot(path=screenshot)
    sign_in.click()
    page.wait_for_url(lambda url: "/auth/login" not in url)  # the login's own redirect lands first


def _browser_failure(page, shots: Path, trouble: list[str], stack: Stack) -> AssertionError:
    """What CI shows of a failed browser step: where the browser was and what went wrong there."""
    page.screenshot(path=shots / "failure.png", full_page=True)
    return AssertionError(
        f"browser at {page.url} ({page.title()!r}); screenshot {shots / 'failure.png'}\n"
        f"page text: {page.locator('body').inner_text()[:800]!r}\n"
        "navigations, console errors and failed requests:\n"
        + "\n".join(trouble[-40:] or ["(none)"])
        + "\napi-server errors:\n"
        + "\n".join(_log_errors(stack.home / "logs" / "airflow-api-server.log") or ["(none)"])
    )


def _wait_for_waiting_run(api, *, timeout: float) -> str:
    """The id of the `retail_ingest` run whose sensor is deferred, waiting for uploads."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in api.dag_runs("retail_ingest", state="running"):
            sensor = api.get(f"/dags/retail_ingest/dagRuns/{run['dag_run_id']}/taskInstances/wait_for_files")
            if sensor["state"] == "deferred":
                return run["dag_run_id"]
        time.sleep(2)
    raise TimeoutError(f"no retail_ingest run was waiting (sensor deferred) within {timeout:.0f} s")


def _after(moment: datetime):
    return lambda run: datetime.fromisoformat(run["run_after"]) >= moment


def test_the_ui_shows_the_dags_their_docs_owner_tags_the_asset_link_and_a_task_per_dbt_model(
    live_stack: Stack,
) -> None:
    api = live_stack.api()
    for dag_id in (*INGEST_DAGS, "retail_transform"):
        details = api.get(f"/dags/{dag_id}/details")
        assert details["doc_md"].lstrip().startswith("### Retail")
        assert details["owners"] == ["data-engineering"]
        assert "retail" in {tag["name"] for tag in details["tags"]}
        assert details["is_paused"] is False

    (asset,) = api.get("/assets", name_pattern="retail_bronze_transactions")["assets"]
    assert sorted((task["dag_id"], task["task_id"]) for task in asset["producing_tasks"]) == [
        (dag_id, "announce_loads") for dag_id in INGEST_DAGS
    ]
    assert [dag["dag_id"] for dag in asset["scheduled_dags"]] == ["retail_transform"]

    tasks = {task["task_id"] for task in api.get("/dags/retail_transform/tasks")["tasks"]}
    for model in DBT_MODELS:
        assert {f"dbt.{model}.run", f"dbt.{model}.test"} <= tasks, model


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)")
def test_a_user_logs_in_and_triggers_ingest_for_one_key_from_the_params_form(
    live_stack: Stack, tmp_path: Path, artifacts: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)
    shots = artifacts / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    key = "incoming/browser_sample.xlsx"
    live_stack.boto3_client("s3").upload_file(str(sample.sample_workbook(tmp_path)), BUCKET, key)
    triggered_at = datetime.now(UTC)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        trouble = _record_browser_trouble(page)
        try:
            _sign_in(page, live_stack, shots / "01-login.png")

            # As a user would: from the home page the login lands on, through the navigation.
            page.get_by_role("link", name="Dags").first.click()
            for dag_id in (*INGEST_DAGS, "retail_transform"):
                expect(page.get_by_role("link", name=dag_id, exact=True).first).to_be_visible()
            page.screenshot(path=shots / "02-dag-list.png")
            page.screenshot(path=REPO_ROOT / "docs" / "dags.png")  # README's picture of the DAGs

            page.get_by_role("link", name="retail_ingest_file", exact=True).first.click()
            expect(page.get_by_text("data-engineering").first).to_be_visible()
            page.screenshot(path=shots / "03-ingest-dag.png")

            page.get_by_role("button", name="Trigger").first.click()
            dialog = page.get_by_role("dialog")
            expect(dialog.get_by_text("S3 key")).to_be_visible()
            dialog.locator("#element_key").fill(key)
            page.screenshot(path=shots / "04-trigger-form.png")
            dialog.get_by_role("button", name="Trigger").click()
            expect(dialog).to_be_hidden()

            api = live_stack.api()
            manual = api.wait_for_run(
                "retail_ingest_file",
                lambda run: _after(triggered_at)(run) and run["run_type"] == "manual",
                timeout=240,
            )
            assert manual["conf"] == {"key": key}
            page.goto(f"{live_stack.api_url}/dags/retail_ingest_file/runs/{manual['dag_run_id']}")
            expect(page.get_by_text("success", exact=False).first).to_be_visible()
            page.screenshot(path=shots / "05-run-succeeded.png", full_page=True)
        except Exception as error:
            # CI shows the output, not the screenshot: say where the browser was and what went wrong there.
            raise _browser_failure(page, shots, trouble, live_stack) from error
        finally:
            browser.close()

    assert manual["state"] == "success"
    # The file is loaded once: by the manual run, or by the waiting DAG's run if it took the file first (the
    # manual run then finds it filed and skips).
    with psycopg.connect(live_stack.warehouse_url()) as conn:
        statuses = conn.execute("select status from bronze.load_ledger where source_key = %s", (key,)).fetchall()
    assert statuses == [("loaded",)]


def test_a_named_file_run_starts_at_once_beside_the_waiting_run(live_stack: Stack, tmp_path) -> None:
    """`retail_ingest` always has a run waiting; a `retail_ingest_file` run must not queue behind it.

    The case that once queued for the sensor's hour: the named file was already taken by the waiting DAG.
    """
    api = live_stack.api()
    key = "incoming/already_taken.xlsx"
    live_stack.boto3_client("s3").upload_file(str(sample.sample_workbook(tmp_path)), BUCKET, key)
    wait_for_ledger(live_stack, key, timeout=240)
    waiting = _wait_for_waiting_run(api, timeout=120)

    triggered = api.post("/dags/retail_ingest_file/dagRuns", {"logical_date": None, "conf": {"key": key}})
    run_id = triggered["dag_run_id"]
    named = api.wait_for_run("retail_ingest_file", lambda run: run["dag_run_id"] == run_id, timeout=120)

    assert named["state"] == "success", named
    mapped = api.get(f"/dags/retail_ingest_file/dagRuns/{run_id}/taskInstances/ingest_file/listMapped")
    (ingest_file,) = mapped["task_instances"]
    assert ingest_file["state"] == "skipped"  # already handled: filed under processed/
    still = api.get(f"/dags/retail_ingest/dagRuns/{waiting}")
    assert still["state"] == "running", "the named-file run was not run beside the waiting run"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)")
def test_the_dbt_docs_open_inside_the_airflow_ui(live_stack: Stack, artifacts: Path) -> None:
    """Browse > dbt docs shows the site `dbt_project parse` built, served by Cosmos's plugin, in the UI's frame."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)
    shots = artifacts / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        trouble = _record_browser_trouble(page)
        try:
            _sign_in(page, live_stack)
            page.get_by_role("button", name="Browse").click()
            page.get_by_role("menuitem", name="dbt docs", exact=True).click()
            page.wait_for_url("**/plugin/dbt-docs")
            docs = page.frame_locator("iframe").first
            expect(docs.get_by_text("Welcome to the auto-generated documentation").first).to_be_visible()
            # The site read the project's manifest: a model and its description, found by the site's search.
            docs.get_by_placeholder("Search for models...").fill("monthly_sales_summary")
            expect(docs.get_by_text("GRAIN: one row per calendar month").first).to_be_visible()
            page.screenshot(path=shots / "06-dbt-docs.png")
        except Exception as error:
            raise _browser_failure(page, shots, trouble, live_stack) from error
        finally:
            browser.close()
    served = [line for line in trouble if "/cosmos/retail/" in line and line.startswith("HTTP ")]
    # dbt's own index.html asks for two icons by an unrendered template URL ({{ getIcon(...) }}): its bug.
    assert [line for line in served if "getIcon" not in line] == [], served


@pytest.mark.real_data
def test_upload_of_the_real_workbook_runs_ingest_then_transform_with_no_other_action(
    live_stack: Stack, real_workbook: Path
) -> None:
    api = live_stack.api()
    live_stack.read_alerts()
    uploaded_at = datetime.now(UTC)
    clock = time.monotonic()

    upload = devstack_cli(live_stack, "upload", str(real_workbook))

    assert upload.returncode == 0, upload.stderr
    key = f"incoming/{real_workbook.name}"
    # The run that takes the file is the one already waiting when it lands: find it by the ledger.
    ((_, _, loaded_by, _),) = wait_for_ledger(live_stack, key, timeout=300)
    ingest = api.wait_for_run("retail_ingest", lambda run: run["dag_run_id"] == loaded_by, timeout=120)
    assert ingest["state"] == "success", ingest
    transform = api.wait_for_run(
        "retail_transform",
        lambda run: _after(uploaded_at)(run) and run["run_type"] == "asset_triggered",
        timeout=480,
    )
    seconds = time.monotonic() - clock
    assert transform["state"] == "success", transform
    print(f"upload to gold built, tested and announced: {seconds:.0f} s")

    with psycopg.connect(live_stack.warehouse_url()) as conn:
        ledger = conn.execute(
            "select status, rows_loaded from bronze.load_ledger where source_key = %s", (key,)
        ).fetchall()
        silver = conn.execute("select count(*) from silver.transactions where source_key = %s", (key,)).fetchone()
        months = conn.execute(
            "select count(*) from gold.monthly_sales_summary where month_start between '2010-12-01' and '2011-12-01'"
        ).fetchone()
    assert ledger == [("loaded", 541_909)]
    assert silver[0] > 500_000
    assert months == (13,)

    alerts = live_stack.read_alerts()
    subjects = [alert["subject"] for alert in alerts]
    # The run may also have taken a file that was waiting beside it: look for this one's line.
    summaries = [alert["message"] for alert in alerts if alert["subject"].startswith("[retail] Loaded ")]
    assert any(f"- {key}: loaded, 541,909 rows in " in summary for summary in summaries), alerts
    assert any(subject.startswith("[retail] Transform done: ") for subject in subjects), subjects

    health = devstack_cli(live_stack, "health")
    assert health.returncode == 0, health.stdout + health.stderr
    assert "pipeline OK" in health.stdout


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)")
def test_the_gold_report_opens_offline_with_no_console_errors(
    live_stack: Stack, tmp_path: Path, artifacts: Path
) -> None:
    """The report a transform run wrote to the bucket, opened from a file with the network cut: every chart draws,
    the console stays clean. Its screenshot is README's (docs/gold-report.png)."""
    from playwright.sync_api import expect, sync_playwright

    from devstack.fetch_gold_report import fetch_latest

    # The transform runs above (on the sample, then the real workbook) each wrote one; the last is latest.html.
    deadline = time.monotonic() + 300
    while True:
        try:
            report, _ = fetch_latest(live_stack, tmp_path / "gold-report.html")
            break
        except FileNotFoundError:
            assert time.monotonic() < deadline, "no transform run wrote reports/latest.html within 300 s"
            time.sleep(5)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        outside: list[str] = []

        def offline(route) -> None:  # anything but the file itself would be a CDN or a call home
            if route.request.url.startswith("file://"):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        context.route("**/*", offline)
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(report.as_uri())
        charts = page.locator(".js-plotly-plot .main-svg")
        expect(page.locator(".js-plotly-plot")).to_have_count(5)
        expect(charts.first).to_be_visible()
        expect(page.locator("#data-quality")).to_contain_text("dbt data tests")
        page.screenshot(path=REPO_ROOT / "docs" / "gold-report.png", full_page=True)
        browser.close()
    assert problems == []
    assert outside == []


def test_down_stops_every_process_it_started(live_stack: Stack) -> None:
    pids = {service: int(live_stack.airflow.pid_file(service).read_text()) for service in AIRFLOW_SERVICES}
    ports = [live_stack.state.api_port, live_stack.state.moto_port, live_stack.state.postgres_port]
    assert all(port_open(port) for port in ports)

    down = devstack_cli(live_stack, "down")

    assert down.returncode == 0, down.stderr
    assert [service for service, pid in pids.items() if group_members(pid)] == []
    assert [port for port in ports if port_open(port)] == []
    marker = f"AIRFLOW_HOME={live_stack.airflow_home}".encode()
    left = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                left.append(json.dumps({"pid": environ.parent.name, "cmd": (environ.parent / "cmdline").read_text()}))
        except OSError:
            continue
    assert left == []
