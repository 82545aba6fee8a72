"""Where the dbt project, its dbt executable and its manifest are, and the one way to build the manifest.

One module for the DAG and the tools (make, the Docker image, docker-compose, the MWAA bundle, tests,
benchmarks), overridable by environment variables so that the same code finds them on the embedded stack,
in the Docker image and on MWAA:

- ``RETAIL_DBT_PROJECT_DIR``: the dbt project (default: ``include/dbt`` beside this package);
- ``RETAIL_DBT_EXECUTABLE``: dbt in its own virtualenv (default: ``.venv-dbt/bin/dbt`` at the repo root),
  because dbt-core's pins conflict with Airflow's (MWAA's) and it must not share their environment.

Every tool builds the manifest with ``python -m include.retail.dbt_project parse`` and finds it with
``python -m include.retail.dbt_project manifest``, so its path is spelled here only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

_INCLUDE = Path(__file__).resolve().parent.parent

DBT_PROJECT_DIR = Path(os.environ.get("RETAIL_DBT_PROJECT_DIR", _INCLUDE / "dbt"))
DBT_EXECUTABLE = Path(os.environ.get("RETAIL_DBT_EXECUTABLE", _INCLUDE.parent / ".venv-dbt" / "bin" / "dbt"))
# Built ahead of time by `dbt parse` (build_manifest), so that parsing the DAG never runs dbt.
DBT_MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"


def build_manifest() -> Path:
    """Run ``dbt parse`` on the project, writing its manifest to DBT_MANIFEST, and check that it did.

    ``dbt parse`` needs a profile but does not connect: include/dbt/profiles.yml (the default
    ``DBT_PROFILES_DIR``) reads only environment variables, each with a default. Raises SystemExit,
    naming the manifest, when dbt fails or leaves no fresh manifest there.
    """
    before = DBT_MANIFEST.stat().st_mtime_ns if DBT_MANIFEST.exists() else None
    env = {**os.environ, "DBT_PROFILES_DIR": os.environ.get("DBT_PROFILES_DIR", str(DBT_PROJECT_DIR))}
    command = [str(DBT_EXECUTABLE), "parse", "--quiet", "--target-path", str(DBT_MANIFEST.parent)]
    if subprocess.run(command, cwd=DBT_PROJECT_DIR, env=env, check=False).returncode != 0:
        raise SystemExit(f"`dbt parse` of {DBT_PROJECT_DIR} failed (see dbt's output above); no manifest built")
    if not DBT_MANIFEST.is_file() or DBT_MANIFEST.stat().st_size == 0 or DBT_MANIFEST.stat().st_mtime_ns == before:
        raise SystemExit(f"`dbt parse` of {DBT_PROJECT_DIR} succeeded but wrote no manifest at {DBT_MANIFEST}")
    return DBT_MANIFEST


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m include.retail.dbt_project", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("parse", help="build the dbt manifest with `dbt parse` and check it is where the DAG reads it")
    commands.add_parser("manifest", help="print where the dbt manifest is")
    if parser.parse_args(argv).command == "parse":
        manifest = build_manifest()
        print(f"dbt manifest: {manifest} ({manifest.stat().st_size:,} bytes)")
    else:
        print(DBT_MANIFEST)


if __name__ == "__main__":
    main()
