"""Alerts over Amazon SNS: a failure notifier for every task, and the summary of a run's loads."""

from __future__ import annotations

from collections.abc import Iterable

from airflow.providers.amazon.aws.hooks.sns import SnsHook
from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

from include.retail import config

# SNS refuses subjects of 100 characters or more, and any line break or control character in them.
SUBJECT_MAX_CHARS = 99

_TOPIC = "{{ var.value." + config.ALERTS_TOPIC_VARIABLE + " }}"

_FAILURE_SUBJECT = (
    "{{ ('" + config.ALERT_SUBJECT_PREFIX + " FAILED ' ~ dag.dag_id ~ '.' ~ ti.task_id"
    " ~ (' [' ~ ti.map_index ~ ']' if ti.map_index is number and ti.map_index >= 0 else '')"
    ")[:" + str(SUBJECT_MAX_CHARS) + "] }}"
)
_FAILURE_MESSAGE = """\
A task of the retail pipeline failed.

DAG:    {{ dag.dag_id }}
Task:   {{ ti.task_id }}{% if ti.map_index is number and ti.map_index >= 0 %} (map index {{ ti.map_index }}){% endif %}
Run:    {{ run_id }}
Try:    {{ ti.try_number }} of {{ task.retries + 1 }}
Error:  {{ (exception | string)[:2000] if exception else 'unknown (see the log)' }}
Log:    {{ ti.log_url }}
"""


def subject_line(text: str) -> str:
    """One line, short enough for SNS."""
    single = " ".join(text.split())
    return single if len(single) <= SUBJECT_MAX_CHARS else single[: SUBJECT_MAX_CHARS - 1] + "…"


def failure_notifier() -> SnsNotifier:
    """An SNS notifier whose message names the DAG, task, try, error and log URL."""
    return SnsNotifier(
        aws_conn_id=config.AWS_CONN_ID,
        target_arn=_TOPIC,
        subject=_FAILURE_SUBJECT,
        message=_FAILURE_MESSAGE,
    )


def alert_on_failure(context) -> None:
    """The on_failure_callback of every task.

    A notifier renders its templates in place, so one shared instance would repeat the first
    failure's text whenever a process runs several callbacks (``dag.test()``, a long-lived worker):
    each failure gets a fresh one.
    """
    failure_notifier()(context)


def publish(topic_arn: str, subject: str, message: str) -> str:
    """Publish through the Amazon provider's hook; returns the SNS message id."""
    response = SnsHook(aws_conn_id=config.AWS_CONN_ID).publish_to_target(
        target_arn=topic_arn, subject=subject_line(subject), message=message
    )
    return response["MessageId"]


def load_summary(results: Iterable[dict], *, run_id: str) -> tuple[str, str]:
    """Subject and body announcing what a run loaded into bronze."""
    results = list(results)
    loaded = [result for result in results if result["status"] == "loaded"]
    rows = sum(result["rows_loaded"] for result in loaded)
    subject = (
        f"{config.ALERT_SUBJECT_PREFIX} Loaded {len(loaded)} file{'s' if len(loaded) != 1 else ''}, "
        f"{rows:,} rows into bronze"
    )
    lines = [f"Run {run_id} loaded {rows:,} rows from {len(loaded)} file(s) into bronze.", ""]
    for result in results:
        seconds = sum(filter(None, (result.get("read_seconds"), result.get("load_seconds"))))
        line = f"- {result['key']}: {result['status']}"
        if result["status"] == "loaded":
            line += f", {result['rows_loaded']:,} rows in {seconds:.1f} s"
            if result["rows_rejected"]:
                line += f", {result['rows_rejected']:,} rows rejected (see bronze.rejected_rows)"
            if result.get("superseded"):
                line += ", supersedes an earlier load of this key"
        elif result["status"] == "duplicate":
            line += " (this content was loaded before; nothing added)"
        elif result["status"] == "rejected":
            line += f" and quarantined: {result.get('error')}"
        lines.append(line)
    return subject_line(subject), "\n".join(lines) + "\n"
