"""Alerts over Amazon SNS: a failure alert for every task, and publishing (the summaries are in reports.py).

A failure alert names what failed: the file (S3 key) of an ingest task, the dbt models and tests of a
failed ``dbt build``. SNS being down must not lose it silently: it is retried with backoff, then
written whole to the task's log; the task's own state (failed) never depends on it.
"""

from __future__ import annotations

import json
import logging
import time

from include.retail.platform import config
from include.retail.transform.dbt_project import DBT_MANIFEST

log = logging.getLogger(__name__)

# SNS refuses subjects of 100 characters or more, and any line break or control character in them.
SUBJECT_MAX_CHARS = 99
_ERROR_MAX_CHARS = 2000
# dbt's statuses of a node that failed itself; Cosmos's "failed" marks a node skipped for an upstream failure.
_DBT_FAILED = frozenset({"error", "fail", "runtime error"})


def subject_line(text: str) -> str:
    """One line of printable characters, short enough for SNS."""
    single = " ".join("".join(char if char.isprintable() else " " for char in text).split())
    return single if len(single) <= SUBJECT_MAX_CHARS else single[: SUBJECT_MAX_CHARS - 1] + "…"


def failure_alert(context) -> tuple[str, str]:
    """Subject and body of a failed task's alert: DAG, task, the file or dbt nodes, try, error, log URL."""
    import airflow  # noqa: F401  # before Cosmos's constants: imported first, they start an import cycle
    from cosmos.constants import PRODUCER_WATCHER_TASK_ID

    dag_id, ti, task = context["dag"].dag_id, context["ti"], context["task"]
    map_index = ti.map_index if isinstance(ti.map_index, int) else -1
    # ingest_file's map_index_template renders its S3 key; the context holds it while the task runs.
    file_key = context.get("file_key") or getattr(ti, "rendered_map_index", None) or None
    failed_nodes = dbt_failures(context) if ti.task_id.endswith(PRODUCER_WATCHER_TASK_ID) else []

    prefix = f"{config.ALERT_SUBJECT_PREFIX} FAILED {dag_id}.{ti.task_id}"
    if file_key:
        subject = f"{prefix}: {file_key}"
    elif failed_nodes:
        subject = f"{config.ALERT_SUBJECT_PREFIX} FAILED {dag_id} dbt: " + ", ".join(
            node["name"] for node in failed_nodes
        )
    else:
        subject = prefix + (f" [{map_index}]" if map_index >= 0 else "")

    exception = context.get("exception")
    error = str(exception)[:_ERROR_MAX_CHARS] if exception else "unknown (see the log)"
    lines = [
        "A task of the retail pipeline failed.",
        "",
        f"DAG:    {dag_id}",
        f"Task:   {ti.task_id}" + (f" (map index {map_index})" if map_index >= 0 else ""),
    ]
    if file_key:
        lines.append(f"File:   {file_key}")
    lines += [
        f"Run:    {context.get('run_id')}",
        f"Try:    {ti.try_number} of {task.retries + 1}",
        f"Error:  {error}",
    ]
    if failed_nodes:
        lines += ["", "Failed in dbt:"]
        lines += [
            f"- {node['name']}: {node['status']}" + (f": {node['msg']}" if node["msg"] else "") for node in failed_nodes
        ]
    lines.append(f"Log:    {ti.log_url}")
    return subject_line(subject), "\n".join(lines) + "\n"


