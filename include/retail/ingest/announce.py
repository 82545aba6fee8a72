"""Announce what an ingest run loaded into bronze over SNS, and every loaded batch an earlier run left unannounced.

The message is plain text built from ledger rows (``load_summary``, unit-tested without Airflow); the batches
are marked announced only once it is published, so a failed publish is retried and no batch is stranded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import psycopg

from include.retail.ingest import ledger
from include.retail.ingest.ledger import Status
from include.retail.platform import alerts, config
from include.retail.platform.alerts import subject_line
from include.retail.platform.text import printable


def load_summary(results: Iterable[dict], *, run_id: str, earlier: Iterable[dict] = ()) -> tuple[str, str]:
    """Subject and body announcing what a run loaded into bronze, and the loads of earlier runs that
    were never announced (``earlier``: a run that died after its bronze commit), which go to silver now."""
    results, earlier = list(results), list(earlier)
    loaded = [result for result in results if result["status"] == Status.LOADED]
    files = len(loaded) + len(earlier)
    rows = sum(result["rows_loaded"] for result in [*loaded, *earlier])
    subject = f"{config.ALERT_SUBJECT_PREFIX} Loaded {files} file{'s' if files != 1 else ''}, {rows:,} rows into bronze"
    this_run = sum(result["rows_loaded"] for result in loaded)
    lines = [f"Run {run_id} loaded {this_run:,} rows from {len(loaded)} file(s) into bronze.", ""]
    for result in results:
        seconds = sum(filter(None, (result.get("read_seconds"), result.get("load_seconds"))))
        line = f"- {printable(result['key'])}: {result['status']}"
        if result["status"] == Status.LOADED:
            line += f", {result['rows_loaded']:,} rows in {seconds:.1f} s"
            if result["rows_rejected"]:
                line += f", {result['rows_rejected']:,} rows rejected (see bronze.rejected_rows)"
            if result.get("rows_overlapping"):
                line += (
                    f", {result['rows_overlapping']:,} of them identical to rows of another file already loaded"
                    " (counted in both)"
                )
            if result.get("superseded"):
                line += ", supersedes an earlier load of this key"
        elif result["status"] == Status.DUPLICATE and result.get("duplicate_of_key", result["key"]) != result["key"]:
            line += (
                f" (the same rows as {printable(result['duplicate_of_key'])}, already loaded: a re-export in another"
                " format or order; nothing added)"
            )
        elif result["status"] == Status.DUPLICATE:
            line += " (this content was loaded before; nothing added)"
        elif result["status"] == Status.REJECTED:
            line += f" and quarantined: {printable(str(result.get('error')))}"
        lines.append(line)
    if earlier:
        lines += ["", f"Loaded by earlier runs that ended before announcing them ({len(earlier)}), now sent to silver:"]
        lines += [
            f"- {printable(batch['key'])}: loaded, {batch['rows_loaded']:,} rows (batch {batch['batch_id']})"
            for batch in earlier
        ]
    return subject_line(subject), "\n".join(lines) + "\n"


def announce_batches(conn: psycopg.Connection, run_id: str, *, alerts_topic: Callable[[], str]) -> dict | None:
    """Publish what the run loaded, and every loaded batch an earlier run never announced, to the SNS topic
    ``alerts_topic`` names (asked only when there is something to publish); None when there is nothing to
    announce (the task then skips, so its outlet emits no bronze Asset event).

    Every loaded batch reaches silver: a run killed after its bronze commit (before the move, or with S3
    or SNS gone) leaves its batch unannounced in the ledger, and the next run, even one that finds only
    duplicates, announces it. The ledger is marked only after the summary is published, so a failed
    publish is retried. Airflow records the Asset event after the task returns: if the task dies in
    that window its retry finds the batches marked by this same run and announces them again (at least
    once: a summary may go out twice, a batch is never stranded; past the last retry ``make health``
    lists the batch as missing from silver).
    """
    results = ledger.ledger_rows_of_run(conn, run_id)
    pending = {batch["batch_id"]: batch for batch in ledger.batches_announced_by(conn, run_id)}
    pending |= {batch["batch_id"]: batch for batch in ledger.unannounced_batches(conn)}
    details = ledger.load_details(conn, [result["batch_id"] for result in results])
    if not pending:
        return None
    results = [result | details.get(result["batch_id"], {}) for result in results]
    of_this_run = {result["batch_id"] for result in results}
    earlier = [batch for batch_id, batch in pending.items() if batch_id not in of_this_run]
    subject, message = load_summary(results, run_id=run_id, earlier=earlier)
    message_id = alerts.publish(alerts_topic(), subject, message)
    ledger.mark_announced(conn, list(pending), run_id=run_id)
    earlier = [batch | {"finished_at": batch["finished_at"].isoformat()} for batch in earlier]
    return {"subject": subject, "message_id": message_id, "files": results, "earlier": earlier}
