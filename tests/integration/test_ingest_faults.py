"""Faults of the platform and hostile keys during ingest, against the real PostgreSQL and moto server.

Each error is either the file's fault (rejected once: quarantined with a report) or the platform's
(retried; after the last try recorded ``failed``, alerted once, and moved to failed/ until
someone moves it back to incoming/). Retries are shortened by patching the DAGs' tasks in
this process (``dag.test()`` runs them here), not by a setting production could pick up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from devstack.aws import BUCKET
from devstack.sample import HEADER, write_csv, write_workbook
from include.retail.ingest import filing, load, scratch
from include.retail.ingest.ledger import failed_files
from include.retail.platform import config

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def rows(count: int, invoice_start: int) -> list[list]:
    start = datetime(2011, 2, 1, 9, 0)
    return [
        [invoice_start + n, "85123A", f"ITEM {n}", 1 + n % 5, start + timedelta(minutes=n), 2.55, 17850.0, "France"]
        for n in range(count)
    ]


@pytest.fixture
def quick_retries(dags: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries after a second or two instead of 20 s and more, and alert retries as short."""
    for dag_id in ("retail_ingest", "retail_ingest_file"):
        for task in dags[dag_id].tasks:
            monkeypatch.setattr(task, "retry_delay", timedelta(seconds=1))
            monkeypatch.setattr(task, "max_retry_delay", timedelta(seconds=2))
    monkeypatch.setattr(config, "ALERT_RETRY_DELAYS", (0.5, 1, 2, 4))


@pytest.fixture
def ledger(stack) -> Callable[[str], list[tuple]]:
    """The ledger rows of a key, in order, over a fresh connection (PostgreSQL may have restarted)."""

    def rows_of(key: str) -> list[tuple]:
        with psycopg.connect(stack.warehouse_url(), autocommit=True) as conn:
            return conn.execute(
                "select status, rows_loaded, error from bronze.load_ledger where source_key = %s order by finished_at",
                (key,),
            ).fetchall()

    return rows_of


def bronze_rows(stack, key: str) -> int:
    with psycopg.connect(stack.warehouse_url(), autocommit=True) as conn:
        return conn.execute("select count(*) from bronze.retail_transactions where source_key = %s", (key,)).fetchone()[
            0
        ]


def scratch_folders_of(key: str) -> list[Path]:
    root = scratch.scratch_root()
    return sorted(root.glob(scratch.key_digest(key) + "-*")) if root.is_dir() else []


def test_postgres_down_during_the_load_is_retried_then_failed_once_and_set_aside_until_moved_back(
    quick_retries, stack, tmp_path, upload, run_ingest, keys_under, ledger, s3, monkeypatch
) -> None:
    key = upload(
        write_workbook(tmp_path / "pg_down.xlsx", {"Online Retail": [HEADER, *rows(6, 700000)]}),
        "incoming/pg_down.xlsx",
    )
    set_aside = "failed/pg_down.xlsx"
    real_load = load.load_into_bronze
    tries = []

    def load_while_postgres_stops(*args, **kwargs):
        tries.append(1)
        stack.postgres.stop()
        try:
            return real_load(*args, **kwargs)
        finally:
            stack.postgres.start()

    monkeypatch.setattr(load, "load_into_bronze", load_while_postgres_stops)
    run = run_ingest(key)

    assert run.state == "failed"
    assert len(tries) == 3  # the first try and two retries
    ((status, loaded, error),) = ledger(key)
    assert (status, loaded) == ("failed", 0)
    assert "platform fault, not the file" in error
    assert "connection" in error  # AdminShutdown: terminating connection due to administrator command
    assert bronze_rows(stack, key) == 0
    # Set aside, so that no waiting run takes it (and fails, and alerts) again: nothing is wrong with it.
    assert key not in keys_under("incoming/")
    assert set_aside in keys_under("failed/")
    # One failure alert (announce_loads may also announce batches earlier tests loaded without announcing).
    (alert,) = [alert for alert in run.alerts if "FAILED" in alert["subject"]]
    assert alert["subject"] == f"[retail] FAILED retail_ingest_file.ingest_file: {key}"
    assert "Try:    3 of 3" in alert["message"]
    assert f"recorded failed and moved to {set_aside}: move it back to {key}" in alert["message"]
    assert not scratch_folders_of(key)

    # The waiting DAG fires for another upload and takes only that one: no second alert, no row.
    monkeypatch.setattr(load, "load_into_bronze", real_load)
    other = upload(write_csv(tmp_path / "after_pg.csv", [HEADER, *rows(3, 700100)]), "incoming/after_pg.csv")
    waiting = run_ingest(None)

    assert waiting.state == "success"
    assert ledger(other) == [("loaded", 3, None)]
    assert [status for status, _, _ in ledger(key)] == ["failed"]
    assert not any(key in alert["subject"] + alert["message"] for alert in waiting.alerts)
    assert any(f"{other}: loaded" in alert["message"] for alert in waiting.alerts)
    with psycopg.connect(stack.warehouse_url(), autocommit=True) as conn:
        assert [file["key"] for file in failed_files(conn)] == [key]

    # Someone moves it back once the platform is fixed: the waiting DAG takes it, and the ledger no longer
    # lists it failed.
    s3.copy_object(Bucket=BUCKET, Key=key, CopySource={"Bucket": BUCKET, "Key": set_aside})
    s3.delete_object(Bucket=BUCKET, Key=set_aside)
    again = run_ingest(None)

    assert again.state == "success"
    assert [status for status, _, _ in ledger(key)] == ["failed", "loaded"]
    assert bronze_rows(stack, key) == 6
    with psycopg.connect(stack.warehouse_url(), autocommit=True) as conn:
        assert key not in {file["key"] for file in failed_files(conn)}