def dbt_failures(context) -> list[dict]:
    """The dbt nodes a Cosmos WATCHER producer's ``dbt build`` failed: ``name`` (e.g. ``model transactions``),
    ``status`` and dbt's message. Cosmos's own exception says only "dbt command failed"; while dbt runs it
    leaves, per node, XComs on the producer: ``<node>_status`` (a model's status) and ``<node>_dbt_event``
    (its last event: for a failed node, dbt's closing error summary, with the message). Nodes dbt skipped
    because of an upstream failure are not listed. Empty when the failure came before any node ran."""
    try:
        nodes = json.loads(DBT_MANIFEST.read_text())["nodes"]
    except (OSError, ValueError, KeyError):
        log.warning("no dbt manifest at %s to name the failed nodes", DBT_MANIFEST, exc_info=True)
        return []
    ti = context["ti"]

    def pulled(unique_id: str, suffix: str) -> dict:
        try:
            value = ti.xcom_pull(task_ids=ti.task_id, key=unique_id.replace(".", "__") + suffix)
        except Exception:
            log.warning("could not read dbt's %s of %s", suffix, unique_id, exc_info=True)
            return {}
        return value if isinstance(value, dict) else {}

    failed = []
    for unique_id, node in sorted(nodes.items()):
        if node.get("resource_type") not in {"model", "test", "seed", "snapshot"}:
            continue
        event = pulled(unique_id, "_dbt_event")
        status = str(pulled(unique_id, "_status").get("status") or event.get("status") or "").lower()
        if status in {"", "none"} and event.get("msg"):
            status = "error"  # only failed nodes appear in dbt's closing error summary, with no status
        if status in _DBT_FAILED:
            failed.append(
                {
                    "name": f"{node['resource_type']} {node.get('name', unique_id)}",
                    "status": status,
                    "msg": " ".join(str(event.get("msg") or "").split())[:500],
                }
            )
    return failed


def alert_on_failure(context) -> None:
    """The on_failure_callback of every task: build the alert and publish it, retrying while SNS is down."""
    _send(*failure_alert(context))


def alert_on_first_retry(context) -> None:
    """An on_retry_callback for tasks retried for long (the upload sensor): alert when the first try fails,
    once, rather than only hours later when the last one does; later retries stay quiet."""
    if context["ti"].try_number != 1:
        return
    subject, message = failure_alert(context)
    subject = subject.replace(" FAILED ", " FAILING ", 1) + " (retrying)"
    message = message.replace(
        "A task of the retail pipeline failed.",
        "A task of the retail pipeline failed and is retried with backoff; no further alert is sent unless its"
        " last try fails too.",
        1,
    )
    _send(subject_line(subject), message)


def _send(subject: str, message: str) -> None:
    try:
        from airflow.sdk import Variable

        topic = Variable.get(config.ALERTS_TOPIC_VARIABLE)
    except Exception:
        log.exception(
            "no alerts topic (Variable %s); the alert was:\n%s\n%s", config.ALERTS_TOPIC_VARIABLE, subject, message
        )
        return
    publish_with_retries(topic, subject, message)


def publish_with_retries(topic_arn: str, subject: str, message: str) -> str | None:
    """Publish, trying again after each of ``config.ALERT_RETRY_DELAYS``; when every try fails, log the alert
    whole (so it is in the task's log) and return None. Never raises: an alert is no reason to fail a task."""
    delays = list(config.ALERT_RETRY_DELAYS)
    for attempt in range(1, len(delays) + 2):
        try:
            return publish(topic_arn, subject, message)
        except Exception as error:
            if attempt > len(delays):
                log.error(
                    "the alert could not be sent to %s after %d tries (%s); it was:\n%s\n%s",
                    topic_arn,
                    attempt,
                    error,
                    subject,
                    message,
                )
                return None
            log.warning(
                "sending the alert failed (try %d, %s); trying again in %s s", attempt, error, delays[attempt - 1]
            )
            time.sleep(delays[attempt - 1])
    return None


def publish(topic_arn: str, subject: str, message: str) -> str:
    """Publish through the Amazon provider's hook; returns the SNS message id."""
    from airflow.providers.amazon.aws.hooks.sns import SnsHook

    response = SnsHook(aws_conn_id=config.AWS_CONN_ID).publish_to_target(
        target_arn=topic_arn, subject=subject_line(subject), message=message
    )
    return response["MessageId"]
