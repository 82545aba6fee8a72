"""Where the dbt project, its dbt executable and its manifest are, and the one way to build the manifest.

One module for the DAG and the tools (make, the Docker image, docker-compose, the MWAA bundle, tests,
benchmarks), overridable by environment variables so that the same code finds them on the embedded stack,
in the Docker image and on MWAA:

- ``RETAIL_DBT_PROJECT_DIR``: the dbt project (default: ``include/dbt`` beside this package);
- ``RETAIL_DBT_EXECUTABLE``: dbt in its own virtualenv (default: ``.venv-dbt/bin/dbt`` at the repo root),
  because dbt-core's pins conflict with Airflow's (MWAA's) and it must not share their environment.

Every tool builds the manifest with ``python -m include.retail.transform.dbt_project parse`` and finds it with
``python -m include.retail.transform.dbt_project manifest``, so its path is spelled here only. ``parse`` also builds the
dbt docs site beside the manifest (``dbt docs generate --no-compile --empty-catalog``: no database needed), which
Cosmos's plugin serves inside the Airflow UI once ``[cosmos] dbt_docs_projects`` names its folder
(``python -m include.retail.transform.dbt_project docs-setting`` prints that setting).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

_INCLUDE = Path(__file__).resolve().parents[2]

DBT_PROJECT_DIR = Path(os.environ.get("RETAIL_DBT_PROJECT_DIR", _INCLUDE / "dbt"))
DBT_EXECUTABLE = Path(os.environ.get("RETAIL_DBT_EXECUTABLE", _INCLUDE.parent / ".venv-dbt" / "bin" / "dbt"))
# Built ahead of time by `dbt parse` (build_manifest), so that parsing the DAG never runs dbt.
DBT_MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"
# The dbt docs site (build_docs): dbt's index.html beside the manifest and an empty catalog.json, the layout
# `dbt docs generate` writes and Cosmos's docs plugin reads.
DBT_DOCS_DIR = DBT_MANIFEST.parent
DBT_DOCS_INDEX = DBT_DOCS_DIR / "index.html"
# Cosmos's slug for the project: its docs are at /cosmos/<slug>/dbt_docs_index.html on the api-server.
DBT_DOCS_SLUG = "retail"
DBT_DOCS_NAME = "dbt docs (full page)"


def build_manifest() -> Path:
    """Run ``dbt parse`` on the project, writing its manifest to DBT_MANIFEST, and check that it did.

    ``dbt parse`` needs a profile but does not connect: include/dbt/profiles.yml (the default
    ``DBT_PROFILES_DIR``) reads only environment variables, each with a default. Raises SystemExit,
    naming the manifest, when dbt fails or leaves no fresh manifest there.
    """
    before = DBT_MANIFEST.stat().st_mtime_ns if DBT_MANIFEST.exists() else None
    command = [str(DBT_EXECUTABLE), "parse", "--quiet", "--target-path", str(DBT_MANIFEST.parent)]
    if subprocess.run(command, cwd=DBT_PROJECT_DIR, env=_dbt_environment(), check=False).returncode != 0:
        raise SystemExit(f"`dbt parse` of {DBT_PROJECT_DIR} failed (see dbt's output above); no manifest built")
    if not DBT_MANIFEST.is_file() or DBT_MANIFEST.stat().st_size == 0 or DBT_MANIFEST.stat().st_mtime_ns == before:
        raise SystemExit(f"`dbt parse` of {DBT_PROJECT_DIR} succeeded but wrote no manifest at {DBT_MANIFEST}")
    return DBT_MANIFEST


def _dbt_environment() -> dict[str, str]:
    return {**os.environ, "DBT_PROFILES_DIR": os.environ.get("DBT_PROFILES_DIR", str(DBT_PROJECT_DIR))}


def build_docs() -> Path:
    """Build the dbt docs site beside the manifest (run after build_manifest), without a database.

    ``--no-compile`` reuses the manifest ``dbt parse`` just wrote (compiling would query the warehouse for the
    incremental models) and leaves it as it was; ``--empty-catalog`` skips the catalog's queries, so the site
    shows the models, their docs, columns, tests and lineage, but no warehouse column types or row counts
    (``make docs`` builds the full site against the warehouse). Raises SystemExit when dbt fails.
    """
    before = DBT_DOCS_INDEX.stat().st_mtime_ns if DBT_DOCS_INDEX.exists() else None
    command = [
        str(DBT_EXECUTABLE),
        "docs",
        "generate",
        "--no-compile",
        "--empty-catalog",
        "--quiet",
        "--target-path",
        str(DBT_DOCS_DIR),
    ]
    if subprocess.run(command, cwd=DBT_PROJECT_DIR, env=_dbt_environment(), check=False).returncode != 0:
        raise SystemExit(f"`dbt docs generate` of {DBT_PROJECT_DIR} failed (see dbt's output above); no docs built")
    if not DBT_DOCS_INDEX.is_file() or DBT_DOCS_INDEX.stat().st_mtime_ns == before:
        raise SystemExit(f"`dbt docs generate` of {DBT_PROJECT_DIR} succeeded but wrote no {DBT_DOCS_INDEX}")
    return DBT_DOCS_DIR


def cosmos_docs_setting(docs_dir: Path | str = DBT_DOCS_DIR) -> str:
    """The value of Airflow's ``[cosmos] dbt_docs_projects`` (``AIRFLOW__COSMOS__DBT_DOCS_PROJECTS``) that makes
    Cosmos's plugin serve this project's docs from ``docs_dir`` (a local folder, or an s3:// URL with the
    plugin's ``conn_id``) and list them under the UI's Browse menu."""
    return json.dumps({DBT_DOCS_SLUG: {"dir": str(docs_dir), "index": DBT_DOCS_INDEX.name, "name": DBT_DOCS_NAME}})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m include.retail.transform.dbt_project", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "parse", help="build the dbt manifest with `dbt parse` where the DAG reads it, and the dbt docs site beside it"
    )
    commands.add_parser("manifest", help="print where the dbt manifest is")
    commands.add_parser("docs-setting", help="print the [cosmos] dbt_docs_projects value that serves the docs site")
    command = parser.parse_args(argv).command
    if command == "parse":
        manifest = build_manifest()
        print(f"dbt manifest: {manifest} ({manifest.stat().st_size:,} bytes)")
        print(f"dbt docs: {build_docs()} (index.html, served in the Airflow UI by Cosmos's plugin)")
    elif command == "docs-setting":
        print(cosmos_docs_setting())
    else:
        print(DBT_MANIFEST)


if __name__ == "__main__":
    main()
