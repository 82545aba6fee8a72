"""The dbt project's own rules: style (sqlfluff), one YAML per model stating and testing its grain."""

from __future__ import annotations

import json
import subprocess

import pytest

from include.retail.dbt_project import DBT_EXECUTABLE, DBT_MANIFEST, DBT_PROJECT_DIR

SQLFLUFF = DBT_EXECUTABLE.parent / "sqlfluff"


@pytest.fixture(scope="module")
def manifest() -> dict:
    assert DBT_MANIFEST.is_file(), "no dbt manifest: `make venv` builds it with `dbt parse`"
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