def _restart_moto(stack, reupload: dict[str, bytes]) -> None:
    """moto keeps its state in memory: after a restart, provision again and put back what S3 would have kept."""
    stack.moto.start()
    stack.moto.provision()
    client = stack.boto3_client("s3")
    for key, body in reupload.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=body)


def test_s3_down_during_the_move_is_retried_and_nothing_is_doubled(
    quick_retries, stack, tmp_path, upload, run_ingest, keys_under, ledger, monkeypatch
) -> None:
    path = write_workbook(tmp_path / "moto_move.xlsx", {"Online Retail": [HEADER, *rows(5, 700300)]})
    key = upload(path, "incoming/moto_move.xlsx")
    real_move = filing.move
    moves = []

    def move_while_s3_stops(s3, bucket, source, destination):
        moves.append(source)
        if len(moves) == 1:
            stack.moto.stop()
            try:
                return real_move(s3, bucket, source, destination)
            finally:
                _restart_moto(stack, {key: path.read_bytes()})
        return real_move(s3, bucket, source, destination)

    monkeypatch.setattr(filing, "move", move_while_s3_stops)
    run = run_ingest(key)

    assert run.state == "success"
    assert len(moves) == 2
    assert [status for status, _, _ in ledger(key)] == ["loaded", "duplicate"]  # the retry only finishes the move
    assert bronze_rows(stack, key) == 5
    assert key not in keys_under("incoming/")
    assert "processed/moto_move.xlsx" in keys_under("processed/")
    assert not any(alert["subject"].startswith("[retail] FAILED") for alert in run.alerts)


def test_s3_down_during_the_quarantine_is_retried_and_the_file_rejected_once(
    quick_retries, stack, tmp_path, upload, run_ingest, keys_under, ledger, monkeypatch
) -> None:
    path = write_csv(tmp_path / "moto_quarantine.csv", [["Nothing", "Useful"], ["a", "b"]])
    key = upload(path, "incoming/moto_quarantine.csv")
    real_quarantine = filing.quarantine
    quarantines = []

    def quarantine_while_s3_stops(s3, bucket, source, report):
        quarantines.append(source)
        if len(quarantines) == 1:
            stack.moto.stop()
            try:
                return real_quarantine(s3, bucket, source, report)
            finally:
                _restart_moto(stack, {key: path.read_bytes()})
        return real_quarantine(s3, bucket, source, report)

    monkeypatch.setattr(filing, "quarantine", quarantine_while_s3_stops)
    run = run_ingest(key)

    assert run.state == "failed"
    assert len(quarantines) == 2
    assert [status for status, _, _ in ledger(key)] == ["rejected"]
    assert key not in keys_under("incoming/")
    assert "quarantine/moto_quarantine.csv" in keys_under("quarantine/")
    (alert,) = run.alerts
    assert "Try:    2 of 3" in alert["message"]


