"""The demo's stage lines (devstack/progress.py), from log lines as `airflow dags test` writes them."""

from __future__ import annotations

import io
import time

from devstack.progress import Clock, LogFollower, summarise

TS = "2026-11-30T17:04:27.209149Z"


def test_a_task_start_names_the_task_and_dbt_sensor_tasks_are_left_out() -> None:
    state: dict = {}
    line = f"{TS} [info     ] [DAG TEST] starting task_id=ingest_file map_index=0 [airflow.sdk.definitions.dag] loc=x"
    assert summarise(line, state) == "task ingest_file[0]"
    dbt_task = f"{TS} [info     ] [DAG TEST] starting task_id=dbt.transactions.run map_index=-1 [airflow.sdk] loc=x"
    assert summarise(dbt_task, state) is None
    assert state["task"] == "dbt.transactions.run"


def test_each_dbt_result_is_one_line_without_colours_or_dots() -> None:
    line = (
        f"{TS} [info     ] 17:04:27  1 of 159 OK created sql incremental model silver.transactions ......"
        " [\x1b[32mSELECT 2732\x1b[0m in 0.68s] [cosmos.operators._watcher.base] loc=base.py:227"
    )
    assert summarise(line, {}) == "dbt   1/159 OK    incremental model silver.transactions (SELECT 2732 in 0.68s)"
    failed = (
        f"{TS} [info     ] 17:04:28  12 of 159 FAIL 3 not_null_x ........ [\x1b[31mFAIL 3\x1b[0m in 0.1s] [cosmos] l"
    )
    assert summarise(failed, {}) == "dbt  12/159 FAIL  3 not_null_x (FAIL 3 in 0.1s)"


def test_the_pipelines_own_info_lines_and_errors_show_others_do_not() -> None:
    state = {"task": "ingest_file[0]"}
    own = (
        f"{TS} [info     ] incoming/a.xlsx: COPY 250,000 of 541,909 rows [include.retail.ingest.bronze] loc=bronze.py:1"
    )
    assert summarise(own, state) == "incoming/a.xlsx: COPY 250,000 of 541,909 rows"
    error = f"{TS} [error    ] Task failed with exception [airflow.task] loc=task_runner.py:1"
    assert summarise(error, state) == "ERROR in ingest_file[0]: Task failed with exception"
    chatter = f"{TS} [info     ] Task instance state updated [airflow.api_fastapi.execution_api] loc=x"
    assert summarise(chatter, state) is None


def test_the_follower_prints_what_is_appended_while_it_runs(tmp_path) -> None:
    log = tmp_path / "demo.log"
    log.write_text(f"{TS} [info     ] old line [include.retail.ingest.load] loc=x\n")
    out = io.StringIO()
    with LogFollower(log, Clock(), out=out), log.open("a") as handle:
        handle.write(f"{TS} [info     ] new line [include.retail.ingest.load] loc=x\n")
        handle.flush()
        time.sleep(0.5)
    assert "new line" in out.getvalue()
    assert "old line" not in out.getvalue()


def test_a_files_control_characters_are_shown_escaped_never_sent_to_the_terminal() -> None:
    """A rejected value or a file's name in a log line: ESC (clear the screen), CR (overwrite the line), a bidi
    override and C1 controls are printed as escapes; the log's own colours are still taken out."""
    error = (
        f"{TS} [\x1b[31merror\x1b[0m    ] incoming/a\u202exslx.csv: 3 of 3 rows have values that cannot be typed;"
        " first: row 2: Quantity '\x1b[2J\x1b[H7\rPAID\x9b' is not a whole number [airflow.task] loc=x"
    )
    shown = summarise(error, {"task": "ingest_file[0]"})
    assert shown == (
        "ERROR in ingest_file[0]: incoming/a\\u202exslx.csv: 3 of 3 rows have values that cannot be typed;"
        " first: row 2: Quantity '\\x1b[2J\\x1b[H7\\rPAID\\x9b' is not a whole number"
    )
    own = f"{TS} [info     ] incoming/\x1b]0;owned\x07.xlsx: downloaded 1 MB [include.retail.ingest.load] loc=x"
    assert summarise(own, {}) == "incoming/\\x1b]0;owned\\x07.xlsx: downloaded 1 MB"
    dbt = f"{TS} [info     ] 1 of 2 PASS accepted_values_\x1b[2Jx ...... [\x1b[32mPASS\x1b[0m in 0.1s] [cosmos] l"
    assert summarise(dbt, {}) == "dbt   1/2 PASS  accepted_values_\\x1b[2Jx (PASS in 0.1s)"


def test_a_stage_line_is_printed_escaped_and_a_cr_in_the_log_stays_in_its_line(tmp_path) -> None:
    out = io.StringIO()
    Clock().stage("uploading evil\x1b[2J.xlsx ...", out)
    assert "evil\\x1b[2J.xlsx" in out.getvalue()
    assert "\x1b" not in out.getvalue()

    log = tmp_path / "demo.log"
    log.write_text("")
    out = io.StringIO()
    with LogFollower(log, Clock(), out=out), log.open("a", newline="") as handle:
        handle.write(f"{TS} [info     ] Quantity 'paid\rREFUND' [include.retail.ingest.load] loc=x\r\n")
        handle.flush()
        time.sleep(0.5)
    assert "Quantity 'paid\\rREFUND'" in out.getvalue()
    assert "\r" not in out.getvalue()
