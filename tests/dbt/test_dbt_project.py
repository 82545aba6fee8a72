"""The dbt project's own rules: style (sqlfluff), one YAML per model stating and testing its grain."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from include.retail.transform.dbt_project import DBT_EXECUTABLE, DBT_MANIFEST, DBT_PROJECT_DIR

SQLFLUFF = DBT_EXECUTABLE.parent / "sqlfluff"
REPO = Path(__file__).resolve().parents[2]
RUN_RESULTS_FIXTURE = REPO / "tests" / "unit" / "data" / "dbt_run_results.json"


@pytest.fixture(scope="module")
def manifest() -> dict:
    assert DBT_MANIFEST.is_file(), (
        "no dbt manifest: `make venv` builds it (python -m include.retail.transform.dbt_project parse)"
    )
    return json.loads(DBT_MANIFEST.read_text())


def models(manifest: dict) -> list[dict]:
    return [node for node in manifest["nodes"].values() if node["resource_type"] == "model"]


def test_sql_follows_the_style_guide() -> None:
    result = subprocess.run(
        [str(SQLFLUFF), "lint", "models", "tests", "--format", "github-annotation-native"],
        cwd=DBT_PROJECT_DIR,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_every_model_has_a_yaml_beside_it_that_states_its_grain(manifest: dict) -> None:
    for model in models(manifest):
        sql_path = DBT_PROJECT_DIR / model["original_file_path"]
        assert sql_path.with_suffix(".yml").is_file(), f"{model['name']} has no YAML beside it"
        assert "grain" in model["description"].lower(), f"{model['name']}'s description does not state its grain"


def test_every_model_tests_its_grain(manifest: dict) -> None:
    tests_by_model: dict[str, set[str]] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] == "test":
            name = (node.get("test_metadata") or {}).get("name", "singular")
            for parent in node["depends_on"]["nodes"]:
                tests_by_model.setdefault(parent, set()).add(name)
    for model in models(manifest):
        tests = tests_by_model.get(model["unique_id"], set())
        assert tests & {"unique_combination_of_columns", "unique"}, f"{model['name']} does not test its grain"
        assert "not_null" in tests, f"{model['name']} has no not_null test"


def test_silver_and_gold_land_in_their_schemas(manifest: dict) -> None:
    for model in models(manifest):
        layer = model["fqn"][1]
        assert model["schema"] == layer, f"{model['name']} is in {model['schema']}, not {layer}"


def dbt_project_cli(command: str, project_dir: Path) -> subprocess.CompletedProcess:
    """``python -m include.retail.transform.dbt_project <command>`` for a copy of the project, as make and the image
    run it."""
    env = {**os.environ, "RETAIL_DBT_PROJECT_DIR": str(project_dir), "DBT_LOG_PATH": str(project_dir / "logs")}
    env.pop("DBT_PROFILES_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "include.retail.transform.dbt_project", command],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )


def test_parse_builds_the_manifest_where_the_dag_reads_it(tmp_path: Path) -> None:
    """The one way every tool (make, the image, compose) builds the manifest, and the one place its path is."""
    project = tmp_path / "dbt"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))

    where = dbt_project_cli("manifest", project)
    assert where.returncode == 0, where.stderr
    manifest = Path(where.stdout.strip())
    assert manifest.parent.parent == project
    assert not manifest.exists()

    built = dbt_project_cli("parse", project)
    assert built.returncode == 0, built.stdout + built.stderr
    assert f"dbt manifest: {manifest}" in built.stdout
    # The docs site Cosmos's plugin serves is built beside it, with no database.
    assert (manifest.parent / "index.html").is_file()
    assert (manifest.parent / "catalog.json").is_file()
    assert "dbt docs:" in built.stdout
    nodes = json.loads(manifest.read_text())["nodes"].values()
    assert any(node["resource_type"] == "model" for node in nodes)


def test_parse_fails_naming_the_project_when_dbt_cannot_parse_it(tmp_path: Path) -> None:
    project = tmp_path / "dbt"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    (project / "models" / "silver" / "transactions.sql").write_text("select * from {{ ref('no_such_model') }}\n")

    failed = dbt_project_cli("parse", project)
    assert failed.returncode != 0
    assert f"`dbt parse` of {project} failed" in failed.stderr
    assert not (project / "target" / "manifest.json").exists()


def test_the_unit_tests_run_results_are_what_this_dbt_writes() -> None:
    """tests/unit/data/dbt_run_results.json, which the summary's test count is tested on, validates against the
    run_results.json schema of the dbt the project runs with."""
    check = (
        "import json, sys\n"
        "from dbt.artifacts.schemas.run import RunResultsArtifact\n"
        "RunResultsArtifact.validate(json.load(open(sys.argv[1])))\n"
        "print(RunResultsArtifact.dbt_schema_version)\n"
    )
    result = subprocess.run(
        [str(DBT_EXECUTABLE.parent / "python"), "-c", check, str(RUN_RESULTS_FIXTURE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    schema = json.loads(RUN_RESULTS_FIXTURE.read_text())["metadata"]["dbt_schema_version"]
    assert schema == result.stdout.strip()


# silver.transactions' columns that are not bronze columns, and the bronze columns each is computed from: a
# column computed only from present values is present. Lineage columns are NOT NULL in bronze itself.
COMPUTED_FROM = {
    "transaction_id": ("source_key", "source_row"),
    "invoiced_at": ("invoice_date",),
    "line_amount": ("quantity", "unit_price"),
    "line_type": ("invoice_no", "stock_code", "quantity"),
    "is_cancellation": ("invoice_no",),
    "is_non_product": ("stock_code",),
    "source_rows": (),  # count(*)
}
BRONZE_NOT_NULL = ("source_key", "source_row", "batch_id", "loaded_at")


def test_every_not_null_of_silver_transactions_has_its_set_aside_rule(manifest: dict) -> None:
    """A bronze row silver cannot hold is set aside (silver.transactions_set_aside), never left to fail a not_null
    of silver.transactions: that would stop this and every later transform (issue 22). Walks both lists: each
    column the model tests not_null is a required column (set aside when missing), bronze lineage, or computed
    only from those."""
    required = project_vars()["required_columns"]
    tested_not_null = {
        node["column_name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test"
        and (node.get("test_metadata") or {}).get("name") == "not_null"
        and "model.retail.transactions" in node["depends_on"]["nodes"]
    }
    assert {"invoice_no", "stock_code", "country"} <= tested_not_null, "the test reads the model's not_null tests"
    present = set(required) | set(BRONZE_NOT_NULL)
    unguarded = {
        column
        for column in tested_not_null
        if column not in present and not (column in COMPUTED_FROM and set(COMPUTED_FROM[column]) <= present)
    }
    assert not unguarded, f"silver.transactions requires {sorted(unguarded)}, which no set-aside rule guarantees"


def project_vars() -> dict:
    import yaml

    return yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"]


def test_the_set_aside_reasons_and_bronzes_index_follow_the_required_columns() -> None:
    """The var is the one list; the reason's accepted values and bronze's partial index of the rows set aside
    (which PostgreSQL matches only when its predicate is the macro's condition) must say the same."""
    import re

    import yaml

    required = project_vars()["required_columns"]
    set_aside = yaml.safe_load((DBT_PROJECT_DIR / "models" / "silver" / "transactions_set_aside.yml").read_text())
    (reason,) = [column for column in set_aside["models"][0]["columns"] if column["name"] == "reason"]
    (accepted,) = [test["accepted_values"] for test in reason["data_tests"] if isinstance(test, dict)]
    assert accepted["arguments"]["values"] == [f"missing_{column}" for column in required]
    bronze_ddl = (REPO / "include" / "sql" / "010_bronze.sql").read_text()
    (predicate,) = re.findall(
        r"create index if not exists retail_transactions_set_aside\w* .*?where \((.*?)\);", bronze_ddl, re.S
    )
    assert re.findall(r"(\w+) is null", predicate) == required
