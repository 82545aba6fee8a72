"""requirements.txt: installable on MWAA, pinned by the lock the Docker image installs with, and free of dbt."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO / "requirements.txt"
LOCK = REPO / "requirements" / "py312.lock"
DBT_LOCK = REPO / "requirements" / "dbt-py312.lock"
MWAA_CONSTRAINTS = REPO.parent / "shared" / "mwaa" / "airflow-3.3.1-constraints-py3.12.txt"
UV = REPO / ".tools" / "bin" / "uv"
# The platform MWAA (and the amd64 Docker image) installs on, as `make lock` resolves for.
PLATFORM = ["--python-version", "3.12", "--python-platform", "x86_64-manylinux_2_28"]


def requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(canonicalize_name(Requirement(line).name))
    return names


def pins(text: str) -> dict[str, str]:
    """``name==version`` lines of a resolution (uv's output or a lock), by canonical name."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if match:
            found[canonicalize_name(match[1])] = match[2]
    return found


def uv_compile(*constraints: Path) -> subprocess.CompletedProcess:
    if not UV.is_file():
        pytest.fail(f"uv is not at {UV}: `make venv` installs it")
    args = [str(UV), "pip", "compile", "--quiet", "--no-header", "--no-annotate", *PLATFORM]
    for constraint in constraints:
        args += ["-c", str(constraint)]
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    return subprocess.run(
        [*args, str(REQUIREMENTS)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_requirements_resolve_against_mwaa_constraints() -> None:
    if not MWAA_CONSTRAINTS.is_file():
        pytest.skip(f"MWAA's constraints are not at {MWAA_CONSTRAINTS} (../shared/mwaa is absent)")
    resolved = uv_compile(MWAA_CONSTRAINTS)
    assert resolved.returncode == 0, f"requirements.txt conflicts with MWAA's constraints:\n{resolved.stderr}"
    assert pins(resolved.stdout)["apache-airflow"] == "3.3.1"


def test_image_install_stays_within_the_lock() -> None:
    """The image installs ``-r requirements.txt -c requirements/py312.lock``: that resolves, to locked pins only.

    A requirement added without re-locking would make this fail, instead of reaching the image unpinned.
    """
    resolved = uv_compile(LOCK)
    assert resolved.returncode == 0, f"requirements.txt does not resolve within the lock:\n{resolved.stderr}"
    locked = pins(LOCK.read_text())
    installed = pins(resolved.stdout)
    assert installed, resolved.stdout
    outside = {name: version for name, version in installed.items() if locked.get(name) != version}
    assert not outside, f"resolved to versions the lock does not hold (run `make lock`): {outside}"


def test_every_requirement_is_pinned_by_the_lock() -> None:
    missing = requirement_names(REQUIREMENTS) - pins(LOCK.read_text()).keys()
    assert not missing, f"requirements.txt names packages requirements/py312.lock lacks (run `make lock`): {missing}"


def test_dbt_stays_out_of_the_airflow_environment() -> None:
    """dbt-core conflicts with MWAA's pins: it belongs to its own virtualenv, built from its own lock."""
    names = requirement_names(REQUIREMENTS)
    dbt = {name for name in names if name == "dbt" or name.startswith("dbt-")}
    assert not dbt, f"dbt packages in requirements.txt: {dbt}"
    assert {"dbt-core", "dbt-postgres"} <= pins(DBT_LOCK.read_text()).keys()
