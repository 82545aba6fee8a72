"""Dockerfile and .dockerignore: the pinned Airflow on MWAA's Python, locked requirements, dbt apart, manifest built."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PYTHON = "3.12"  # MWAA's Python for Airflow 3.3.1


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    user: str  # the USER in effect when it runs


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    parsed, user, pending = [], "root", ""
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical = (pending + line).strip()
        pending = ""
        if not logical:
            continue
        keyword, _, args = logical.partition(" ")
        keyword = keyword.upper()
        if keyword == "USER":
            user = args.strip()
        parsed.append(Instruction(keyword, args.strip(), user))
    return parsed


@pytest.fixture(scope="module")
def steps() -> list[Instruction]:
    return instructions(DOCKERFILE.read_text())


def of(steps: list[Instruction], keyword: str) -> list[Instruction]:
    return [step for step in steps if step.keyword == keyword]


def image_env(steps: list[Instruction]) -> dict[str, str]:
    env = {}
    for step in of(steps, "ENV"):
        for item in shlex.split(step.args):
            name, _, value = item.partition("=")
            env[name] = value
    return env


def copies(steps: list[Instruction]) -> dict[str, str]:
    """COPY source -> destination (single-source COPYs, as this Dockerfile writes them)."""
    mapping = {}
    for step in of(steps, "COPY"):
        words = [word for word in shlex.split(step.args) if not word.startswith("--")]
        *sources, destination = words
        for source in sources:
            mapping[source.rstrip("/")] = destination.rstrip("/")
    return mapping


def pinned_airflow() -> str:
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and Requirement(line).name == "apache-airflow":
            (spec,) = Requirement(line).specifier
            assert spec.operator == "==", f"apache-airflow must be pinned exactly in requirements.txt, not {spec}"
            return spec.version
    raise AssertionError("requirements.txt does not pin apache-airflow")


def test_base_image_is_the_pinned_airflow_on_mwaa_python(steps: list[Instruction]) -> None:
    """The base is a build argument (the compose test swaps in a stand-in) whose default is the official tag."""
    (base,) = of(steps, "FROM")
    (argument,) = [step for step in of(steps, "ARG") if step.args.startswith("AIRFLOW_BASE_IMAGE=")]
    assert base.args == "${AIRFLOW_BASE_IMAGE}"
    assert argument.args == f"AIRFLOW_BASE_IMAGE=apache/airflow:{pinned_airflow()}-python{PYTHON}"
    requires_python = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert f"{PYTHON}.0" in SpecifierSet(requires_python)


def test_runtime_requirements_are_installed_at_the_locked_versions(steps: list[Instruction]) -> None:
    copied = copies(steps)
    requirements, lock = copied["requirements.txt"], copied["requirements/py312.lock"]
    installs = [
        step
        for step in of(steps, "RUN")
        if re.search(rf"pip install .*-r {re.escape(requirements)}\b", step.args)
        and re.search(rf"-c {re.escape(lock)}\b", step.args)
    ]
    assert len(installs) == 1, "expected one `pip install -r requirements.txt -c requirements/py312.lock`"
    assert installs[0].user == "airflow", "the official image wants pip run as the airflow user"


def test_pip_follows_the_official_image_conventions(steps: list[Instruction]) -> None:
    pip_runs = [step for step in of(steps, "RUN") if "pip install" in step.args]
    assert pip_runs
    for step in pip_runs:
        for command in re.split(r"&&|;", step.args):
            if "pip install" in command:
                assert "--no-cache-dir" in command, command
        assert step.user != "root", f"pip runs as root: {step.args}"
    assert of(steps, "USER")[-1].args == "airflow", "the image must end as the airflow user"


def test_dbt_has_its_own_virtualenv_built_from_its_lock(steps: list[Instruction]) -> None:
    env = image_env(steps)
    executable = Path(env["RETAIL_DBT_EXECUTABLE"])
    venv = executable.parent.parent
    assert executable == venv / "bin" / "dbt"
    dbt_lock = copies(steps)["requirements/dbt-py312.lock"]
    builds = [
        step
        for step in of(steps, "RUN")
        if f"-m venv {venv}" in step.args
        and re.search(rf"{venv}/bin/pip install .*-r {re.escape(dbt_lock)}", step.args)
    ]
    assert len(builds) == 1, f"expected one RUN that creates {venv} and installs {dbt_lock} into it"
    assert "dbt-core==" in (REPO / "requirements" / "dbt-py312.lock").read_text()


def test_the_code_reads_the_dbt_paths_the_image_sets(steps: list[Instruction]) -> None:
    """include/retail/transform/dbt_project.py finds dbt and the manifest through the variables the image sets."""
    env = image_env(steps)
    probe = (
        "import json; from include.retail.transform import dbt_project as d; "
        "print(json.dumps([str(d.DBT_EXECUTABLE), str(d.DBT_PROJECT_DIR), str(d.DBT_MANIFEST)]))"
    )
    names = ("RETAIL_DBT_EXECUTABLE", "RETAIL_DBT_PROJECT_DIR")
    child_env = {**os.environ, **{name: env[name] for name in names if name in env}}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=child_env, capture_output=True, text=True, check=True
    ).stdout
    executable, project_dir, manifest = json.loads(out)
    assert executable == env["RETAIL_DBT_EXECUTABLE"]
    # The project the code uses is the one the image copies include/ into, so the built manifest is found.
    include_dir = copies(steps)["include"]
    assert project_dir == f"{include_dir}/dbt"
    assert manifest == f"{include_dir}/dbt/target/manifest.json"
    assert Path(include_dir).parent.as_posix() in env["PYTHONPATH"].split(":"), "`include` must be importable"


def test_the_dbt_manifest_is_built_in_the_image(steps: list[Instruction]) -> None:
    """By include/retail/transform/dbt_project.py's `parse`, which writes the manifest where the code reads it and
    fails the build when it did not (the path is defined there only)."""
    copy_include = next(i for i, step in enumerate(steps) if step.keyword == "COPY" and "include/" in step.args)
    parses = [
        (i, step)
        for i, step in enumerate(steps)
        if step.keyword == "RUN"
        and re.search(r"\bpython -m include\.retail\.transform\.dbt_project parse\b", step.args)
    ]
    assert len(parses) == 1, "expected one RUN with `python -m include.retail.transform.dbt_project parse`"
    index, parse = parses[0]
    assert index > copy_include, "dbt parse must run after the project is copied in"
    assert "manifest.json" not in parse.args, (
        "the manifest's path is include/retail/transform/dbt_project.py's to spell"
    )
    # profiles.yml must render at build time: every env_var() it reads has a default or a build-time value.
    profiles = (REPO / "include" / "dbt" / "profiles.yml").read_text()
    for name, has_default in re.findall(r"env_var\(\s*'(\w+)'\s*(,)?", profiles):
        assert has_default or f"{name}=" in parse.args, f"profiles.yml needs {name} at build time"
    for match in re.findall(r"RETAIL_DBT_PASSWORD=(\S+)", parse.args):
        assert "not-a-secret" in match, "build-time profile values are placeholders, never real secrets"


# -- .dockerignore ----------------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern:
    """Docker's .dockerignore pattern (Go filepath.Match plus ``**``) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def excluded(path: str, rules: list[tuple[bool, re.Pattern]]) -> bool:
    """Whether Docker leaves ``path`` out of the build context: the last rule matching it or a parent wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for negated, regex in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            verdict = not negated
    return verdict


@pytest.fixture(scope="module")
def ignore_rules() -> list[tuple[bool, re.Pattern]]:
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negated, _pattern_regex(pattern)))
    return rules


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".venv-dbt/bin/dbt",
        ".tools/bin/uv",
        ".devstack/state.json",
        ".git/HEAD",
        ".env",
        "test-artifacts/report.html",
        "bench/results/run.json",
        "tests/conftest.py",
        "include/dbt/target/manifest.json",
        "include/dbt/logs/dbt.log",
        "include/retail/__pycache__/config.cpython-312.pyc",
    ],
)
def test_dockerignore_keeps_local_state_out_of_the_build_context(
    path: str, ignore_rules: list[tuple[bool, re.Pattern]]
) -> None:
    assert excluded(path, ignore_rules)


def test_dockerignore_lets_in_everything_the_dockerfile_copies(
    steps: list[Instruction], ignore_rules: list[tuple[bool, re.Pattern]]
) -> None:
    for source in copies(steps):
        root = REPO / source
        assert root.exists(), f"COPY {source}: not in the repository"
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        files = [f for f in files if not {"__pycache__", "target", "logs"} & set(f.relative_to(REPO).parts)]
        assert files, f"COPY {source}: nothing to copy"
        for file in files:
            relative = file.relative_to(REPO).as_posix()
            assert not excluded(relative, ignore_rules), f".dockerignore leaves out {relative}, which COPY needs"