def test_s3_down_while_alerting_retries_the_alert_and_sends_it_once(
    quick_retries, stack, tmp_path, upload, run_ingest, ledger, monkeypatch
) -> None:
    from include.retail.platform import alerts

    path = tmp_path / "notes.txt"
    path.write_text("not a retail file")
    key = upload(path, "incoming/alert_notes.txt")
    real_publish = alerts.publish
    attempts = []

    def publish_while_sns_stops(topic_arn, subject, message):
        attempts.append(subject)
        if len(attempts) == 1:
            stack.moto.stop()
            try:
                return real_publish(topic_arn, subject, message)
            finally:
                _restart_moto(stack, {})
        return real_publish(topic_arn, subject, message)

    monkeypatch.setattr(alerts, "publish", publish_while_sns_stops)
    run = run_ingest(key)

    assert run.state == "failed"
    assert len(attempts) == 2
    (alert,) = run.alerts
    assert alert["subject"] == f"[retail] FAILED retail_ingest_file.ingest_file: {key}"
    assert [status for status, _, _ in ledger(key)] == ["rejected"]


def _ledger_and_alert_text(ledger_rows: list[tuple], alerts: list[dict]) -> str:
    return " ".join([*(str(error) for _, _, error in ledger_rows), *(a["subject"] + a["message"] for a in alerts)])


def test_key_dot_dot_is_rejected_cleanly_once(tmp_path, upload, run_ingest, keys_under, read_json, ledger) -> None:
    """``incoming/..`` named the temp folder's parent as the local copy; now the copy is named by a hash."""
    key = upload(write_csv(tmp_path / "dots.csv", [HEADER, *rows(2, 700400)]), "incoming/..")

    run = run_ingest(key)

    assert run.state == "failed"
    ((status, _, error),) = ledger(key)
    assert status == "rejected"
    assert error == "unsupported file type '(none)': expected one of .xlsx, .csv"
    assert key not in keys_under("incoming/")
    assert read_json("quarantine/...report.json")["reason"] == error
    (alert,) = run.alerts
    assert "Try:    1 of 3" in alert["message"]  # final at once: no retry
    assert str(scratch.scratch_root()) not in _ledger_and_alert_text(ledger(key), run.alerts)
    assert not scratch_folders_of(key)


def test_a_300_byte_file_name_loads_as_its_content_says(
    tmp_path, upload, run_ingest, keys_under, ledger, stack
) -> None:
    name = "x" * 296 + ".csv"  # over the 255 bytes a local file name may have
    key = upload(write_csv(tmp_path / "long.csv", [HEADER, *rows(4, 700500)]), "incoming/" + name)

    run = run_ingest(key)

    assert run.state == "success"
    assert ledger(key) == [("loaded", 4, None)]
    assert bronze_rows(stack, key) == 4
    assert "processed/" + name in keys_under("processed/")
    assert not scratch_folders_of(key)


def test_a_300_byte_name_of_a_bad_file_is_rejected_without_a_local_path(
    tmp_path, upload, run_ingest, keys_under, ledger
) -> None:
    name = "y" * 296 + ".csv"
    key = upload(write_csv(tmp_path / "bad.csv", [["Nothing", "Useful"], ["a", "b"]]), "incoming/" + name)

    run = run_ingest(key)

    assert run.state == "failed"
    ((status, _, _),) = ledger(key)
    assert status == "rejected"
    assert "quarantine/" + name in keys_under("quarantine/")
    (alert,) = run.alerts
    assert str(scratch.scratch_root()) not in _ledger_and_alert_text(ledger(key), run.alerts)
    assert "/tmp" not in alert["message"]
    assert not scratch_folders_of(key)


class PanicException(BaseException):
    """What PyO3 raises when Rust code (calamine, via fastexcel) panics: a BaseException, not an Exception."""


def test_a_reader_crash_is_the_files_fault_rejected_once(
    tmp_path, upload, run_ingest, keys_under, ledger, monkeypatch
) -> None:
    key = upload(
        write_workbook(tmp_path / "crash.xlsx", {"Online Retail": [HEADER, *rows(3, 700600)]}), "incoming/crash.xlsx"
    )
    reads = []

    def crashing_read(path, source_name, limits=None):
        reads.append(path)
        raise PanicException(f"called `Option::unwrap()` on a `None` value while reading {path}")

    monkeypatch.setattr(load, "read_typed", crashing_read)
    run = run_ingest(key)

    assert run.state == "failed"
    assert len(reads) == 1  # not retried
    ((status, _, error),) = ledger(key)
    assert status == "rejected"
    assert error.startswith("the reader failed on this file: PanicException: called `Option::unwrap()`")
    assert str(scratch.scratch_root()) not in error
    assert "quarantine/crash.xlsx" in keys_under("quarantine/")
    (alert,) = run.alerts
    assert "Try:    1 of 3" in alert["message"]
    assert not scratch_folders_of(key)


