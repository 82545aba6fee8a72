"""Alerts over Amazon SNS: a failure alert for every task, and publishing (the summaries are each stage's:
``ingest.announce``, ``transform.summary``).

A failure alert names what failed: the file (S3 key) of an ingest task, or the dbt models and tests of a
failed ``dbt build`` (which the transform's callback reads, ``transform.tasks.alert_on_transform_failure``).
SNS being down must not lose it silently: it is retried with backoff, then written whole to the task's log;
the task's own state (failed) never depends on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from include.retail.platform import config
from include.retail.platform.text import printable

log = logging.getLogger(__name__)

# SNS refuses subjects of 100 characters or more, and any line break or control character in them.
SUBJECT_MAX_CHARS = 99
_ERROR_MAX_CHARS = 2000


def subject_line(text: str) -> str:
    """One line of printable characters (a control character shown escaped), short enough for SNS."""
    single = " ".join(printable(text).split())
    return single if len(single) <= SUBJECT_MAX_CHARS else single[: SUBJECT_MAX_CHARS - 1] + "…"


def message_body(text: str) -> str:
    """An SNS message as it is sent: its lines kept, any other control character shown escaped, so a value from
    a file (an ESC sequence, a CR, a bidi override) never reaches a mail client or terminal raw."""
    return printable(text, keep="\n")


def _field(value: object) -> str:
    """A value from outside (a file key, an error, dbt's message) as one field of an alert's body: its control
    characters escaped, and each line break of its own indented, so no line of it can pass for another field."""
    return "\n        ".join(printable(line) for line in str(value).split("\n"))


def failure_alert(context, failed_nodes: Sequence[dict] = ()) -> tuple[str, str]:
    """Subject and body of a failed task's alert: DAG, task, the file or ``failed_nodes`` (the dbt nodes a
    build failed: ``name``, ``status``, ``msg``), try, error, log URL."""
    dag_id, ti, task = context["dag"].dag_id, context["ti"], context["task"]
    map_index = ti.map_index if isinstance(ti.map_index, int) else -1
    # ingest_file's map_index_template renders its S3 key; the context holds it while the task runs.
    file_key = context.get("file_key") or getattr(ti, "rendered_map_index", None) or None

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
    error = _field(str(exception)[:_ERROR_MAX_CHARS]) if exception else "unknown (see the log)"
    lines = [
        "A task of the retail pipeline failed.",
        "",
        f"DAG:    {dag_id}",
        f"Task:   {ti.task_id}" + (f" (map index {map_index})" if map_index >= 0 else ""),
    ]
    if file_key:
        lines.append(f"File:   {_field(file_key)}")
    lines += [
        f"Run:    {_field(context.get('run_id'))}",
        f"Try:    {ti.try_number} of {task.retries + 1}",
        f"Error:  {error}",
    ]
    if failed_nodes:
        lines += ["", "Failed in dbt:"]
        lines += [
            f"- {_field(node['name'])}: {node['status']}" + (f": {_field(node['msg'])}" if node["msg"] else "")
            for node in failed_nodes
        ]
    lines.append(f"Log:    {ti.log_url}")
    return subject_line(subject), message_body("\n".join(lines) + "\n")


def alert_on_failure(context) -> None:
    """The on_failure_callback of every task: build the alert and publish it, retrying while SNS is down."""
    send(*failure_alert(context))


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
    send(subject_line(subject), message)


def send(subject: str, message: str) -> None:
    """Publish to the alerts topic (the Variable ``retail_alerts_topic_arn``) with retries; never raises."""
    subject, message = subject_line(subject), message_body(message)
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
    subject, message = subject_line(subject), message_body(message)
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
    """Publish through the Amazon provider's hook; returns the SNS message id. Every message goes out through
    here, the stages' summaries too: the subject and body are made printable once more on the way."""
    from airflow.providers.amazon.aws.hooks.sns import SnsHook

    response = SnsHook(aws_conn_id=config.AWS_CONN_ID).publish_to_target(
        target_arn=topic_arn, subject=subject_line(subject), message=message_body(message)
    )
    return response["MessageId"]
