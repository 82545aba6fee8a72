"""What dbt built and how it ended, read from its own artifacts: the manifest's models, ``run_results.json``'s
statuses, and the nodes a failed build names.

Plain functions of plain data, tested without Airflow: the summary, the gold report and the failure alert
read dbt through here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from include.retail.transform.dbt_project import DBT_MANIFEST

log = logging.getLogger(__name__)

# dbt's statuses of a node that failed itself; Cosmos's "failed" marks a node skipped for an upstream failure.
_DBT_FAILED = frozenset({"error", "fail", "runtime error"})


@dataclass(frozen=True)
class DbtProject:
    """The models of the dbt project, as its manifest lists them: the tables a transform builds."""

    models: list[tuple[str, str]]  # (schema, name), sorted

    @classmethod
    def from_manifest(cls, manifest: Path) -> DbtProject:
        nodes = json.loads(manifest.read_text())["nodes"].values()
        return cls(models=sorted((node["schema"], node["name"]) for node in nodes if node["resource_type"] == "model"))


@dataclass(frozen=True)
class DbtRun:
    """What one dbt invocation did, node by node, as its ``target/run_results.json`` records it.

    The summary counts tests from here, not from the manifest: the manifest lists the tests the project
    has, run_results.json the ones dbt ran and how each ended.
    """

    statuses: dict[str, str]  # unique_id -> dbt's status: success, error, skipped (models); pass, fail, warn (tests)

    @classmethod
    def from_run_results(cls, run_results: dict) -> DbtRun:
        return cls({result["unique_id"]: result["status"] for result in run_results["results"]})

    @classmethod
    def from_file(cls, path: Path) -> DbtRun:
        return cls.from_run_results(json.loads(path.read_text()))

    def data_tests(self) -> dict[str, int]:
        """How many data tests (``test.*`` nodes; not unit tests) ended in each status."""
        counts: dict[str, int] = {}
        for unique_id, status in self.statuses.items():
            if unique_id.split(".", 1)[0] == "test":
                counts[status] = counts.get(status, 0) + 1
        return counts


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