def test_a_value_postgresql_refuses_is_the_files_fault_rejected_once(
    tmp_path, upload, run_ingest, keys_under, ledger, stack, monkeypatch
) -> None:
    """A NUL byte reaching COPY (the reader now rejects such rows; this is the net under it)."""
    import polars as pl

    key = upload(write_csv(tmp_path / "nul.csv", [HEADER, *rows(3, 700700)]), "incoming/nul.csv")
    real_read = load.read_typed

    def read_with_a_nul(path, source_name, limits=None):
        typed = real_read(path, source_name, limits)
        sheet = typed.sheets[0]
        sheet.rows.replace_column(
            sheet.rows.get_column_index("description"),
            pl.Series("description", ["A\x00B"] * sheet.rows.height),
        )
        return typed

    monkeypatch.setattr(load, "read_typed", read_with_a_nul)
    run = run_ingest(key)

    assert run.state == "failed"
    ((status, _, error),) = ledger(key)
    assert status == "rejected"
    assert error.startswith("the warehouse refused a value of this file:")
    assert bronze_rows(stack, key) == 0
    assert "quarantine/nul.csv" in keys_under("quarantine/")
    (alert,) = run.alerts
    assert "Try:    1 of 3" in alert["message"]


def test_a_killed_task_leaves_no_copy_of_its_input_behind(stack, tmp_path, upload, run_ingest) -> None:
    """A task killed mid-read (SIGKILL, the OOM killer) cannot clean up; the next task sweeps its folder."""
    key = "incoming/killed_mid_read.csv"
    child = textwrap.dedent(
        f"""
        import os, signal
        from include.retail.ingest.scratch import scratch_folder
        with scratch_folder({key!r}) as folder:
            (folder / "input.csv").write_text("a copy of the input")
            print(folder, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    killed = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, cwd=REPO_ROOT, env=os.environ.copy()
    )
    assert killed.returncode == -9
    left = Path(killed.stdout.strip())
    assert (left / "input.csv").exists()  # what a crash used to leave

    other = upload(write_csv(tmp_path / "sweeper.csv", [HEADER, *rows(2, 700800)]), "incoming/sweeper.csv")
    assert run_ingest(other).state == "success"

    assert not left.exists()
    assert not scratch_folders_of(key)


def test_read_limits_are_airflow_variables_over_the_readers_defaults(stack, monkeypatch) -> None:
    from include.retail.ingest.sandboxed_read import ReadLimits
    from include.retail.ingest.tasks import read_limits

    assert read_limits() == ReadLimits()
    variable = config.READ_LIMIT_VARIABLE_PREFIX + "max_memory_mb"
    monkeypatch.setenv(f"AIRFLOW_VAR_{variable.upper()}", "512")
    assert read_limits() == ReadLimits(max_memory_mb=512)


def test_a_failed_dbt_build_alert_names_the_model_that_failed(
    stack, dags, tmp_path, upload, run_ingest, run_transform, monkeypatch
) -> None:
    """Cosmos's producer fails with "dbt command failed"; its alert now says which models and tests failed."""
    for task in dags["retail_transform"].tasks:
        monkeypatch.setattr(task, "retry_delay", timedelta(seconds=1))
    key = upload(write_csv(tmp_path / "for_dbt.csv", [HEADER, *rows(3, 700900)]), "incoming/for_dbt.csv")
    assert run_ingest(key).state == "success"

    with psycopg.connect(stack.warehouse_url(), autocommit=True) as conn:
        conn.execute("alter view bronze.retail_transactions_current rename column description to description_gone")
        try:
            run = run_transform()
        finally:
            conn.execute("alter view bronze.retail_transactions_current rename column description_gone to description")

    assert run.state == "failed"
    builds = [alert for alert in run.alerts if alert["subject"].startswith("[retail] FAILED retail_transform dbt:")]
    assert len(builds) == 1, [(alert["subject"], alert["message"]) for alert in run.alerts]
    (build,) = builds
    assert "model transactions" in build["subject"]
    assert "Failed in dbt:" in build["message"]
    assert "- model transactions: error" in build["message"]
